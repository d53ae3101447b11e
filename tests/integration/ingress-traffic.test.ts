import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Scope } from "../../server/auth/actor";
import { appRouter } from "../../server/router";
import { createCallerFactory } from "../../server/trpc";
import { actionDone } from "../harness/compute";
import { expectAppError } from "../harness/expect";
import { answers, customer, launch, startIngressRig, type IngressRig } from "../harness/ingress";
import { eventually } from "../harness/server";

// Requests and bytes the proxy served, counted from its access log (UDP) into
// hourly rows per instance, readable by the instance's owner only.

let rig: IngressRig;
let owner: Awaited<ReturnType<typeof customer>>;
let site: Awaited<ReturnType<typeof launch>>;

beforeAll(async () => {
  rig = await startIngressRig();
  owner = await customer(rig.app);
  site = await launch(owner.api, { name: "counted" });
  await answers(rig.proxy, site.url!, 200);
}, 60_000);
afterAll(() => rig.close(), 60_000);

const report = () => owner.api.compute.instances.traffic.query({ id: site.id });

/** The totals once nothing has changed for a while (the log and flushes have caught up). */
async function settledTotals() {
  let last = "";
  const value = await eventually(
    async () => {
      await Bun.sleep(600);
      const totals = (await report()).totals;
      const same = JSON.stringify(totals) === last;
      last = JSON.stringify(totals);
      return { totals, same };
    },
    (r) => r.same,
    { timeoutMs: 15_000, what: "traffic counts to settle" },
  );
  return value.totals;
}

describe("traffic counts", () => {
  test("move with real requests: requests, response bytes and status classes, by hour", async () => {
    const before = await settledTotals();
    let bytes = 0;
    for (let i = 0; i < 5; i++) {
      const response = await rig.proxy.visit(site.url!);
      expect(response.status).toBe(200);
      bytes += (await response.arrayBuffer()).byteLength;
    }
    for (let i = 0; i < 2; i++) {
      const response = await rig.proxy.visit(`${site.url}/missing-${i}`);
      expect(response.status).toBe(404);
      bytes += (await response.arrayBuffer()).byteLength;
    }
    const after = await eventually(report, (r) => r.totals.requests >= before.requests + 7, { timeoutMs: 15_000, what: "the requests to be counted" });
    expect(after.totals).toEqual({
      requests: before.requests + 7,
      bytesSent: before.bytesSent + bytes,
      status: { "2xx": before.status["2xx"] + 5, "3xx": before.status["3xx"], "4xx": before.status["4xx"] + 2, "5xx": before.status["5xx"] },
    });
    const hour = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000).toISOString();
    expect(after.hours.at(-1)!.hour).toBe(hour);
    expect(after.instanceId).toBe(site.id);

    // Requests the edge answers count too (here: a stopped instance's 503s).
    const stop = await owner.api.compute.instances.stop.mutate({ id: site.id });
    expect((await actionDone(owner.api, stop.actionId)).status).toBe("succeeded");
    await answers(rig.proxy, site.url!, 503);
    await eventually(report, (r) => r.totals.status["5xx"] >= 1, { timeoutMs: 15_000, what: "the edge's answers to be counted" });
    const start = await owner.api.compute.instances.start.mutate({ id: site.id });
    expect((await actionDone(owner.api, start.actionId)).status).toBe("succeeded");
  }, 60_000);

  test("a range: from must precede to, spanning at most 92 days", async () => {
    const now = Date.now();
    const empty = await owner.api.compute.instances.traffic.query({ id: site.id, from: new Date(now - 30 * 86_400_000).toISOString(), to: new Date(now - 29 * 86_400_000).toISOString() });
    expect(empty).toMatchObject({ totals: { requests: 0, bytesSent: 0 }, hours: [] });
    await expectAppError(owner.api.compute.instances.traffic.query({ id: site.id, from: new Date(now).toISOString(), to: new Date(now - 1000).toISOString() }), "VALIDATION_FAILED");
    await expectAppError(owner.api.compute.instances.traffic.query({ id: site.id, from: new Date(now - 100 * 86_400_000).toISOString() }), "VALIDATION_FAILED");
    await expectAppError(owner.api.compute.instances.traffic.query({ id: site.id, from: "yesterday" }), "VALIDATION_FAILED");
  });
});

describe("who may read traffic", () => {
  test("another tenant gets NOT_FOUND, an anonymous caller UNAUTHENTICATED", async () => {
    const other = await customer(rig.app);
    await expectAppError(other.api.compute.instances.traffic.query({ id: site.id }), "NOT_FOUND");
    await expectAppError(other.api.compute.instances.traffic.query({ id: crypto.randomUUID() }), "NOT_FOUND");
    await expectAppError(rig.app.client().compute.instances.traffic.query({ id: site.id }), "UNAUTHENTICATED");
  });

  test("an API key needs compute:read", async () => {
    const caller = (scopes: Scope[]) =>
      createCallerFactory(appRouter)({
        ...rig.app.services,
        actor: { kind: "apiKey", apiKeyId: crypto.randomUUID(), scopes, user: owner.user },
        request: { requestId: crypto.randomUUID(), ip: null, userAgent: null },
        resHeaders: new Headers(),
      });
    await expect(caller(["billing:read"]).compute.instances.traffic({ id: site.id })).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });
    expect((await caller(["compute:read"]).compute.instances.traffic({ id: site.id })).instanceId).toBe(site.id);
  });
});
