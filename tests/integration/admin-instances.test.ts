import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq, ne, sql } from "drizzle-orm";
import { auditLog, hosts, instances, volumes } from "../../db/schema";
import { FORCE_STOP_REASON } from "../../server/admin/instances";
import { STALL_AFTER_MS } from "../../server/admin/queues";
import { SUSPENSION_REASON } from "../../server/admin/suspension";
import { instanceHoldsCapacity, syncHosts } from "../../server/compute/hosts";
import { stateHistory } from "../../server/compute/instances";
import { processors } from "../../workers/processors";
import { jobId } from "../../workers/queues";
import { seedInstance } from "../harness/billing";
import { actionDone } from "../harness/compute";
import { testRun } from "../harness/env";
import { expectAppError } from "../harness/expect";
import { eventually, startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// Force actions and suspension against real containers, the cross-user instance list, hosts and queue health.
let app: TestServer;
let admin: Awaited<ReturnType<typeof createUserWithSession>>;
let api: ReturnType<TestServer["client"]>;

beforeAll(async () => {
  // Every worker but the emergency one: its queue shows how a queue nobody drains looks.
  app = await startTestServer({ workers: processors.filter((p) => p.queue !== "emergency") });
  await syncHosts(app.services);
  admin = await createUserWithSession(app.services, { role: "admin" });
  api = app.client({ token: admin.token });
});
afterAll(() => app.close());

const container = (instanceId: string) => app.services.docker.getContainer(`${testRun.dockerNamespace}-${instanceId}`);
const isRunning = async (instanceId: string) => (await container(instanceId).inspect()).State.Running;
const stateOf = async (instanceId: string) => (await app.services.db.select({ state: instances.state }).from(instances).where(eq(instances.id, instanceId)))[0]!.state;

/** The suspension's follow-up job for this user, once it has completed. */
async function followUpCompleted(userId: string) {
  const jobs = await app.services.queues.queue("admin").getJobs(["completed", "delayed", "waiting", "active"]);
  const job = jobs.find((j) => j.data.userId === userId);
  expect(job).toBeDefined();
  await eventually(
    () => job!.getState(),
    (state) => state === "completed",
    { timeoutMs: 30_000, intervalMs: 200, what: "the suspension follow-up to complete" },
  );
}

async function runningInstance(owner: { token: string }, name: string) {
  const client = app.client({ token: owner.token });
  const created = await client.compute.instances.create.mutate({ name, planId: "nano", imageId: "busybox" });
  expect((await actionDone(client, created.actionId)).status).toBe("succeeded");
  expect(await isRunning(created.instance.id)).toBe(true);
  return created.instance.id;
}

describe("suspension stops the account's instances", () => {
  test("a running container is stopped through the lifecycle queue; reactivation does not start it", async () => {
    const owner = await createUserWithSession(app.services);
    const instanceId = await runningInstance(owner, "suspend-me");

    const result = await api.admin.users.setStatus.mutate({ id: owner.user.id, status: "suspended", reason: "abuse report #7" });
    expect(result.instances).toMatchObject({ stopRequested: [instanceId], waiting: [], failed: [], unsettled: 1, followUp: "scheduled" });

    await eventually(
      () => stateOf(instanceId),
      (state) => state === "stopped",
      { timeoutMs: 30_000, what: "the instance to stop" },
    );
    expect(await isRunning(instanceId)).toBe(false);
    const history = await stateHistory(app.services.db, instanceId);
    expect(history.slice(-2)).toMatchObject([
      { from: "running", to: "stopping", reason: SUSPENSION_REASON, actorType: "user" },
      { from: "stopping", to: "stopped", reason: SUSPENSION_REASON },
    ]);
    const [stopAudit] = await app.services.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "compute.instance.stop"), eq(auditLog.targetId, instanceId)));
    expect(stopAudit).toMatchObject({ actorId: admin.user.id, reason: SUSPENSION_REASON });

    // The follow-up finds nothing left to stop and completes.
    await followUpCompleted(owner.user.id);

    await api.admin.users.setStatus.mutate({ id: owner.user.id, status: "active", reason: "appeal accepted" });
    await Bun.sleep(1500);
    expect(await stateOf(instanceId)).toBe("stopped");
    expect(await isRunning(instanceId)).toBe(false);
    // The owner, signed in again (suspension ended their sessions), may start it themself.
    const back = app.client({ token: (await app.services.sessions.create(owner.user.id, { ip: null, userAgent: null })).token });
    const restarted = await back.compute.instances.start.mutate({ id: instanceId });
    expect((await actionDone(back, restarted.actionId)).status).toBe("succeeded");
    expect(await isRunning(instanceId)).toBe(true);
    await actionDone(back, (await back.compute.instances.delete.mutate({ id: instanceId })).actionId);
  });

  test("an instance still being created when the account is suspended ends up stopped too", async () => {
    const owner = await createUserWithSession(app.services);
    // Hold the lifecycle queue so the create is certainly still in flight when the suspension lands.
    const lifecycle = app.services.queues.queue("lifecycle");
    await lifecycle.pause();
    let createdId = "";
    try {
      const created = await app.client({ token: owner.token }).compute.instances.create.mutate({ name: "in-flight", planId: "nano", imageId: "busybox" });
      createdId = created.instance.id;
      const result = await api.admin.users.setStatus.mutate({ id: owner.user.id, status: "suspended", reason: "suspended mid-create" });
      expect(result.instances).toMatchObject({ stopRequested: [], waiting: [created.instance.id], followUp: "scheduled" });
    } finally {
      await lifecycle.resume();
    }

    await eventually(
      () => stateOf(createdId),
      (state) => state === "stopped",
      { timeoutMs: 40_000, intervalMs: 200, what: "the new instance to be stopped" },
    );
    expect(await isRunning(createdId)).toBe(false);
    const history = await stateHistory(app.services.db, createdId);
    expect(history.map((h) => h.to)).toEqual(["pending", "provisioning", "running", "stopping", "stopped"]);
    expect(history.at(-1)).toMatchObject({ reason: SUSPENSION_REASON, actorType: "system" });
    await followUpCompleted(owner.user.id);
  });
});

