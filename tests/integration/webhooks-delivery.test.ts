import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq } from "drizzle-orm";
import { Webhook } from "svix";
import { eventDeliveries, outboxEvents, webhookEndpoints } from "../../db/schema";
import { recordEvent } from "../../server/events/outbox";
import { mailProcessor } from "../../workers/mail";
import { notifyProcessor } from "../../workers/notify";
import { mailSubject, mailsTo } from "../harness/accounts";
import { expectAppError } from "../harness/expect";
import { startWebhookReceiver, type WebhookReceiver } from "../harness/receiver";
import { eventually, startTestServer, type TestServer } from "../harness/server";
import { startSmtpServer } from "../harness/smtp";
import { createUserWithSession } from "../harness/users";

// Outgoing webhooks against a real local receiver: retries on a short
// schedule (configuration, not a code path), what counts as failure, 410,
// auto-disabling, Retry-After, redelivery and secret rotation.

const STEP_MS = 300;
let app: TestServer;
let receiver: WebhookReceiver;
let smtp: Awaited<ReturnType<typeof startSmtpServer>>;

beforeAll(async () => {
  smtp = await startSmtpServer();
  receiver = await startWebhookReceiver();
  app = await startTestServer({
    env: {
      SMTP_URL: smtp.url,
      // The receiver listens on 127.0.0.1: allowed here on purpose (webhooks-ssrf.test.ts proves the default refuses it).
      WEBHOOK_ALLOW_PRIVATE_TARGETS: "true",
      WEBHOOK_RETRY_SCHEDULE: Array(4).fill(`${STEP_MS}ms`).join(","),
      WEBHOOK_TIMEOUT_MS: "1500",
      WEBHOOK_DISABLE_AFTER_HOURS: "0",
      WEBHOOK_DISABLE_MIN_FAILURES: "5",
      NOTIFY_POLL_MS: "100",
    },
    workers: [notifyProcessor, mailProcessor],
  });
});
afterAll(async () => {
  await app.close();
  await receiver.close();
  await smtp.close();
});

type Customer = Awaited<ReturnType<typeof customer>>;

/**
 * A customer with one endpoint on its own receiver path, for the events these
 * tests emit (not, say, the security notice its own creation makes).
 */
async function customer(opts: { eventTypes?: string[] } = {}) {
  const session = await createUserWithSession(app.services);
  const api = app.client({ token: session.token });
  const path = `/hooks-${session.user.id}`;
  const created = await api.webhooks.endpoints.create.mutate({ url: receiver.url(path), description: "test receiver", eventTypes: (opts.eventTypes ?? ["instance.state_changed"]) as never });
  return { ...session, api, path, endpointId: created.endpoint.id, secret: created.secret };
}

/** An event for the customer, as compute would write it. */
const emit = (c: Customer, name = "web") =>
  recordEvent(app.services.db, { type: "instance.state_changed", userId: c.user.id, data: { instanceId: crypto.randomUUID(), name, from: "provisioning", to: "running", reason: "requested" } });

const deliveryOf = (eventId: string) =>
  eventually(
    () =>
      app.services.db
        .select()
        .from(eventDeliveries)
        .where(and(eq(eventDeliveries.eventId, eventId), eq(eventDeliveries.channel, "webhook"))),
    (rows) => rows.length === 1,
    { what: "the event to be fanned out" },
  ).then((rows) => rows[0]!);

const settledDelivery = (c: Customer, eventId: string) =>
  eventually(
    () => c.api.webhooks.deliveries.list.query({ eventId }),
    (list) => list.items.length === 1 && list.items[0]!.status !== "pending",
    { what: "the delivery to settle", timeoutMs: 20_000 },
  ).then((list) => list.items[0]!);

const endpointRow = async (id: string) => (await app.services.db.select().from(webhookEndpoints).where(eq(webhookEndpoints.id, id)))[0]!;

