import { describe, expect, test } from "bun:test";
import type { OutboxEvent } from "../../server/events/outbox";
import { stateChangeEvents } from "../../server/compute/customer-events";
import type { Instance } from "../../server/compute/instances";
import { planFanOut, preferenceKey, type Audience } from "../../server/notifications/fanout";
import { effectiveChannels } from "../../server/notifications/policy";

const USER = "00000000-0000-4000-8000-000000000001";
const OTHER = "00000000-0000-4000-8000-000000000002";
let n = 0;
function event(type: string, data: Record<string, unknown>, userId = USER): OutboxEvent {
  n += 1;
  return { id: `00000000-0000-4000-9000-${String(n).padStart(12, "0")}`, type, version: 1, userId, data, occurredAt: new Date("2026-01-02T03:04:05Z"), seq: n, dispatchedAt: null };
}
const failed = (userId = USER) => event("instance.failed", { instanceId: crypto.randomUUID(), name: "web", from: "running", reason: "died" }, userId);
const audience = (over: Partial<Audience> = {}): Audience => ({
  status: new Map([
    [USER, "active"],
    [OTHER, "active"],
  ]),
  preferences: new Map(),
  endpoints: new Map(),
  ...over,
});

describe("fan-out", () => {
  test("defaults: a failure goes to the console, by mail and to every endpoint whose filter takes it", () => {
    const plan = planFanOut(
      [failed()],
      audience({
        endpoints: new Map([
          [
            USER,
            [
              { id: "all", eventTypes: [] },
              { id: "billing-only", eventTypes: ["invoice.issued"] },
              { id: "failures", eventTypes: ["instance.failed"] },
            ],
          ],
        ]),
      }),
    );
    expect(plan.notifications).toHaveLength(1);
    expect(plan.notifications[0]).toMatchObject({ userId: USER, type: "instance.failed", title: "web failed" });
    expect(plan.deliveries.map((d) => [d.channel, d.endpointId])).toEqual([
      ["email", null],
      ["webhook", "all"],
      ["webhook", "failures"],
    ]);
  });

  test("routine state changes go to webhooks only unless the customer asks for more", () => {
    const changed = event("instance.state_changed", { instanceId: crypto.randomUUID(), name: "web", from: "stopping", to: "stopped", reason: "requested" });
    const endpoints = new Map([[USER, [{ id: "e1", eventTypes: [] }]]]);
    expect(planFanOut([changed], audience({ endpoints }))).toMatchObject({ notifications: [], deliveries: [{ channel: "webhook", endpointId: "e1" }] });
    const wantsAll = new Map([[preferenceKey(USER, "instance.state_changed"), { inApp: true, email: true, webhook: false }]]);
    const plan = planFanOut([changed], audience({ endpoints, preferences: wantsAll }));
    expect(plan.notifications).toHaveLength(1);
    expect(plan.deliveries.map((d) => d.channel)).toEqual(["email"]);
  });

  test("preferences are per customer; mandatory channels ignore them; unverified addresses get no mail", () => {
    const off = { inApp: false, email: false, webhook: false };
    const prefs = new Map([
      [preferenceKey(USER, "instance.failed"), off],
      [preferenceKey(USER, "account.security"), off],
    ]);
    const security = event("account.security", { kind: "api_key_created", apiKeyId: crypto.randomUUID(), apiKeyName: "ci", ip: null, userAgent: null });
    const plan = planFanOut([failed(), failed(OTHER), security], audience({ preferences: prefs }));
    expect(plan.notifications.map((x) => [x.userId, x.type])).toEqual([
      [OTHER, "instance.failed"],
      [USER, "account.security"],
    ]);
    expect(plan.deliveries.map((d) => [d.userId, d.channel])).toEqual([
      [OTHER, "email"],
      [USER, "email"],
    ]);
    const unverified = planFanOut([failed()], audience({ status: new Map([[USER, "unverified"]]) }));
    expect(unverified.deliveries).toEqual([]);
    expect(unverified.notifications).toHaveLength(1);
  });

  test("password changes are not mailed from here (auth mails them itself); events of unknown types are set aside", () => {
    const changed = event("account.security", { kind: "password_changed", ip: "203.0.113.9", userAgent: null });
    const unknown = event("instance.teleported", {});
    const plan = planFanOut([changed, unknown], audience());
    expect(plan.notifications.map((x) => x.title)).toEqual(["Your password was changed"]);
    expect(plan.deliveries).toEqual([]);
    expect(plan.unknown).toEqual([unknown.id]);
  });

  test("effective channels: stored choices, defaults, and what cannot be switched off", () => {
    expect(effectiveChannels("invoice.issued", undefined)).toEqual({ inApp: true, email: true, webhook: true });
    expect(effectiveChannels("power.paused", undefined)).toEqual({ inApp: true, email: false, webhook: true });
    expect(effectiveChannels("webhook.endpoint_disabled", { inApp: false, email: false, webhook: false })).toEqual({ inApp: true, email: true, webhook: false });
  });
});

describe("compute's events for a state change", () => {
  const instance = { id: crypto.randomUUID(), userId: USER, name: "batch", state: "running", priority: "interruptible", memoryMb: 128 } as Instance;
  const types = (...args: Parameters<typeof stateChangeEvents>) => stateChangeEvents(...args).map((e) => e.type);

  test("settled states only; errors also say why (an OOM kill has its own event, from the engine's oom event)", () => {
    expect(types({ ...instance, state: "pending" }, "provisioning", "created")).toEqual([]);
    expect(types({ ...instance, state: "running" }, "stopping", "requested")).toEqual([]);
    expect(types({ ...instance, state: "stopping" }, "stopped", "requested")).toEqual(["instance.state_changed"]);
    expect(types(instance, "error", "container died")).toEqual(["instance.state_changed", "instance.failed"]);
    expect(types(instance, "error", "container was killed for exceeding its memory limit")).toEqual(["instance.state_changed", "instance.failed"]);
  });

  test("pauses and stops for power, and recovery, are power events; the same moves for other reasons are not", () => {
    expect(types(instance, "paused", "power_emergency")).toEqual(["instance.state_changed", "power.paused"]);
    expect(types({ ...instance, state: "stopping" }, "stopped", "power_emergency")).toEqual(["instance.state_changed", "power.paused"]);
    expect(types({ ...instance, state: "paused" }, "running", "power_restored")).toEqual(["instance.state_changed", "power.resumed"]);
    expect(types({ ...instance, state: "provisioning" }, "running", "power_restored")).toEqual(["instance.state_changed", "power.resumed"]);
    expect(types(instance, "paused", "requested")).toEqual(["instance.state_changed"]);
    expect(types({ ...instance, state: "stopped" }, "provisioning", "power_restored")).toEqual([]);
  });
});
