import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq } from "drizzle-orm";
import { auditLog, users } from "../../db/schema";
import { actionDone, execIn, retireInstancesSince } from "../harness/compute";
import { testRun } from "../harness/env";
import { expectAppError } from "../harness/expect";
import { answers, customer, startIngressRig, type IngressRig } from "../harness/ingress";
import { freePort } from "../harness/process";
import { startTestRegistry, TEST_IMAGES, testImage, type TestRegistry } from "../harness/registry";
import { eventually } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// Customers' own images, end to end: an image built here is pushed to a real
// registry on loopback, allowed by an admin, pulled by the lifecycle worker
// within the size and time limits, run hardened with its own command, and
// served through a real Caddy.

let rig: IngressRig;
let registry: TestRegistry;
let appImage: string;
let bigImage: string;
let admin: ReturnType<IngressRig["app"]["client"]>;
const LIMIT = 8 * 1024 * 1024;

const started = new Date();

beforeAll(async () => {
  [rig, registry] = await Promise.all([startIngressRig({ env: { IMAGE_MAX_BYTES: String(LIMIT), IMAGE_PULL_TIMEOUT_MS: "60000" } }), startTestRegistry()]);
  appImage = await registry.push(await testImage("app", TEST_IMAGES.app), "acme/app:v1");
  bigImage = await registry.push(await testImage("big", TEST_IMAGES.big), "acme/big:v1");
  const staff = await createUserWithSession(rig.app.services);
  await rig.app.services.db.update(users).set({ role: "admin" }).where(eq(users.id, staff.user.id));
  admin = rig.app.client({ token: staff.token });
});
afterAll(async () => {
  await retireInstancesSince(rig.app.services, started);
  await rig.close();
  await registry.stop();
});

describe("the allow-list", () => {
  test("an image from a registry nobody allowed is refused at create, naming the registry; malformed references too", async () => {
    const { api } = await customer(rig.app);
    const refused = await expectAppError(api.compute.instances.create.mutate({ name: "nope", planId: "nano", image: appImage }), "REGISTRY_NOT_ALLOWED");
    expect(refused.data).toMatchObject({ httpStatus: 403, details: { registry: registry.host, repository: "acme/app" } });
    for (const image of ["Acme/App:v1", "acme/app:-v1", "acme/app@sha256:1234", "http://evil/app:v1", "acme//app", " acme/app"]) {
      await expectAppError(api.compute.instances.create.mutate({ name: "bad", planId: "nano", image }), "IMAGE_REFERENCE_INVALID");
    }
    // Neither both nor no image.
    await expectAppError(api.compute.instances.create.mutate({ name: "both", planId: "nano", image: appImage, imageId: "busybox" }), "VALIDATION_FAILED");
    await expectAppError(api.compute.instances.create.mutate({ name: "none", planId: "nano" } as never), "VALIDATION_FAILED");
  });

  test("admins add and remove registries (audited); host:port is compared exactly and a prefix matches whole path components", async () => {
    const added = await admin.admin.registries.add.mutate({ pattern: `${registry.host}/acme`, note: "the test registry's acme images" });
    expect(added).toMatchObject({ pattern: `${registry.host}/acme`, source: "admin" });
    await expectAppError(admin.admin.registries.add.mutate({ pattern: `${registry.host}/acme`, note: "twice" }), "CONFLICT");
    await expectAppError(admin.admin.registries.add.mutate({ pattern: "Not A Host!", note: "broken" }), "IMAGE_REFERENCE_INVALID");
    const listed = await admin.admin.registries.list.query();
    expect(listed.map((e) => [e.pattern, e.source])).toEqual([
      ["docker.io", "config"],
      [`${registry.host}/acme`, "admin"],
    ]);
    const [row] = await rig.app.services.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "admin.registry.allowed"), eq(auditLog.targetId, `${registry.host}/acme`)));
    expect(row).toBeDefined();

    const { api } = await customer(rig.app);
    expect(await api.compute.registries.list.query()).toEqual([
      { pattern: "docker.io", source: "config" },
      { pattern: `${registry.host}/acme`, source: "admin" },
    ]);
    const port = registry.host.split(":")[1];
    for (const image of [`localhost:${port}/acme/app:v1`, `${registry.host}/acme-evil/app:v1`, `${registry.host}/other/app:v1`, `127.0.0.2:${port}/acme/app:v1`]) {
      await expectAppError(api.compute.instances.create.mutate({ name: "near-miss", planId: "nano", image }), "REGISTRY_NOT_ALLOWED");
    }
    // A Hub short name is normalised like Docker does: docker.io/library/…
    const hub = await rig.app.services.db.transaction(async (tx) => (await import("../../server/registries/allowlist")).resolveAllowedImage(tx, rig.app.services.config, "busybox"));
    expect(hub.normalized).toBe("docker.io/library/busybox:latest");

    const temp = await admin.admin.registries.add.mutate({ pattern: "ghcr.io/temp", note: "to be removed" });
    expect(await admin.admin.registries.remove.mutate({ id: temp.id!, reason: "no longer needed" })).toEqual({ removed: "ghcr.io/temp" });
    await expectAppError(admin.admin.registries.remove.mutate({ id: temp.id!, reason: "again" }), "NOT_FOUND");
  });

  test("only admins manage it: customers are FORBIDDEN, anonymous callers UNAUTHENTICATED", async () => {
    const { api } = await customer(rig.app);
    await expectAppError(api.admin.registries.list.query(), "FORBIDDEN");
    await expectAppError(api.admin.registries.add.mutate({ pattern: "evil.example", note: "let me in" }), "FORBIDDEN");
    await expectAppError(rig.app.client().admin.registries.list.query(), "UNAUTHENTICATED");
  });
});