describe("force stop", () => {
  test("stops any user's instance, audited with the admin's reason; the owner sees a reason code, not the note", async () => {
    const owner = await createUserWithSession(app.services);
    const instanceId = await runningInstance(owner, "force-me");

    const stopped = await api.admin.instances.forceStop.mutate({ id: instanceId, reason: "mining crypto, ticket #881" });
    expect(stopped.instance).toMatchObject({ id: instanceId, state: "stopping", stateReason: FORCE_STOP_REASON, envNames: [] });
    expect(stopped.instance).not.toHaveProperty("env");
    const ownerApi = app.client({ token: owner.token });
    expect((await actionDone(ownerApi, stopped.actionId)).status).toBe("succeeded");
    expect(await isRunning(instanceId)).toBe(false);
    expect(await ownerApi.compute.instances.get.query({ id: instanceId })).toMatchObject({ state: "stopped", stateReason: FORCE_STOP_REASON });

    const [audit] = await app.services.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "compute.instance.stop"), eq(auditLog.targetId, instanceId)));
    expect(audit).toMatchObject({
      actorType: "user",
      actorId: admin.user.id,
      targetType: "instance",
      reason: "mining crypto, ticket #881",
      metadata: { actionId: stopped.actionId, stateReason: FORCE_STOP_REASON },
    });

    await expectAppError(api.admin.instances.forceStop.mutate({ id: instanceId, reason: "again" }), "INVALID_TRANSITION");
    await actionDone(ownerApi, (await ownerApi.compute.instances.delete.mutate({ id: instanceId })).actionId);
  });
});

describe("instances across users", () => {
  test("filters by user, state, host and priority, and pages stably while instances are added", async () => {
    const alice = await createUserWithSession(app.services);
    const bob = await createUserWithSession(app.services);
    const mine = [];
    const secret = await seedInstance(app.services, alice.user.id, { name: "with-env" });
    await app.services.db
      .update(instances)
      .set({ env: { DATABASE_URL: "postgres://alice:hunter2@db/app", MODE: "prod" } })
      .where(eq(instances.id, secret.id));
    mine.push(secret);
    for (let i = 0; i < 5; i++) {
      mine.push(await seedInstance(app.services, alice.user.id, { name: `a-${i}`, priority: i % 2 ? "interruptible" : "standard", state: i === 4 ? "running" : "stopped" }));
      await seedInstance(app.services, bob.user.id, { name: `b-${i}` });
    }
    const gone = await seedInstance(app.services, alice.user.id, { name: "gone", state: "deleted" });

    const seen: string[] = [];
    let cursor: string | undefined;
    let added = 0;
    do {
      const result = await api.admin.instances.list.query({ userId: alice.user.id, limit: 2, cursor });
      seen.push(...result.items.map((i) => i.id));
      expect(result.items.every((i) => i.userId === alice.user.id && i.ownerEmail === alice.user.email)).toBe(true);
      cursor = result.nextCursor ?? undefined;
      if (cursor) await seedInstance(app.services, alice.user.id, { name: `late-${++added}` });
    } while (cursor);
    expect(seen).toEqual(mine.map((i) => i.id).reverse());
    // Staff see which variables a customer set, not their values.
    const withEnv = (await api.admin.instances.list.query({ userId: alice.user.id, limit: 100 })).items.find((i) => i.id === secret.id)!;
    expect(withEnv.envNames).toEqual(["DATABASE_URL", "MODE"]);
    expect(JSON.stringify(withEnv)).not.toContain("hunter2");

    const ids = async (input: Parameters<typeof api.admin.instances.list.query>[0]) => (await api.admin.instances.list.query({ limit: 100, ...input })).items.map((i) => i.id);
    expect(await ids({ userId: alice.user.id, priority: "interruptible" })).toEqual([mine[4]!.id, mine[2]!.id]);
    expect(await ids({ userId: alice.user.id, state: "running" })).toEqual([mine[5]!.id]);
    expect(await ids({ userId: alice.user.id, state: "deleted" })).toEqual([gone.id]);
    expect(await ids({ userId: alice.user.id, hostId: mine[0]!.hostId })).toHaveLength(6 + added);
    expect(await ids({ userId: alice.user.id, hostId: crypto.randomUUID() })).toEqual([]);
    expect(await ids({ userId: bob.user.id })).toHaveLength(5);
  });
});

