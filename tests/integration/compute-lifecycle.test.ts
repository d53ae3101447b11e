import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { listInstancesByPriority, pauseInstance, resumeInstance, stateHistory, stopInstance, startInstance } from "../../server/compute/instances";
import { syncHosts } from "../../server/compute/hosts";
import { actionDone, containersOf, execIn } from "../harness/compute";
import { testRun } from "../harness/env";
import { expectAppError } from "../harness/expect";
import { eventually, startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

let app: TestServer;
let api: ReturnType<TestServer["client"]>;
let owner: Awaited<ReturnType<typeof createUserWithSession>>;

beforeAll(async () => {
  app = await startTestServer({ workers: true });
  await syncHosts(app.services);
  owner = await createUserWithSession(app.services);
  api = app.client({ token: owner.token });
});
afterAll(() => app.close());

const MIB = 1024 * 1024;
const docker = () => app.services.docker;
const inspect = (instanceId: string) => docker().getContainer(`${testRun.dockerNamespace}-${instanceId}`).inspect();

describe("the catalogue", () => {
  test("lists plans with sizes and integer prices, and the local BusyBox image", async () => {
    const plans = await api.compute.plans.list.query();
    const nano = plans.find((p) => p.slug === "nano")!;
    expect(nano).toMatchObject({ vcpus: 0.25, memoryMb: 256, diskGb: 5, currency: "USD" });
    for (const plan of plans) {
      expect(Number.isInteger(plan.priceHourlyMinor)).toBe(true);
      expect(Number.isInteger(plan.priceMonthlyMinor)).toBe(true);
    }
    const images = await api.compute.images.list.query();
    expect(images.map((i) => i.reference)).toContain("sahary/busybox:1.35");
  });
});

describe("an instance's life", () => {
  let instanceId: string;

  test("create answers at once with a pending instance and an action that ends with it running", async () => {
    const created = await api.compute.instances.create.mutate({ name: "web-1", planId: "nano", imageId: "busybox", env: { GREETING: "salam" } });
    expect(created.instance.state).toBe("pending");
    expect(created.replayed).toBe(false);
    instanceId = created.instance.id;

    const action = await actionDone(api, created.actionId);
    expect(action).toMatchObject({ kind: "create", status: "succeeded", error: null });
    const instance = await api.compute.instances.get.query({ id: instanceId });
    expect(instance.state).toBe("running");
    expect(instance.ipAddress).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(instance).toMatchObject({ vcpus: 0.25, memoryMb: 256, priority: "standard", env: { GREETING: "salam" } });
  });

  test("the container carries the plan's limits, the hardening and the labels", async () => {
    const info = await inspect(instanceId);
    const hc = info.HostConfig;
    expect(hc.Memory).toBe(256 * MIB);
    expect(hc.MemorySwap).toBe(256 * MIB);
    expect(hc.NanoCpus).toBe(250_000_000);
    expect(hc.PidsLimit).toBe(app.services.config.compute.pidsLimit);
    expect(hc.CapDrop).toEqual(["ALL"]);
    expect(hc.CapAdd ?? []).toEqual([]);
    expect(hc.SecurityOpt).toContain("no-new-privileges:true");
    expect(hc.Init).toBe(true);
    expect(hc.Privileged).toBe(false);
    expect(hc.ReadonlyRootfs).toBe(true);
    expect(info.Config.User).toBe("10001:10001");
    expect(hc.RestartPolicy).toEqual({ Name: "on-failure", MaximumRetryCount: 3 });
    // 25 % of the nano plan's 256 MiB, owned by the instance user.
    expect((hc as { Tmpfs?: Record<string, string> }).Tmpfs).toEqual({ "/tmp": "rw,noexec,nosuid,nodev,size=64m,mode=1777,uid=10001,gid=10001" });
    expect(info.Mounts.filter((m) => m.Type === "volume" || m.Type === "bind")).toEqual([]);
    expect(info.Config.Labels).toMatchObject({ "sahary.namespace": testRun.dockerNamespace, "sahary.instance": instanceId, "sahary.owner": owner.user.id });
    expect(info.Config.Env).toContain("GREETING=salam");
    expect(info.Name).toBe(`/${testRun.dockerNamespace}-${instanceId}`);

    const network = `${testRun.dockerNamespace}-tenant-${owner.user.id}`;
    const net = await docker().getNetwork(network).inspect();
    expect(hc.NetworkMode).toBe(net.Id);
    expect(Object.values(info.NetworkSettings.Networks).map((n) => n.NetworkID)).toEqual([net.Id]);
    expect(net.Driver).toBe("bridge");
    expect(net.Labels).toMatchObject({ "sahary.namespace": testRun.dockerNamespace, "sahary.owner": owner.user.id });
  });

  test("inside: / is read-only, the user is not root and holds no capability, /tmp is capped", async () => {
    const name = `${testRun.dockerNamespace}-${instanceId}`;
    expect((await execIn(docker(), name, ["id", "-u"])).output.trim()).toBe("10001");
    const root = await execIn(docker(), name, ["sh", "-c", "touch /probe 2>&1; echo rc=$?"]);
    expect(root.output).toContain("Read-only file system");
    expect(root.output).toContain("rc=1");
    const caps = await execIn(docker(), name, ["sh", "-c", "grep -E '^Cap(Prm|Eff|Amb)' /proc/self/status"]);
    for (const line of caps.output.trim().split("\n")) expect(line).toMatch(/\t0000000000000000$/);
    const tmp = await execIn(docker(), name, ["sh", "-c", "dd if=/dev/zero of=/tmp/fill bs=1M count=100 2>&1; echo rc=$?; rm -f /tmp/fill"]);
    expect(tmp.output).toContain("No space left on device");
  });

  test("the disk is enforced: read-only root, capped scratch space, no anonymous volumes", async () => {
    const instance = await api.compute.instances.get.query({ id: instanceId });
    expect(instance.diskLimitEnforced).toBe(true);
    expect(instance.imageDigest).toMatch(/^sha256:[a-f0-9]{64}$/);
  });

  test("the state history records each step with its reason", async () => {
    const history = await stateHistory(app.services.db, instanceId);
    expect(history.map((h) => [h.from, h.to])).toEqual([
      [null, "pending"],
      ["pending", "provisioning"],
      ["provisioning", "running"],
    ]);
  });

  test("stats report live CPU, memory against the plan's limit, and network", async () => {
    const stats = await api.compute.instances.stats.query({ id: instanceId });
    expect(stats.cpu.percent).toBeGreaterThanOrEqual(0);
    expect(stats.cpu.vcpus).toBe(0.25);
    expect(stats.memory.limitBytes).toBe(256 * MIB);
    expect(stats.memory.usageBytes).toBeGreaterThan(0);
    expect(stats.network.rxBytes).toBeGreaterThanOrEqual(0);
    expect(stats.pids.current).toBeGreaterThanOrEqual(1);
    expect(Date.parse(stats.at)).toBeGreaterThan(Date.now() - 60_000);
  });

  test("logs return the tail of stdout and stderr, oldest first", async () => {
    // PID 1 is the init; its stdout and stderr are the container's.
    await execIn(docker(), `${testRun.dockerNamespace}-${instanceId}`, ["sh", "-c", "for i in 1 2 3 4 5; do echo line-$i > /proc/1/fd/1; done; sleep 0.2; echo oops > /proc/1/fd/2"]);
    const logs = await eventually(
      () => api.compute.instances.logs.query({ id: instanceId, tail: 3 }),
      (l) => l.lines.some((line) => line.message === "oops"),
      { what: "log lines" },
    );
    expect(logs.lines.map((l) => [l.stream, l.message])).toEqual([
      ["stdout", "line-4"],
      ["stdout", "line-5"],
      ["stderr", "oops"],
    ]);
    for (const line of logs.lines) expect(Date.parse(line.at!)).toBeGreaterThan(Date.now() - 60_000);
  });

  test("stop stops the container and keeps it; stats are then refused", async () => {
    const { actionId, instance } = await api.compute.instances.stop.mutate({ id: instanceId });
    expect(instance.state).toBe("stopping");
    expect((await actionDone(api, actionId)).status).toBe("succeeded");
    expect((await api.compute.instances.get.query({ id: instanceId })).state).toBe("stopped");
    const info = await inspect(instanceId);
    expect(info.State.Running).toBe(false);
    await expectAppError(api.compute.instances.stats.query({ id: instanceId }), "CONFLICT");
    await expectAppError(api.compute.instances.stop.mutate({ id: instanceId }), "INVALID_TRANSITION");
  });

  test("start brings the same container back", async () => {
    const before = await inspect(instanceId);
    const { actionId, instance } = await api.compute.instances.start.mutate({ id: instanceId });
    expect(instance.state).toBe("provisioning");
    expect((await actionDone(api, actionId)).status).toBe("succeeded");
    expect((await api.compute.instances.get.query({ id: instanceId })).state).toBe("running");
    const after = await inspect(instanceId);
    expect(after.Id).toBe(before.Id);
    expect(after.State.Running).toBe(true);
  });

  test("restart restarts the container", async () => {
    const before = await inspect(instanceId);
    const { actionId } = await api.compute.instances.restart.mutate({ id: instanceId });
    expect((await actionDone(api, actionId)).status).toBe("succeeded");
    const after = await inspect(instanceId);
    expect(after.State.Running).toBe(true);
    expect(Date.parse(after.State.StartedAt)).toBeGreaterThan(Date.parse(before.State.StartedAt));
    expect((await api.compute.instances.get.query({ id: instanceId })).state).toBe("running");
  });

  test("pause and resume, as the power policy calls them, freeze and thaw the container and record the reason", async () => {
    const paused = await pauseInstance(app.services, instanceId, { reason: "power_emergency" });
    expect((await actionDone(api, paused.actionId)).status).toBe("succeeded");
    expect((await api.compute.instances.get.query({ id: instanceId })).state).toBe("paused");
    expect((await inspect(instanceId)).State.Paused).toBe(true);
    expect((await listInstancesByPriority(app.services, { states: ["paused"] })).map((i) => i.id)).toContain(instanceId);

    const resumed = await resumeInstance(app.services, instanceId, { reason: "power_restored" });
    expect((await actionDone(api, resumed.actionId)).status).toBe("succeeded");
    expect((await api.compute.instances.get.query({ id: instanceId })).state).toBe("running");
    expect((await inspect(instanceId)).State.Paused).toBe(false);

    const history = await stateHistory(app.services.db, instanceId);
    expect(history.slice(-2).map((h) => [h.from, h.to, h.reason, h.actorType])).toEqual([
      ["running", "paused", "power_emergency", "system"],
      ["paused", "running", "power_restored", "system"],
    ]);
  });

  test("stop and start with a reason, as the power policy calls them, record it", async () => {
    const stopped = await stopInstance(app.services, instanceId, { reason: "power_emergency" });
    expect((await actionDone(api, stopped.actionId)).status).toBe("succeeded");
    const started = await startInstance(app.services, instanceId, { reason: "power_restored" });
    expect((await actionDone(api, started.actionId)).status).toBe("succeeded");
    const history = await stateHistory(app.services.db, instanceId);
    expect(history.slice(-4).map((h) => [h.to, h.reason])).toEqual([
      ["stopping", "power_emergency"],
      ["stopped", "power_emergency"],
      ["provisioning", "power_restored"],
      ["running", "power_restored"],
    ]);
  });

  test("delete removes the container, and the tenant network with the tenant's last instance", async () => {
    const network = `${testRun.dockerNamespace}-tenant-${owner.user.id}`;
    const { actionId, instance } = await api.compute.instances.delete.mutate({ id: instanceId });
    expect(instance.state).toBe("deleting");
    expect((await actionDone(api, actionId)).status).toBe("succeeded");
    const gone = await api.compute.instances.get.query({ id: instanceId });
    expect(gone.state).toBe("deleted");
    expect(gone.deletedAt).not.toBeNull();
    expect(await containersOf(docker(), instanceId)).toHaveLength(0);
    expect(await docker().listNetworks({ filters: { name: [network] } })).toHaveLength(0);
    expect((await api.compute.instances.list.query()).items.map((i) => i.id)).not.toContain(instanceId);
    expect((await api.compute.instances.list.query({ state: "deleted" })).items.map((i) => i.id)).toContain(instanceId);
  });
});

describe("a missing image", () => {
  test("puts the instance in error with a reason that names the image, without hanging", async () => {
    const { images } = await import("../../db/schema");
    const reference = `sahary/absent-${testRun.id}:1`;
    await app.services.db.insert(images).values({ slug: `absent-${testRun.id}`, name: "Absent", reference, description: "not on any host" });
    const created = await api.compute.instances.create.mutate({ name: "ghost", planId: "nano", imageId: `absent-${testRun.id}` });
    const action = await actionDone(api, created.actionId);
    expect(action.status).toBe("failed");
    expect(action.error).toContain(reference);
    const instance = await api.compute.instances.get.query({ id: created.instance.id });
    expect(instance.state).toBe("error");
    expect(instance.stateReason).toContain(reference);
    expect(await containersOf(docker(), created.instance.id)).toHaveLength(0);

    const deleted = await api.compute.instances.delete.mutate({ id: created.instance.id });
    expect((await actionDone(api, deleted.actionId)).status).toBe("succeeded");
  });
});
