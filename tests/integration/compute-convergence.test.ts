import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { hosts, instanceActions, instances } from "../../db/schema";
import { containerSpec, ensureContainer, ensureTenantNetwork, knownTenantNetwork, LABELS, removeTenantNetwork, tenantNetworkName } from "../../server/compute/containers";
import { cgroupParentOf } from "../../server/compute/freezer";
import { syncHosts } from "../../server/compute/hosts";
import { stateHistory } from "../../server/compute/instances";
import { executeAction, tenantNetworkLock } from "../../server/compute/lifecycle";
import { reconcileAll, reconcileInstance } from "../../server/compute/reconcile";
import { startWorkers } from "../../workers/runner";
import { lifecycleProcessor } from "../../workers/lifecycle";
import { actionDone, containersOf } from "../harness/compute";
import { testRun } from "../harness/env";
import { eventually, startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// Workers are off: each test drives the lifecycle code itself to create the
// situations a real deployment meets (duplicate deliveries, crashes, drift).
let app: TestServer;
let api: ReturnType<TestServer["client"]>;

beforeAll(async () => {
  app = await startTestServer();
  await syncHosts(app.services);
  const owner = await createUserWithSession(app.services);
  api = app.client({ token: owner.token });
});
afterAll(async () => {
  await app.services.queues.queue("lifecycle").obliterate({ force: true });
  await app.close();
});

const docker = () => app.services.docker;
const nameOf = (instanceId: string) => `${testRun.dockerNamespace}-${instanceId}`;
const run = (actionId: string, finalAttempt = false) => executeAction(app.services, actionId, { finalAttempt });
const row = async (instanceId: string) => (await app.services.db.select().from(instances).where(eq(instances.id, instanceId)))[0]!;

async function runningInstance(name: string) {
  const { instance, actionId } = await api.compute.instances.create.mutate({ name, planId: "nano", imageId: "busybox" });
  expect((await run(actionId)).status).toBe("succeeded");
  return instance.id;
}

async function destroy(instanceId: string) {
  const { actionId } = await api.compute.instances.delete.mutate({ id: instanceId });
  expect((await run(actionId)).status).toBe("succeeded");
}

describe("lifecycle jobs are idempotent", () => {
  test("the same create job run twice at once, then again, leaves one running container", async () => {
    const { instance, actionId } = await api.compute.instances.create.mutate({ name: "twice", planId: "nano", imageId: "busybox" });
    const results = await Promise.all([run(actionId), run(actionId)]);
    expect(results.map((r) => r.status).sort()).toContain("succeeded");
    expect((await run(actionId)).status).toBe("already-finished");

    const containers = await containersOf(docker(), instance.id);
    expect(containers).toHaveLength(1);
    expect(containers[0]!.State).toBe("running");
    expect((await api.compute.instances.get.query({ id: instance.id })).state).toBe("running");
    expect((await api.compute.actions.get.query({ id: actionId })).status).toBe("succeeded");
    expect((await stateHistory(app.services.db, instance.id)).map((h) => h.to)).toEqual(["pending", "provisioning", "running"]);
    await destroy(instance.id);
  });

  test("a duplicate delivery through the queue, under another job id, changes nothing", async () => {
    const workers = await startWorkers(app.services, [lifecycleProcessor]);
    try {
      const { instance, actionId } = await api.compute.instances.create.mutate({ name: "dup", planId: "nano", imageId: "busybox" });
      await actionDone(api, actionId);
      const before = (await containersOf(docker(), instance.id))[0]!;
      const duplicate = await app.services.queues.queue("lifecycle").add("run", { actionId }, { jobId: `duplicate-${actionId}` });
      await eventually(
        () => duplicate.getState(),
        (state) => state === "completed",
        { what: "the duplicate job to complete" },
      );
      const after = await containersOf(docker(), instance.id);
      expect(after).toHaveLength(1);
      expect(after[0]!.Id).toBe(before.Id);
      const { actionId: deleteId } = await api.compute.instances.delete.mutate({ id: instance.id });
      await actionDone(api, deleteId);
    } finally {
      await workers.close();
    }
  });

  test("a worker killed after creating the container, before recording it, converges on the retry", async () => {
    const { instance, actionId } = await api.compute.instances.create.mutate({ name: "crashed", planId: "nano", imageId: "busybox" });
    // What the killed attempt left: the action claimed, the instance provisioning, a container nobody recorded.
    await app.services.db.update(instanceActions).set({ status: "running", attempts: 1, startedAt: new Date() }).where(eq(instanceActions.id, actionId));
    await app.services.db.update(instances).set({ state: "provisioning" }).where(eq(instances.id, instance.id));
    const crashed = await row(instance.id);
    const network = await tenantNetworkLock(app.services.db, crashed.userId, crashed.hostId)(() => ensureTenantNetwork(docker(), app.services.config, crashed.userId));
    const image = { run: crashed.imageReference, digest: "unknown", volumePaths: [] };
    const [host] = await app.services.db.select().from(hosts).where(eq(hosts.id, crashed.hostId));
    const cgroupParent = cgroupParentOf(app.services.config, host!, crashed.priority);
    const left = await ensureContainer(docker(), containerSpec(app.services.config, crashed, { network, publishAddress: "127.0.0.1", image, writablePaths: [], volumes: [], cgroupParent }));

    expect((await run(actionId)).status).toBe("succeeded");
    const containers = await containersOf(docker(), instance.id);
    expect(containers).toHaveLength(1);
    // Adopted (its create met the name taken), not made again.
    expect(containers[0]!.Id).toBe(left.id);
    expect(containers[0]!.State).toBe("running");
    const action = await api.compute.actions.get.query({ id: actionId });
    expect(action.status).toBe("succeeded");
    expect((await row(instance.id)).state).toBe("running");
    await destroy(instance.id);
  });

  test("a transient failure is retried; on the final attempt the action fails and the instance shows the reason", async () => {
    const { instance, actionId } = await api.compute.instances.create.mutate({ name: "flaky", planId: "nano", imageId: "busybox" });
    const [host] = await app.services.db
      .select()
      .from(hosts)
      .where(eq(hosts.id, (await row(instance.id)).hostId));
    // An engine that does not answer: point the host at a socket nobody serves.
    await app.services.db
      .update(hosts)
      .set({ endpoint: `unix://${testRun.dataDir}/no-docker.sock` })
      .where(eq(hosts.id, host!.id));
    try {
      await expect(run(actionId)).rejects.toThrow();
      expect((await api.compute.actions.get.query({ id: actionId })).status).toBe("running");
      const last = await run(actionId, true);
      expect(last.status).toBe("failed");
    } finally {
      await app.services.db.update(hosts).set({ endpoint: host!.endpoint }).where(eq(hosts.id, host!.id));
    }
    const failed = await api.compute.instances.get.query({ id: instance.id });
    expect(failed.state).toBe("error");
    expect(failed.stateReason).toMatch(/^create failed: /);
    expect((await api.compute.actions.get.query({ id: actionId })).error).toBeTruthy();

    // From error, start provisions it after all.
    const { actionId: startId } = await api.compute.instances.start.mutate({ id: instance.id });
    expect((await run(startId)).status).toBe("succeeded");
    expect((await row(instance.id)).state).toBe("running");
    await destroy(instance.id);
  });

  test("a stopped container made from an older spec is made again at start, with the current one", async () => {
    const id = await runningInstance("respec");
    const { actionId: stopId } = await api.compute.instances.stop.mutate({ id });
    expect((await run(stopId)).status).toBe("succeeded");
    const before = await docker().getContainer(nameOf(id)).inspect();
    // As a resize of a stopped instance leaves it: the plan in the database differs from the container's.
    await app.services.db.update(instances).set({ memoryMb: 512 }).where(eq(instances.id, id));
    const { actionId: startId } = await api.compute.instances.start.mutate({ id });
    expect((await run(startId)).status).toBe("succeeded");
    const after = await docker().getContainer(nameOf(id)).inspect();
    expect(after.Id).not.toBe(before.Id);
    expect(after.HostConfig.Memory).toBe(512 * 1024 * 1024);
    expect(await containersOf(docker(), id)).toHaveLength(1);
    await destroy(id);
  });
});

describe("the tenant network on the create path", () => {
  const config = () => app.services.config;
  async function engineOf(instanceId: string) {
    const [host] = await app.services.db
      .select()
      .from(hosts)
      .where(eq(hosts.id, (await row(instanceId)).hostId));
    return app.services.engines.get(host!.endpoint);
  }

  test("a network this process knew of, removed by another, is made again and the create succeeds", async () => {
    const first = await runningInstance("net-known");
    const { userId } = await row(first);
    const name = tenantNetworkName(config(), userId);
    const before = await docker().getNetwork(name).inspect();
    // This process's lifecycle remembers the network: the next create goes straight to the container.
    expect(knownTenantNetwork(await engineOf(first), config(), userId)).toBe(before.Id);
    // Another process deletes the tenant's last instance: the container, then the network. This one is not told.
    await docker().getContainer(nameOf(first)).remove({ force: true });
    await docker().getNetwork(before.Id).remove();

    const { instance, actionId } = await api.compute.instances.create.mutate({ name: "net-after", planId: "nano", imageId: "busybox" });
    expect((await run(actionId)).status).toBe("succeeded");
    const now = await docker().getNetwork(name).inspect();
    expect(now.Id).not.toBe(before.Id);
    const info = await docker().getContainer(nameOf(instance.id)).inspect();
    expect(info.State.Running).toBe(true);
    expect(info.HostConfig.NetworkMode).toBe(now.Id);
    expect((await row(instance.id)).ipAddress).toBe(Object.values(info.NetworkSettings.Networks)[0]!.IPAddress);
    expect(await containersOf(docker(), instance.id)).toHaveLength(1);
    expect(knownTenantNetwork(await engineOf(instance.id), config(), userId)).toBe(now.Id);
    await destroy(instance.id);
    await destroy(first);
  });

  test("a stopped instance whose network was removed meanwhile starts again, on a new one", async () => {
    const id = await runningInstance("net-stopped");
    const { actionId: stopId } = await api.compute.instances.stop.mutate({ id });
    expect((await run(stopId)).status).toBe("succeeded");
    const { userId } = await row(id);
    const before = await docker().getNetwork(tenantNetworkName(config(), userId)).inspect();
    expect(knownTenantNetwork(await engineOf(id), config(), userId)).toBe(before.Id);
    // A stopped container does not hold its network: the engine lets it go.
    await docker().getNetwork(before.Id).remove();

    const { actionId: startId } = await api.compute.instances.start.mutate({ id });
    expect((await run(startId)).status).toBe("succeeded");
    const now = await docker().getNetwork(tenantNetworkName(config(), userId)).inspect();
    expect(now.Id).not.toBe(before.Id);
    const info = await docker().getContainer(nameOf(id)).inspect();
    expect(info.State.Running).toBe(true);
    expect(info.HostConfig.NetworkMode).toBe(now.Id);
    expect(await containersOf(docker(), id)).toHaveLength(1);
    await destroy(id);
  });

  test("a network that exists unknown to the process is found; a duplicate of its name gives way to the oldest", async () => {
    const owner = `probe${Date.now()}`;
    const name = tenantNetworkName(config(), owner);
    const labels = { [LABELS.namespace]: testRun.dockerNamespace, [LABELS.owner]: owner, [LABELS.kind]: "tenant-network" };
    const oldest = await docker().createNetwork({ Name: name, Driver: "bridge", Labels: labels });
    // Engines before API 1.44 make a second of the same name when asked without CheckDuplicate (as racing creates could).
    const duplicate = await docker()
      .createNetwork({ Name: name, Driver: "bridge", CheckDuplicate: false, Labels: labels })
      .catch(() => null);
    try {
      expect(await tenantNetworkLock(app.services.db, owner, "probe")(() => ensureTenantNetwork(docker(), config(), owner))).toBe(oldest.id);
      const left = (await docker().listNetworks({ filters: { name: [name] } })).filter((n) => n.Name === name);
      expect(left.map((n) => n.Id)).toEqual([oldest.id]);
      if (duplicate) expect(left.map((n) => n.Id)).not.toContain(duplicate.id);
    } finally {
      await removeTenantNetwork(docker(), config(), owner);
    }
    expect(knownTenantNetwork(docker(), config(), owner)).toBeUndefined();
  });
});

describe("the reconciler", () => {
  test("a killed container moves its running instance to error, with the exit code as the reason", async () => {
    const id = await runningInstance("killed");
    await docker().getContainer(nameOf(id)).kill();
    await eventually(
      () => docker().getContainer(nameOf(id)).inspect(),
      (info) => !info.State.Running,
      { what: "the container to die" },
    );
    expect(await reconcileInstance(app.services, id)).toBe("error");
    const instance = await api.compute.instances.get.query({ id });
    expect(instance.state).toBe("error");
    expect(instance.stateReason).toContain("exit code 137");
    expect(await reconcileInstance(app.services, id)).toBeNull();
    await destroy(id);
  });

  test("a removed container moves its instance to error as vanished", async () => {
    const id = await runningInstance("vanished");
    await docker().getContainer(nameOf(id)).remove({ force: true });
    expect(await reconcileInstance(app.services, id)).toBe("error");
    expect((await api.compute.instances.get.query({ id })).stateReason).toBe("container vanished");
    // Starting it again makes a new container.
    const { actionId } = await api.compute.instances.start.mutate({ id });
    expect((await run(actionId)).status).toBe("succeeded");
    expect(await containersOf(docker(), id)).toHaveLength(1);
    await destroy(id);
  });

  test("a container paused behind the platform's back is recorded as paused", async () => {
    const id = await runningInstance("sneaky");
    await docker().getContainer(nameOf(id)).pause();
    expect(await reconcileInstance(app.services, id)).toBe("paused");
    await docker().getContainer(nameOf(id)).unpause();
    expect(await reconcileInstance(app.services, id)).toBe("running");
    await destroy(id);
  });

  test("an instance with an action in flight is left to the lifecycle worker, and reconciled once it is done", async () => {
    const id = await runningInstance("busy");
    const { pauseInstance } = await import("../../server/compute/instances");
    const { actionId } = await pauseInstance(app.services, id, { reason: "power_emergency" });
    await docker().getContainer(nameOf(id)).kill();
    await eventually(
      () => docker().getContainer(nameOf(id)).inspect(),
      (info) => !info.State.Running,
      { what: "the container to die" },
    );
    expect(await reconcileInstance(app.services, id)).toBeNull();

    const paused = await run(actionId);
    expect(paused.status).toBe("failed");
    expect(paused.error).toContain("not running");
    expect((await row(id)).state).toBe("running");
    expect(await reconcileInstance(app.services, id)).toBe("error");
    await destroy(id);
  });

  test("the full pass finds drift, removes orphan containers and recovers lost jobs", async () => {
    const drifted = await runningInstance("drift");
    await docker().getContainer(nameOf(drifted)).remove({ force: true });

    // An orphan: the instance is deleted but its container survived (a delete job's container removal was lost).
    const orphan = await runningInstance("orphan");
    await app.services.db.update(instances).set({ state: "deleted" }).where(eq(instances.id, orphan));

    // A lost enqueue: an action recorded long ago whose job never reached Redis.
    const lost = await api.compute.instances.create.mutate({ name: "lost", planId: "nano", imageId: "busybox" });
    await app.services.queues.queue("lifecycle").obliterate({ force: true });
    await app.services.db
      .update(instanceActions)
      .set({ createdAt: new Date(Date.now() - 10 * 60_000) })
      .where(eq(instanceActions.id, lost.actionId));

    const result = await reconcileAll(app.services);
    expect(result.reconciled).toBeGreaterThanOrEqual(1);
    expect(result.orphansRemoved).toBeGreaterThanOrEqual(1);
    expect(result.requeued).toBeGreaterThanOrEqual(1);
    expect((await row(drifted)).state).toBe("error");
    expect(await containersOf(docker(), orphan)).toHaveLength(0);
    const requeued = await app.services.queues.queue("lifecycle").getJob(`action.${lost.actionId}`);
    expect(requeued?.data).toEqual({ actionId: lost.actionId });

    await destroy(drifted);
    expect((await run(lost.actionId)).status).toBe("succeeded");
    await destroy(lost.instance.id);
  });

  test("with workers running, a container killed from outside is reconciled from the Docker event, well before the periodic pass", async () => {
    const workers = await startWorkers(app.services, [lifecycleProcessor]);
    try {
      const { instance, actionId } = await api.compute.instances.create.mutate({ name: "watched", planId: "nano", imageId: "busybox" });
      await actionDone(api, actionId);
      const started = Date.now();
      await docker().getContainer(nameOf(instance.id)).kill();
      const errored = await eventually(
        () => api.compute.instances.get.query({ id: instance.id }),
        (i) => i.state === "error",
        { timeoutMs: 10_000, what: "the event to be reconciled" },
      );
      expect(Date.now() - started).toBeLessThan(app.services.config.compute.reconcileIntervalMs);
      expect(errored.stateReason).toContain("exit code 137");
      const { actionId: deleteId } = await api.compute.instances.delete.mutate({ id: instance.id });
      await actionDone(api, deleteId);
    } finally {
      await workers.close();
    }
  });
});