describe("hosts", () => {
  test("list each engine's capacity and what the instances placed there reserve", async () => {
    const list = await api.admin.hosts.list.query();
    const local = list.find((h) => h.name === "local")!;
    expect(local).toMatchObject({ status: "active", storageDriver: expect.any(String), lastError: null });
    expect(local.capacity.vcpus).toBeGreaterThan(0);
    expect(local.capacity.memoryMb).toBeGreaterThan(0);

    // What the host reports as reserved agrees with the instances listed on it: every one not deleted counts,
    // only those holding capacity (not stopped by their owner, failed or deleting) count their vCPUs and memory.
    let cursor: string | undefined;
    let vcpus = 0;
    let memoryMb = 0;
    let count = 0;
    do {
      const result = await api.admin.instances.list.query({ hostId: local.id, limit: 100, cursor });
      for (const item of result.items) {
        if (instanceHoldsCapacity({ state: item.lastKnownState, stateReason: item.stateReason })) {
          vcpus += item.vcpus;
          memoryMb += item.memoryMb;
        }
        count += 1;
      }
      cursor = result.nextCursor ?? undefined;
    } while (cursor);
    const [{ volumeMb }] = (await app.services.db
      .select({ volumeMb: sql<number>`coalesce(sum(${volumes.sizeMb}), 0)::int` })
      .from(volumes)
      .where(and(eq(volumes.hostId, local.id), ne(volumes.state, "deleted")))) as [{ volumeMb: number }];
    expect(local.allocated).toEqual({ vcpus, memoryMb, instances: count, volumeMb });
    expect(local.free).toEqual({ vcpus: local.capacity.vcpus - vcpus, memoryMb: local.capacity.memoryMb - memoryMb });
    const [row] = await app.services.db.select().from(hosts).where(eq(hosts.id, local.id));
    expect(local.capacity.vcpus).toBe(row!.cpuCapacityMillis / 1000);
  });
});

describe("queue health", () => {
  test("reports every queue's counts and workers; a queue whose ready work sits with nothing active is stalled", async () => {
    const health = await api.admin.queues.health.query();
    expect(health.queues.map((q) => q.name).sort()).toEqual(["admin", "billing", "emergency", "lifecycle", "mail", "notify"]);
    for (const name of ["admin", "billing", "lifecycle", "mail", "notify"]) {
      expect(health.queues.find((q) => q.name === name)).toMatchObject({ paused: false, stalled: false, workers: 1 });
    }

    // No emergency worker runs in this file (see beforeAll): its queue is one nobody drains.
    const emergency = app.services.queues.queue("emergency");
    const dayAgo = Date.now() - 86_400_000;
    const recent = await emergency.add("power-emergency", { stale: false }, { jobId: jobId("admin-test", crypto.randomUUID()) });
    // LIFO puts it where the next job is taken from: the oldest ready job, as it would be had it really been added a day ago.
    const waiting = await emergency.add("power-emergency", { stale: true }, { jobId: jobId("admin-test", crypto.randomUUID()), timestamp: dayAgo, lifo: true });
    const overdue = await emergency.add("power-emergency", { stale: true }, { jobId: jobId("admin-test", crypto.randomUUID()), timestamp: dayAgo, delay: 1000 });
    try {
      const stalled = (await api.admin.queues.health.query()).queues.find((q) => q.name === "emergency")!;
      expect(stalled).toMatchObject({ active: 0, paused: false, workers: 0, stalled: true });
      expect(stalled.waiting).toBeGreaterThanOrEqual(1);
      expect(stalled.delayed).toBeGreaterThanOrEqual(1);
      expect(stalled.oldestWaitingMs!).toBeGreaterThanOrEqual(86_000_000);
      expect(stalled.overdueDelayedMs!).toBeGreaterThanOrEqual(86_000_000);
      expect(stalled.oldestWaitingMs!).toBeGreaterThan(STALL_AFTER_MS);
      expect((await api.admin.queues.health.query()).healthy).toBe(false);

      // A paused queue is waiting on purpose, not stalled.
      await emergency.pause();
      expect((await api.admin.queues.health.query()).queues.find((q) => q.name === "emergency")).toMatchObject({ paused: true, stalled: false });
    } finally {
      await emergency.resume();
      for (const job of [recent, waiting, overdue]) await job.remove();
    }
  });
});
