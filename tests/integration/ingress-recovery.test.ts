import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { createCaddyAdmin } from "../../server/ingress/caddy-admin";
import { actionDone } from "../harness/compute";
import { testRun } from "../harness/env";
import { answers, customer, launch, startIngressRig, type IngressRig } from "../harness/ingress";
import { freePort } from "../harness/process";
import { freeUdpPort } from "../harness/proxy";
import { eventually, startTestServer } from "../harness/server";

// The proxy's configuration is derived from the database: whatever restarts
// (the proxy, killed; the API and workers), the routes come back as the
// database says, and never for an instance deleted meanwhile.

let rig: IngressRig;
let api: Awaited<ReturnType<typeof customer>>["api"];
let serving: Awaited<ReturnType<typeof launch>>;
let stopped: Awaited<ReturnType<typeof launch>>;

beforeAll(async () => {
  rig = await startIngressRig();
  ({ api } = await customer(rig.app));
  serving = await launch(api, { name: "keeps" });
  stopped = await launch(api, { name: "rests" });
  const stop = await api.compute.instances.stop.mutate({ id: stopped.id });
  expect((await actionDone(api, stop.actionId)).status).toBe("succeeded");
  await answers(rig.proxy, serving.url!, 200);
  await answers(rig.proxy, stopped.url!, 503);
}, 90_000);
afterAll(() => rig.close(), 60_000);

/** Requests that fail (no listener, no certificate) read as status 0. */
const statusOf = (url: string) =>
  rig.proxy.visit(url).then(
    (r) => r.status,
    () => 0,
  );

describe("proxy killed", () => {
  test("kill -9 and restart: every route back within seconds, none for an instance deleted meanwhile", async () => {
    const doomed = await launch(api, { name: "doomed" });
    await answers(rig.proxy, doomed.url!, 200);

    await rig.proxy.kill();
    expect(await statusOf(serving.url!)).toBe(0);
    // Deleted while the proxy is down: its route must not come back.
    const removal = await api.compute.instances.delete.mutate({ id: doomed.id });
    expect((await actionDone(api, removal.actionId)).status).toBe("succeeded");

    await rig.proxy.restart();
    const restartedAt = Date.now();
    await answers(rig.proxy, serving.url!, 200, {}, 10_000);
    const restoredMs = Date.now() - restartedAt;
    expect(restoredMs).toBeLessThan(10_000);
    const rests = await answers(rig.proxy, stopped.url!, 503, { headers: { accept: "application/json" } });
    expect(JSON.parse(rests.body).error.data.details.state).toBe("stopped");
    // The deleted instance's host: its old certificate may still be in the proxy's storage, but no route leads to a container.
    expect([0, 404]).toContain(await statusOf(doomed.url!));
  }, 60_000);
});

describe("platform restarted", () => {
  test("the proxy keeps serving while the API and workers are down, and a platform that boots reloads an empty proxy", async () => {
    const port = Number(rig.proxy.env.INGRESS_EDGE_UPSTREAM.split(":")[1]);
    await rig.app.close();
    // Visitors of running instances do not need the platform.
    expect(await statusOf(serving.url!)).toBe(200);

    // The proxy restarts empty while the platform is down: nothing to serve until the platform is back.
    await rig.proxy.kill();
    await rig.proxy.restart();
    expect(await statusOf(serving.url!)).toBe(0);

    rig.app = await startTestServer({ workers: true, port, env: rig.proxy.env });
    await answers(rig.proxy, serving.url!, 200, {}, 15_000);
    await answers(rig.proxy, stopped.url!, 503);
  }, 60_000);
});

describe("INGRESS_PROXY=managed", () => {
  test("the workers start the proxy when none answers, and again after it is killed", async () => {
    const dir = `${testRun.dataDir}/caddy`;
    const env = {
      ...rig.proxy.env,
      INGRESS_PROXY: "managed",
      INGRESS_ADMIN: `unix://${dir}/admin.sock`,
      INGRESS_HTTP_PORT: String(await freePort()),
      INGRESS_HTTPS_PORT: String(await freePort()),
      INGRESS_LOG_ADDRESS: `127.0.0.1:${await freeUdpPort()}`,
      INGRESS_EDGE_UPSTREAM: `127.0.0.1:${await freePort()}`,
    };
    const admin = createCaddyAdmin({ admin: env.INGRESS_ADMIN, adminTimeoutMs: 2000 });
    const managedPid = () => Number(readFileSync(`${dir}/caddy.pid`, "utf8"));
    const app = await startTestServer({ workers: true, port: Number(env.INGRESS_EDGE_UPSTREAM.split(":")[1]), env });
    try {
      await eventually(
        () =>
          admin.ping().then(
            () => true,
            () => false,
          ),
        Boolean,
        { timeoutMs: 15_000, what: "the managed proxy to answer" },
      );
      const first = managedPid();
      // It carries the platform's configuration: the instance's route.
      const { marker } = await app.services.ingress.routes.render();
      await eventually(() => admin.has(marker), Boolean, { timeoutMs: 10_000, what: "the configuration to be loaded" });

      process.kill(first, "SIGKILL");
      await eventually(
        () =>
          admin.ping().then(
            () => existsSync(`${dir}/caddy.pid`) && managedPid() !== first,
            () => false,
          ),
        Boolean,
        {
          timeoutMs: 30_000,
          what: "the managed proxy to be started again",
        },
      );
      await eventually(() => admin.has(marker), Boolean, { timeoutMs: 10_000, what: "the configuration to be loaded again" });
    } finally {
      await app.close();
      // It outlives the platform by design; the test stops it.
      if (existsSync(`${dir}/caddy.pid`)) {
        try {
          process.kill(managedPid(), "SIGTERM");
        } catch {
          // already gone
        }
      }
    }
  }, 90_000);
});