describe("an own image", () => {
  test("runs with its own command on its own port, hardened whatever its USER and VOLUME say, and is reachable through the proxy", async () => {
    const { api } = await customer(rig.app);
    const created = await api.compute.instances.create.mutate({
      name: "own",
      planId: "nano",
      image: appImage,
      command: ["/bin/httpd"],
      args: ["-f", "-p", "9090", "-h", "/site"],
      httpPort: 9090,
    });
    expect(created.instance).toMatchObject({ imageReference: appImage, imageId: null, httpPort: 9090, command: ["/bin/httpd"], args: ["-f", "-p", "9090", "-h", "/site"] });
    const action = await actionDone(api, created.actionId, 90_000);
    expect(action.status).toBe("succeeded");
    // The pull reported its progress on the action: the registry's size, every layer done.
    expect(action.progress).toMatchObject({ phase: "starting" });
    expect(action.progress!.bytesTotal).toBeGreaterThan(0);
    expect(action.progress!.layersDone).toBe(action.progress!.layersTotal);

    const instance = await api.compute.instances.get.query({ id: created.instance.id });
    const manifest = await fetch(`http://${registry.host}/v2/acme/app/manifests/v1`, { headers: { accept: "application/vnd.docker.distribution.manifest.v2+json" } });
    expect(instance.imageDigest).toBe(manifest.headers.get("docker-content-digest")!);
    const page = await answers(rig.proxy, instance.url!, 200);
    expect(page.body).toBe("hello from an own image\n");

    const name = `${testRun.dockerNamespace}-${instance.id}`;
    const info = await rig.app.services.docker.getContainer(name).inspect();
    expect(info.Config.Image).toBe(`${registry.host}/acme/app@${instance.imageDigest}`);
    expect(info.Config.User).toBe("10001:10001");
    expect(info.HostConfig.ReadonlyRootfs).toBe(true);
    // The image's VOLUME /data is capped tmpfs, never an anonymous volume on the host's disk.
    expect(Object.keys((info.HostConfig as { Tmpfs: Record<string, string> }).Tmpfs).sort()).toEqual(["/data", "/tmp"]);
    expect(info.Mounts.filter((m) => m.Type === "volume")).toEqual([]);
    expect((await execIn(rig.app.services.docker, name, ["id", "-u"])).output.trim()).toBe("10001");
  });

  test("command and args are argv, never a shell line", async () => {
    const { api } = await customer(rig.app);
    const created = await api.compute.instances.create.mutate({ name: "argv", planId: "nano", image: appImage, command: ["/bin/echo"], args: ["$(id -u); touch /tmp/pwned", "`reboot`"] });
    expect((await actionDone(api, created.actionId, 90_000)).status).toBe("succeeded");
    const logs = await eventually(
      () => api.compute.instances.logs.query({ id: created.instance.id }),
      (l) => l.lines.length > 0,
      { timeoutMs: 20_000, what: "the echo" },
    );
    expect(logs.lines[0]!.message).toBe("$(id -u); touch /tmp/pwned `reboot`");
    await expectAppError(api.compute.instances.create.mutate({ name: "nul", planId: "nano", image: appImage, command: ["/bin/sh\0"] }), "VALIDATION_FAILED");
    await expectAppError(api.compute.instances.create.mutate({ name: "empty", planId: "nano", image: appImage, command: [] }), "VALIDATION_FAILED");
    await expectAppError(api.compute.instances.create.mutate({ name: "long", planId: "nano", image: appImage, args: Array.from({ length: 65 }, () => "x") }), "VALIDATION_FAILED");
  });

  test("a missing tag, an unreachable registry and an oversize image each end in a failed action with the reason", async () => {
    const { api } = await customer(rig.app);
    const closed = `127.0.0.1:${await freePort()}`;
    await admin.admin.registries.add.mutate({ pattern: closed, note: "a registry that is down" });
    const cases = [
      { name: "no-tag", image: `${registry.host}/acme/app:v404`, reason: /not found in the registry/ },
      { name: "offline", image: `${closed}/acme/app:v1`, reason: /could not be reached/ },
      { name: "too-big", image: bigImage, reason: /over this platform's limit of 8\.0 MiB \(IMAGE_MAX_BYTES\)/ },
    ];
    for (const c of cases) {
      const created = await api.compute.instances.create.mutate({ name: c.name, planId: "nano", image: c.image });
      const action = await actionDone(api, created.actionId, 90_000);
      expect({ name: c.name, status: action.status }).toEqual({ name: c.name, status: "failed" });
      expect(action.error).toMatch(c.reason);
      const instance = await api.compute.instances.get.query({ id: created.instance.id });
      expect(instance.state).toBe("error");
      expect(instance.stateReason).toMatch(c.reason);
    }
    // The oversize image was refused from its manifest, before anything was pulled.
    const [tooBig] = (await api.compute.instances.list.query({ state: "error" })).items.filter((i) => i.name === "too-big");
    expect(tooBig!.stateReason).toMatch(/MiB compressed, over/);
  });
});