describe("retries", () => {
  test("a receiver failing three times then succeeding gets the event after the retries, always with the same webhook-id; one successful delivery is recorded with every attempt", async () => {
    const c = await customer();
    receiver.setResponder((req, n) => (req.path === c.path && n <= 3 ? new Response("busy", { status: 500 }) : new Response(null, { status: 204 })));
    const eventId = await emit(c);

    const delivery = await settledDelivery(c, eventId);
    expect(delivery).toMatchObject({ status: "succeeded", attempts: 4, generation: 0, lastStatusCode: 204, lastError: null });
    expect(delivery.history.map((a) => [a.attempt, a.outcome, a.statusCode])).toEqual([
      [1, "failed", 500],
      [2, "failed", 500],
      [3, "failed", 500],
      [4, "succeeded", 204],
    ]);
    expect(delivery.history[0]).toMatchObject({ error: "HTTP 500", responseBody: "busy" });

    const requests = receiver.at(c.path);
    expect(requests).toHaveLength(4);
    expect(new Set(requests.map((r) => r.headers["webhook-id"]))).toEqual(new Set([eventId]));
    for (const request of requests) expect(() => new Webhook(c.secret).verify(request.body, request.headers)).not.toThrow();
    // The schedule's wait separates the attempts.
    for (let i = 1; i < requests.length; i++) expect(requests[i]!.at - requests[i - 1]!.at).toBeGreaterThanOrEqual(STEP_MS - 50);
    const rows = await app.services.db
      .select()
      .from(eventDeliveries)
      .where(and(eq(eventDeliveries.eventId, eventId), eq(eventDeliveries.status, "succeeded")));
    expect(rows).toHaveLength(1);
    expect(await endpointRow(c.endpointId)).toMatchObject({ enabled: true, consecutiveFailures: 0, failingSince: null });
  });

  test("a redirect is a failure and is not followed; a timeout is a failure; the response kept is capped", async () => {
    const c = await customer();
    receiver.setResponder(async (req, n) => {
      if (req.path !== c.path) return new Response(null, { status: 204 });
      if (n === 1) return new Response(null, { status: 302, headers: { location: receiver.url(`${c.path}/elsewhere`) } });
      if (n === 2) return Bun.sleep(3000).then(() => new Response(null, { status: 204 }));
      if (n === 3) return new Response("x".repeat(1_000_000), { status: 500 });
      return new Response(null, { status: 200 });
    });
    const eventId = await emit(c);
    const delivery = await settledDelivery(c, eventId);
    expect(delivery.status).toBe("succeeded");
    expect(delivery.history.map((a) => [a.outcome, a.statusCode, a.error])).toEqual([
      ["failed", 302, "redirect (302) not followed"],
      ["failed", null, "no response within 1500 ms"],
      ["failed", 500, "HTTP 500"],
      ["succeeded", 200, null],
    ]);
    expect(delivery.history[2]!.responseBody!.length).toBe(4096);
    expect(receiver.at(`${c.path}/elsewhere`)).toEqual([]);
  });

  test("a receiver's Retry-After is honoured when it asks for longer than the schedule", async () => {
    const c = await customer();
    receiver.setResponder((req, n) => (req.path === c.path && n === 1 ? new Response(null, { status: 429, headers: { "retry-after": "2" } }) : new Response(null, { status: 204 })));
    const eventId = await emit(c);
    expect((await settledDelivery(c, eventId)).status).toBe("succeeded");
    const [first, second] = receiver.at(c.path);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(1900);
  });

  test("after the last scheduled attempt the delivery fails for good", async () => {
    const c = await customer();
    receiver.setResponder((req) => (req.path === c.path ? new Response(null, { status: 503 }) : new Response(null, { status: 204 })));
    // Five failures in a row would disable the endpoint; keep it below that here by succeeding elsewhere first.
    await app.services.db.update(webhookEndpoints).set({ consecutiveFailures: -100 }).where(eq(webhookEndpoints.id, c.endpointId));
    const eventId = await emit(c);
    const delivery = await settledDelivery(c, eventId);
    expect(delivery).toMatchObject({ status: "failed", attempts: 5, lastStatusCode: 503 });
    expect(receiver.at(c.path)).toHaveLength(5);
    expect((await endpointRow(c.endpointId)).enabled).toBe(true);
  });
});

