import { afterAll, beforeAll, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { hosts } from "../../db/schema";
import { syncHosts } from "../../server/compute/hosts";
import { executeAction } from "../../server/compute/lifecycle";
import { testRun } from "../harness/env";
import { expectAppError } from "../harness/expect";
import { startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// An engine that does not answer: the calls that need it are 503
// DEPENDENCY_UNAVAILABLE (never 500), `get` says the state is unknown, and
// create says the engine is offline (not that capacity is exhausted). No
// workers here, so nothing re-syncs the host behind the test's back; the
// test drives the lifecycle itself.

let app: TestServer;
let api: ReturnType<TestServer["client"]>;

beforeAll(async () => {
  app = await startTestServer();
  await syncHosts(app.services);
  api = app.client({ token: (await createUserWithSession(app.services)).token });
});
afterAll(async () => {
  await app.services.queues.queue("lifecycle").obliterate({ force: true });
  await app.close();
});

test("stats, logs and actions answer 503, get says unknown, create says the engine is offline", async () => {
  const created = await api.compute.instances.create.mutate({ name: "remote", planId: "nano", imageId: "busybox" });
  expect((await executeAction(app.services, created.actionId, { finalAttempt: false })).status).toBe("succeeded");
  const id = created.instance.id;
  const [host] = await app.services.db.select().from(hosts).where(eq(hosts.name, "local"));

  // The engine stops answering before the platform has noticed: calls that reach it are 503.
  await app.services.db
    .update(hosts)
    .set({ endpoint: `unix://${testRun.dataDir}/no-engine.sock` })
    .where(eq(hosts.id, host!.id));
  const stats = await expectAppError(api.compute.instances.stats.query({ id }), "DEPENDENCY_UNAVAILABLE");
  expect(stats.data.httpStatus).toBe(503);
  await expectAppError(api.compute.instances.logs.query({ id }), "DEPENDENCY_UNAVAILABLE");

  // The host sync notices: the state is unknown, every action is refused, nothing can be created.
  await syncHosts(app.services);
  const [seen] = await app.services.db.select().from(hosts).where(eq(hosts.id, host!.id));
  // syncHosts re-reads the configured endpoint, which answers: record the failure as it would.
  if (seen!.status === "active")
    await app.services.db
      .update(hosts)
      .set({ status: "offline", endpoint: `unix://${testRun.dataDir}/no-engine.sock`, lastError: "connect ENOENT" })
      .where(eq(hosts.id, host!.id));
  const unknown = await api.compute.instances.get.query({ id });
  expect(unknown).toMatchObject({ state: "unknown", lastKnownState: "running", hostReachable: false });
  expect((await api.compute.instances.list.query()).items.find((i) => i.id === id)!.state).toBe("unknown");
  const calls = [
    api.compute.instances.stop.mutate({ id }),
    api.compute.instances.restart.mutate({ id }),
    api.compute.instances.delete.mutate({ id }),
    api.compute.instances.resize.mutate({ id, planId: "micro" }),
  ];
  for (const call of calls) {
    const error = await expectAppError(call, "DEPENDENCY_UNAVAILABLE");
    expect(error.data).toMatchObject({ httpStatus: 503, details: { host: "local" } });
  }
  await expectAppError(api.compute.instances.stats.query({ id }), "DEPENDENCY_UNAVAILABLE");
  await expectAppError(api.compute.instances.logs.query({ id }), "DEPENDENCY_UNAVAILABLE");
  const create = await expectAppError(api.compute.instances.create.mutate({ name: "later", planId: "nano", imageId: "busybox" }), "ENGINE_OFFLINE");
  expect(create.data.httpStatus).toBe(503);

  // Back: the sync records it active again and everything answers.
  await app.services.db.update(hosts).set({ endpoint: host!.endpoint }).where(eq(hosts.id, host!.id));
  await syncHosts(app.services);
  expect((await api.compute.instances.get.query({ id })).state).toBe("running");
  const deleted = await api.compute.instances.delete.mutate({ id });
  expect((await executeAction(app.services, deleted.actionId, { finalAttempt: false })).status).toBe("succeeded");
});
