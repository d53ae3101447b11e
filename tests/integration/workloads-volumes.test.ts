import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { stat } from "node:fs/promises";
import { eq } from "drizzle-orm";
import { hosts } from "../../db/schema";
import { syncHosts } from "../../server/compute/hosts";
import { reconcileAll } from "../../server/compute/reconcile";
import { volumeFile } from "../../server/compute/volumes/storage";
import { setUserQuota } from "../../server/compute/quotas";
import { actionDone, execIn, retireInstancesSince } from "../harness/compute";
import { testRun } from "../harness/env";
import { expectAppError } from "../harness/expect";
import { eventually, startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// Persistent volumes of a fixed size: an ext4 file allocated in full under
// the data folder, on a loop device, mounted by the engine. Writing past the
// size fails inside the container and the host's disk is untouched.

let app: TestServer;
let api: ReturnType<TestServer["client"]>;
let owner: Awaited<ReturnType<typeof createUserWithSession>>;
const MIB = 1024 * 1024;

const started = new Date();

beforeAll(async () => {
  app = await startTestServer({ workers: true });
  await syncHosts(app.services);
  owner = await createUserWithSession(app.services);
  api = app.client({ token: owner.token });
});
afterAll(async () => {
  await retireInstancesSince(app.services, started);
  await app.close();
});

const docker = () => app.services.docker;
const nameOf = (id: string) => `${testRun.dockerNamespace}-${id}`;
const volumeReady = (id: string) =>
  eventually(
    () => api.compute.volumes.get.query({ id }),
    (v) => v.state === "available" || v.state === "error",
    { timeoutMs: 30_000, what: "the volume" },
  );

test("the host reports what it can do about volumes", async () => {
  const [host] = await app.services.db.select().from(hosts).where(eq(hosts.name, "local"));
  expect(host).toMatchObject({ volumesSupported: true, volumesNote: null, usernsRemap: false });
  expect(host!.volumeCapacityMb).toBeGreaterThan(0);
});

describe("a volume attached at create", () => {
  let instanceId: string;
  let volumeId: string;

  test("is made at the size asked for, mounted where asked, writable by the instance user", async () => {
    const created = await api.compute.instances.create.mutate({ name: "db", planId: "nano", imageId: "busybox", volumes: [{ name: "pgdata", sizeMb: 32, mountPath: "/var/lib/data" }] });
    expect((await actionDone(api, created.actionId)).status).toBe("succeeded");
    instanceId = created.instance.id;
    const instance = await api.compute.instances.get.query({ id: instanceId });
    expect(instance.volumes).toHaveLength(1);
    expect(instance.volumes[0]).toMatchObject({ name: "pgdata", sizeMb: 32, state: "available", mountPath: "/var/lib/data", instanceId });
    volumeId = instance.volumes[0]!.id;
    const info = await docker().getContainer(nameOf(instanceId)).inspect();
    expect(info.Mounts.filter((m) => m.Type === "volume").map((m) => [m.Name, m.Destination])).toEqual([[`${testRun.dockerNamespace}-vol-${volumeId}`, "/var/lib/data"]]);
    const write = await execIn(docker(), nameOf(instanceId), ["sh", "-c", "echo kept > /var/lib/data/note && cat /var/lib/data/note"]);
    expect(write.output.trim()).toBe("kept");
  });

  test("writing twice its size fails with ENOSPC inside, and the host's disk is untouched", async () => {
    const file = volumeFile(app.services.config, volumeId);
    const before = await stat(file);
    expect(before.size).toBe(32 * MIB);
    // Allocated in full up front: the file never grows on the host's disk.
    expect(before.blocks * 512).toBeGreaterThanOrEqual(32 * MIB);
    const fill = await execIn(docker(), nameOf(instanceId), ["sh", "-c", "dd if=/dev/zero of=/var/lib/data/fill bs=1M count=64 2>&1; echo rc=$?"], 60_000);
    expect(fill.output).toContain("No space left on device");
    expect(fill.output).toContain("rc=1");
    const after = await stat(file);
    expect(after.size).toBe(before.size);
    expect(after.blocks).toBe(before.blocks);
    // Nothing reached the container's writable layer either: its root is read-only.
    const sized = (await docker()
      .getContainer(nameOf(instanceId))
      .inspect({ size: true } as object)) as { SizeRw?: number };
    expect(sized.SizeRw ?? 0).toBeLessThan(MIB);
    await execIn(docker(), nameOf(instanceId), ["rm", "/var/lib/data/fill"]);
  });

  test("after a reboot the reconciler re-attaches the file and the instance starts with its data", async () => {
    const stopped = await api.compute.instances.stop.mutate({ id: instanceId });
    expect((await actionDone(api, stopped.actionId)).status).toBe("succeeded");
    // What a reboot leaves: no loop device for the file.
    const file = volumeFile(app.services.config, volumeId);
    const devices = Bun.spawnSync(["losetup", "-j", file])
      .stdout.toString()
      .split("\n")
      .filter(Boolean)
      .map((l) => l.split(":")[0]!);
    expect(devices.length).toBe(1);
    for (const device of devices) expect(Bun.spawnSync(["losetup", "-d", device]).exitCode).toBe(0);
    const pass = await reconcileAll(app.services);
    expect(pass.volumesReattached).toBeGreaterThanOrEqual(1);
    const started = await api.compute.instances.start.mutate({ id: instanceId });
    expect((await actionDone(api, started.actionId)).status).toBe("succeeded");
    expect((await execIn(docker(), nameOf(instanceId), ["cat", "/var/lib/data/note"])).output.trim()).toBe("kept");
  });

  test("deleting the instance keeps the volume; another instance mounts it with the data", async () => {
    const deleted = await api.compute.instances.delete.mutate({ id: instanceId });
    expect((await actionDone(api, deleted.actionId)).status).toBe("succeeded");
    expect(await api.compute.volumes.get.query({ id: volumeId })).toMatchObject({ state: "available", instanceId: null, mountPath: null });
    const again = await api.compute.instances.create.mutate({ name: "db-2", planId: "nano", imageId: "busybox", volumes: [{ volumeId, mountPath: "/srv/data" }] });
    expect((await actionDone(api, again.actionId)).status).toBe("succeeded");
    expect((await execIn(docker(), nameOf(again.instance.id), ["cat", "/srv/data/note"])).output.trim()).toBe("kept");
    // Attached: it cannot be deleted, nor attached twice.
    await expectAppError(api.compute.volumes.delete.mutate({ id: volumeId }), "CONFLICT");
    await expectAppError(api.compute.instances.create.mutate({ name: "thief", planId: "nano", imageId: "busybox", volumes: [{ volumeId, mountPath: "/data" }] }), "CONFLICT");
    // deleteVolumes: the volume goes with the instance, file and all.
    const gone = await api.compute.instances.delete.mutate({ id: again.instance.id, deleteVolumes: true });
    expect((await actionDone(api, gone.actionId)).status).toBe("succeeded");
    expect((await api.compute.volumes.get.query({ id: volumeId })).state).toBe("deleted");
    expect(await Bun.file(volumeFile(app.services.config, volumeId)).exists()).toBe(false);
    expect(
      await docker()
        .listVolumes({ filters: { name: [`${testRun.dockerNamespace}-vol-${volumeId}`] } })
        .then((r) => r.Volumes ?? []),
    ).toEqual([]);
  });
});

describe("standalone volumes", () => {
  test("create, list, get and delete; the worker makes and removes the storage", async () => {
    const volume = await api.compute.volumes.create.mutate({ name: "cache", sizeMb: 48 });
    expect(volume).toMatchObject({ state: "creating", sizeMb: 48, instanceId: null });
    expect((await volumeReady(volume.id)).state).toBe("available");
    expect((await api.compute.volumes.list.query()).items.map((v) => v.id)).toContain(volume.id);
    await expectAppError(api.compute.volumes.create.mutate({ name: "cache", sizeMb: 48 }), "CONFLICT");
    const deleting = await api.compute.volumes.delete.mutate({ id: volume.id });
    expect(deleting.state).toBe("deleting");
    await eventually(
      () => api.compute.volumes.get.query({ id: volume.id }),
      (v) => v.state === "deleted",
      { timeoutMs: 30_000, what: "the deletion" },
    );
    expect(await Bun.file(volumeFile(app.services.config, volume.id)).exists()).toBe(false);
    expect((await api.compute.volumes.list.query()).items.map((v) => v.id)).not.toContain(volume.id);
  });

  test("sizes and counts are bounded by quota and limits", async () => {
    const user = await createUserWithSession(app.services);
    const client = app.client({ token: user.token });
    await setUserQuota(app.services.db, user.user.id, { maxVolumeMb: 100, maxVolumes: 2 });
    await expectAppError(client.compute.volumes.create.mutate({ name: "tiny", sizeMb: 16 }), "VALIDATION_FAILED");
    const over = await expectAppError(client.compute.volumes.create.mutate({ name: "huge", sizeMb: 101 }), "QUOTA_EXCEEDED");
    expect(over.data.details).toMatchObject({ resource: "volumeMb", limit: 100 });
    const a = await client.compute.volumes.create.mutate({ name: "a", sizeMb: 32 });
    await client.compute.volumes.create.mutate({ name: "b", sizeMb: 32 });
    expect((await expectAppError(client.compute.volumes.create.mutate({ name: "c", sizeMb: 32 }), "QUOTA_EXCEEDED")).data.details).toMatchObject({ resource: "volumes" });
    await eventually(
      () => client.compute.volumes.get.query({ id: a.id }),
      (v) => v.state === "available",
      { timeoutMs: 30_000, what: "the volume" },
    );
  });
});

describe("mount paths", () => {
  test("must be absolute, normalised, not / nor a system folder, and not nested in each other", async () => {
    const create = (mountPath: string, extra: Array<{ name: string; mountPath: string }> = []) =>
      api.compute.instances.create.mutate({ name: "paths", planId: "nano", imageId: "busybox", volumes: [{ name: "p1", sizeMb: 32, mountPath }, ...extra.map((e) => ({ ...e, sizeMb: 32 }))] });
    for (const bad of ["data", "/", "/proc", "/proc/self", "/sys/x", "/dev/shm", "/etc", "/etc/app", "/tmp", "/usr/lib/x", "/data/../etc", "/data/./x", "/data/", "//data", "/da ta", "/.hidden"]) {
      const error = await expectAppError(create(bad), "MOUNT_PATH_INVALID");
      expect(error.data.details).toMatchObject({ field: "volumes.0.mountPath" });
    }
    await expectAppError(create("/data", [{ name: "p2", mountPath: "/data/sub" }]), "MOUNT_PATH_INVALID");
    await expectAppError(create("/data", [{ name: "p2", mountPath: "/data" }]), "MOUNT_PATH_INVALID");
    // Nothing was recorded by the refusals.
    expect((await api.compute.volumes.list.query()).items.map((v) => v.name)).not.toContain("p1");
  });
});