describe("disabling", () => {
  test("410 Gone disables the endpoint at once and tells its owner in the console and by mail; later events are not sent to it", async () => {
    const c = await customer();
    receiver.setResponder((req) => (req.path === c.path ? new Response("gone", { status: 410 }) : new Response(null, { status: 204 })));
    const eventId = await emit(c);
    const delivery = await settledDelivery(c, eventId);
    expect(delivery).toMatchObject({ status: "failed", attempts: 1, lastStatusCode: 410 });
    const endpoint = (await c.api.webhooks.endpoints.list.query())[0]!;
    expect(endpoint).toMatchObject({ enabled: false, disabledReason: "the receiver answered 410 Gone" });

    const notice = await eventually(
      () => c.api.notifications.list.query(),
      (list) => list.items.some((n) => n.type === "webhook.endpoint_disabled"),
      { what: "the disabled notice" },
    );
    expect(notice.items.find((n) => n.type === "webhook.endpoint_disabled")!.body).toContain(c.path);
    const mails = await mailsTo(smtp.received, c.user.email, 2);
    expect(mails.map(mailSubject).sort()).toEqual(["A webhook endpoint was disabled", "New webhook endpoint"]);

    const later = await emit(c);
    await eventually(
      () => app.services.db.select().from(outboxEvents).where(eq(outboxEvents.id, later)),
      (rows) => rows[0]?.dispatchedAt != null,
      { what: "the later event to be fanned out" },
    );
    expect(
      await app.services.db
        .select()
        .from(eventDeliveries)
        .where(and(eq(eventDeliveries.eventId, later), eq(eventDeliveries.channel, "webhook"))),
    ).toEqual([]);
    expect(receiver.at(c.path)).toHaveLength(1);

    // Redelivering to a disabled endpoint is refused until its owner enables it again.
    await expectAppError(c.api.webhooks.deliveries.redeliver.mutate({ id: delivery.id }), "WEBHOOK_ENDPOINT_DISABLED");
    receiver.setResponder(() => new Response(null, { status: 204 }));
    expect(await c.api.webhooks.endpoints.update.mutate({ id: c.endpointId, enabled: true })).toMatchObject({ enabled: true, disabledReason: null, consecutiveFailures: 0 });
    await c.api.webhooks.deliveries.redeliver.mutate({ id: delivery.id });
    expect((await settledDelivery(c, eventId)).status).toBe("succeeded");
  });

  test("an endpoint failing every attempt for long enough is disabled, its pending deliveries end, and its owner is told once", async () => {
    const c = await customer();
    receiver.setResponder((req) => (req.path === c.path ? new Response(null, { status: 500 }) : new Response(null, { status: 204 })));
    const [a, b] = [await emit(c, "one"), await emit(c, "two")];
    const endpoint = await eventually(
      () => endpointRow(c.endpointId),
      (e) => !e.enabled,
      { what: "the endpoint to be disabled", timeoutMs: 20_000 },
    );
    expect(endpoint.disabledReason).toMatch(/^every delivery failed since .* \(5 attempts in a row\)$/);
    const deliveries = await Promise.all([settledDelivery(c, a), settledDelivery(c, b)]);
    expect(deliveries.map((d) => d.status)).toEqual(["failed", "failed"]);
    // The fifth failure in a row disabled it; an attempt of the other delivery may have been in flight then.
    const attempts = deliveries.map((d) => d.attempts).reduce((x, y) => x + y);
    expect(attempts).toBeGreaterThanOrEqual(5);
    expect(attempts).toBeLessThanOrEqual(6);
    expect(receiver.at(c.path)).toHaveLength(attempts);
    const disabledEvents = await app.services.db
      .select()
      .from(outboxEvents)
      .where(and(eq(outboxEvents.userId, c.user.id), eq(outboxEvents.type, "webhook.endpoint_disabled")));
    expect(disabledEvents).toHaveLength(1);
    expect(disabledEvents[0]!.data).toMatchObject({ endpointId: c.endpointId, reason: endpoint.disabledReason });
    // Nothing more reaches the receiver once it is disabled.
    const seen = receiver.at(c.path).length;
    await Bun.sleep(STEP_MS * 3);
    expect(receiver.at(c.path)).toHaveLength(seen);
  });
});

