import Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eq, inArray } from "drizzle-orm";
import { hosts, instanceActions, instances } from "../../db/schema";
import { hostUsage, syncHosts } from "../../server/compute/hosts";
import { setUserQuota } from "../../server/compute/quotas";
import { testRun } from "../harness/env";
import { expectAppError } from "../harness/expect";
import { startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// Two engine names on the one local engine, and one that does not answer. No workers: placement is decided at create.
let app: TestServer;
const created: string[] = [];

beforeAll(async () => {
  const socket = testRun.dockerSocket;
  // Scale each host's memory down to about three nano plans, so filling them is quick.
  const { MemTotal } = await new Docker({ socketPath: socket }).info();
  app = await startTestServer({
    env: {
      DOCKER_HOSTS: `east=unix://${socket},west=unix://${socket},dark=unix://${testRun.dataDir}/none.sock`,
      HOST_MEMORY_OVERCOMMIT: String((3 * 256 + 100) / (MemTotal / 1024 / 1024)),
    },
  });
});

afterAll(async () => {
  await app.services.queues.queue("lifecycle").obliterate({ force: true });
  if (created.length) {
    await app.services.db.update(instanceActions).set({ status: "failed", error: "test cleanup" }).where(inArray(instanceActions.instanceId, created));
    await app.services.db.update(instances).set({ state: "deleted" }).where(inArray(instances.id, created));
  }
  // Leave the hosts as the default configuration has them, for the other files.
  const standard = await startTestServer();
  await syncHosts(standard.services);
  await standard.close();
  await app.close();
});

describe("hosts and placement", () => {
  test("configured engines are registered with capacity from Docker; one that does not answer is offline", async () => {
    const rows = await syncHosts(app.services);
    const byName = Object.fromEntries(rows.map((h) => [h.name, h]));
    const info = await app.services.docker.info();
    expect(byName.east!.status).toBe("active");
    expect(byName.east!.cpuCapacityMillis).toBe(Math.floor(info.NCPU * 1000 * app.services.config.compute.overcommit.cpu));
    expect(byName.east!.storageDriver).toBe(info.Driver);
    expect(byName.dark!.status).toBe("offline");
    expect(byName.dark!.lastError).toBeTruthy();
    // The default engine is not in this configuration: no new instance goes there.
    expect(byName.local?.status ?? "offline").toBe("offline");
  });

  test("instances spread over the hosts with room, never onto an offline one, until all are full", async () => {
    const { user, token } = await createUserWithSession(app.services);
    await setUserQuota(app.services.db, user.id, { maxInstances: 100 });
    const api = app.client({ token });
    const [east] = await app.services.db.select().from(hosts).where(eq(hosts.name, "east"));
    // Each host's memory capacity, in nano plans (256 MB).
    const perHost = Math.floor(east!.memoryCapacityMb / 256);
    expect(perHost).toBe(3);

    const placed: string[] = [];
    for (let i = 0; i < perHost * 2; i++) {
      const { instance } = await api.compute.instances.create.mutate({ name: `spread-${i}`, planId: "nano", imageId: "busybox" });
      created.push(instance.id);
      placed.push(instance.hostId);
    }
    // Most free memory first: the first two land on different hosts.
    expect(new Set(placed.slice(0, 2)).size).toBe(2);
    const usage = await hostUsage(app.services.db);
    const names = Object.fromEntries(usage.map((u) => [u.host.id, u.host.name]));
    const counts: Record<string, number> = {};
    for (const id of placed) counts[names[id]!] = (counts[names[id]!] ?? 0) + 1;
    expect(counts).toEqual({ east: perHost, west: perHost });

    const full = await expectAppError(api.compute.instances.create.mutate({ name: "one-too-many", planId: "nano", imageId: "busybox" }), "CAPACITY_EXHAUSTED");
    expect(full.data.details).toMatchObject({ requested: { memoryMb: 256 } });
  });
});
