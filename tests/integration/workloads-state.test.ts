import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { syncHosts } from "../../server/compute/hosts";
import { actionDone, execIn, retireInstancesSince } from "../harness/compute";
import { testRun } from "../harness/env";
import { eventually, startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// What an instance's state says must be what its container does: a stop from
// outside is a stop, an out-of-memory kill (of any process) is recorded, and
// a crash is restarted a bounded number of times.

let app: TestServer;
let api: ReturnType<TestServer["client"]>;

const started = new Date();

beforeAll(async () => {
  app = await startTestServer({ workers: true });
  await syncHosts(app.services);
  const owner = await createUserWithSession(app.services);
  api = app.client({ token: owner.token });
});
afterAll(async () => {
  await retireInstancesSince(app.services, started);
  await app.close();
});

const docker = () => app.services.docker;
const nameOf = (id: string) => `${testRun.dockerNamespace}-${id}`;
async function launch(name: string, extra: { command?: string[]; args?: string[] } = {}) {
  const created = await api.compute.instances.create.mutate({ name, planId: "nano", imageId: "busybox", ...extra });
  expect((await actionDone(api, created.actionId)).status).toBe("succeeded");
  return created.instance.id;
}
const settles = (id: string, state: string) =>
  eventually(
    () => api.compute.instances.get.query({ id }),
    (i) => i.state === state,
    { timeoutMs: 30_000, what: `the instance to be ${state}` },
  );

describe("from the engine's events", () => {
  test("a container stopped outside the platform with SIGTERM (exit 143 under the init) reads as stopped, not error", async () => {
    const id = await launch("sigterm");
    await docker().getContainer(nameOf(id)).stop({ t: 5 });
    expect((await docker().getContainer(nameOf(id)).inspect()).State.ExitCode).toBe(143);
    const stopped = await settles(id, "stopped");
    expect(stopped.stateReason).toContain("SIGTERM");
    // And it starts again from there.
    const started = await api.compute.instances.start.mutate({ id });
    expect((await actionDone(api, started.actionId)).status).toBe("succeeded");
    await docker().getContainer(nameOf(id)).kill({ signal: "SIGTERM" });
    expect((await settles(id, "stopped")).stateReason).toContain("exit code 143");
  });

  test("an out-of-memory kill of a child process is counted on the instance, which keeps running", async () => {
    const id = await launch("hungry");
    const before = Date.now();
    // A child of the container's init grows until the kernel kills it (PID 1 lives on).
    const hog = await execIn(docker(), nameOf(id), ["awk", 'BEGIN { s = "x"; while (1) s = s s }'], 60_000);
    expect(hog.exitCode).toBe(137);
    const instance = await eventually(
      () => api.compute.instances.get.query({ id }),
      (i) => i.oom.kills >= 1,
      { timeoutMs: 30_000, what: "the OOM kill to be recorded" },
    );
    expect(instance.state).toBe("running");
    expect(Date.parse(instance.oom.lastAt!)).toBeGreaterThanOrEqual(before - 1000);
    // The kernel's own count agrees (cgroup v1).
    const info = await docker().getContainer(nameOf(id)).inspect();
    // Under its freeze group (the cgroup parent the platform gives it on this cgroupfs engine).
    const control = await Bun.file(`/sys/fs/cgroup/memory${info.HostConfig.CgroupParent}/${info.Id}/memory.oom_control`).text();
    expect(Number(/oom_kill (\d+)/.exec(control)![1])).toBe(instance.oom.kills);
  });

  test("a crashing program is restarted by the engine a bounded number of times, then the instance is in error", async () => {
    const id = await launch("crashy", { command: ["/bin/sh", "-c", "sleep 1; exit 3"] });
    const failed = await settles(id, "error");
    expect(failed.stateReason).toContain("exit code 3, after 3 automatic restarts");
    expect((await docker().getContainer(nameOf(id)).inspect()).RestartCount).toBe(3);
  });
});