describe("redelivery and secrets", () => {
  test("redeliver sends the same event again (same webhook-id and body) as a new generation; another customer's delivery is NOT_FOUND", async () => {
    const c = await customer();
    receiver.setResponder(() => new Response(null, { status: 204 }));
    const eventId = await emit(c);
    const first = await settledDelivery(c, eventId);
    expect(first.status).toBe("succeeded");

    const redelivered = await c.api.webhooks.deliveries.redeliver.mutate({ id: first.id });
    expect(redelivered).toMatchObject({ id: first.id, status: "pending", generation: 1, eventId });
    const again = await eventually(
      () => c.api.webhooks.deliveries.list.query({ eventId }),
      (l) => l.items[0]!.status === "succeeded" && l.items[0]!.generation === 1,
      { what: "the redelivery" },
    );
    expect(again.items[0]!.history.map((h) => [h.generation, h.attempt, h.outcome])).toEqual([
      [0, 1, "succeeded"],
      [1, 1, "succeeded"],
    ]);
    const [one, two] = receiver.at(c.path);
    expect(two!.headers["webhook-id"]).toBe(one!.headers["webhook-id"]);
    expect(two!.body).toBe(one!.body);
    expect(() => new Webhook(c.secret).verify(two!.body, two!.headers)).not.toThrow();

    const other = await customer();
    await expectAppError(other.api.webhooks.deliveries.redeliver.mutate({ id: first.id }), "NOT_FOUND");
    expect((await other.api.webhooks.deliveries.list.query()).items).toEqual([]);
    await expectAppError(c.api.webhooks.deliveries.redeliver.mutate({ id: crypto.randomUUID() }), "NOT_FOUND");
  });

  test("after rotateSecret deliveries carry both signatures until the grace period ends; then only the new one", async () => {
    const c = await customer();
    receiver.setResponder(() => new Response(null, { status: 204 }));
    const rotated = await c.api.webhooks.endpoints.rotateSecret.mutate({ id: c.endpointId });
    expect(rotated.secret).not.toBe(c.secret);
    expect(Date.parse(rotated.endpoint.previousSecretExpiresAt!) - Date.now()).toBeGreaterThan(23 * 3_600_000);

    await settledDelivery(c, await emit(c));
    const [during] = receiver.at(c.path);
    expect(during!.headers["webhook-signature"]!.split(" ")).toHaveLength(2);
    expect(() => new Webhook(rotated.secret).verify(during!.body, during!.headers)).not.toThrow();
    expect(() => new Webhook(c.secret).verify(during!.body, during!.headers)).not.toThrow();

    await app.services.db
      .update(webhookEndpoints)
      .set({ previousSecretExpiresAt: new Date(Date.now() - 1000) })
      .where(eq(webhookEndpoints.id, c.endpointId));
    await settledDelivery(c, await emit(c));
    const after = receiver.at(c.path)[1]!;
    expect(after.headers["webhook-signature"]!.split(" ")).toHaveLength(1);
    expect(() => new Webhook(rotated.secret).verify(after.body, after.headers)).not.toThrow();
    expect(() => new Webhook(c.secret).verify(after.body, after.headers)).toThrow();
    // Stored sealed, never in clear.
    const row = await endpointRow(c.endpointId);
    expect(JSON.stringify(row)).not.toContain(rotated.secret.slice(6));
  });

  test("an endpoint gets only the event types it asked for", async () => {
    const c = await customer({ eventTypes: ["invoice.issued"] });
    const eventId = await emit(c);
    await eventually(
      () => app.services.db.select().from(outboxEvents).where(eq(outboxEvents.id, eventId)),
      (rows) => rows[0]?.dispatchedAt != null,
      { what: "fan-out" },
    );
    expect(await app.services.db.select().from(eventDeliveries).where(eq(eventDeliveries.eventId, eventId))).toEqual([]);
    const updated = await c.api.webhooks.endpoints.update.mutate({ id: c.endpointId, eventTypes: [] });
    expect(updated.eventTypes).toEqual([]);
    const next = await emit(c);
    expect((await deliveryOf(next)).endpointId).toBe(c.endpointId);
  });
});
