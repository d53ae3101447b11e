import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { inArray } from "drizzle-orm";
import { instanceActions, instances } from "../../db/schema";
import type { Scope } from "../../server/auth/actor";
import { syncHosts } from "../../server/compute/hosts";
import { appRouter } from "../../server/router";
import { createCallerFactory } from "../../server/trpc";
import { expectAppError } from "../harness/expect";
import { startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// Who may call the new compute procedures: the wrong owner gets NOT_FOUND,
// an API key without the scope INSUFFICIENT_SCOPE, an anonymous caller
// UNAUTHENTICATED. No workers: these are decided without Docker.

let app: TestServer;
const users: string[] = [];

beforeAll(async () => {
  app = await startTestServer();
  await syncHosts(app.services);
});
afterAll(async () => {
  await app.services.queues.queue("lifecycle").obliterate({ force: true });
  if (users.length) {
    await app.services.db.update(instanceActions).set({ status: "failed", error: "test cleanup", finishedAt: new Date() }).where(inArray(instanceActions.userId, users));
    await app.services.db.update(instances).set({ state: "deleted" }).where(inArray(instances.userId, users));
  }
  await app.close();
});

async function customer() {
  const session = await createUserWithSession(app.services);
  users.push(session.user.id);
  return { ...session, api: app.client({ token: session.token }) };
}

async function keyCaller(scopes: Scope[]) {
  const { user } = await customer();
  const actor = {
    kind: "apiKey" as const,
    apiKeyId: crypto.randomUUID(),
    scopes,
    user: { id: user.id, email: user.email, name: user.name, role: user.role, status: user.status, emailVerifiedAt: user.emailVerifiedAt },
  };
  return createCallerFactory(appRouter)({ ...app.services, actor, request: { requestId: crypto.randomUUID(), ip: null, userAgent: null }, resHeaders: new Headers() });
}

describe("volumes and resize belong to their owner", () => {
  test("another user gets NOT_FOUND for my volume and my instance's resize, and cannot attach my volume", async () => {
    const me = await customer();
    const other = await customer();
    const volume = await me.api.compute.volumes.create.mutate({ name: "mine", sizeMb: 32 });
    const { instance } = await me.api.compute.instances.create.mutate({ name: "mine", planId: "nano", imageId: "busybox" });
    await expectAppError(other.api.compute.volumes.get.query({ id: volume.id }), "NOT_FOUND");
    await expectAppError(other.api.compute.volumes.delete.mutate({ id: volume.id }), "NOT_FOUND");
    await expectAppError(other.api.compute.instances.resize.mutate({ id: instance.id, planId: "micro" }), "NOT_FOUND");
    await expectAppError(other.api.compute.instances.create.mutate({ name: "steal", planId: "nano", imageId: "busybox", volumes: [{ volumeId: volume.id, mountPath: "/data" }] }), "NOT_FOUND");
    expect((await other.api.compute.volumes.list.query()).items).toEqual([]);
    expect((await me.api.compute.volumes.get.query({ id: volume.id })).state).toBe("creating");
  });

  test("anonymous callers are UNAUTHENTICATED", async () => {
    const anonymous = app.client();
    await expectAppError(anonymous.compute.volumes.list.query(), "UNAUTHENTICATED");
    await expectAppError(anonymous.compute.volumes.create.mutate({ name: "x", sizeMb: 32 }), "UNAUTHENTICATED");
    await expectAppError(anonymous.compute.volumes.get.query({ id: crypto.randomUUID() }), "UNAUTHENTICATED");
    await expectAppError(anonymous.compute.volumes.delete.mutate({ id: crypto.randomUUID() }), "UNAUTHENTICATED");
    await expectAppError(anonymous.compute.instances.resize.mutate({ id: crypto.randomUUID(), planId: "micro" }), "UNAUTHENTICATED");
    await expectAppError(anonymous.compute.registries.list.query(), "UNAUTHENTICATED");
  });

  test("API keys need compute:read to read and compute:write to change", async () => {
    const reader = await keyCaller(["compute:read"]);
    expect((await reader.compute.volumes.list({})).items).toEqual([]);
    expect((await reader.compute.registries.list()).map((r) => r.pattern)).toContain("docker.io");
    await expect(reader.compute.volumes.create({ name: "k", sizeMb: 32 })).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });
    await expect(reader.compute.volumes.delete({ id: crypto.randomUUID() })).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });
    await expect(reader.compute.instances.resize({ id: crypto.randomUUID(), planId: "micro" })).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });

    const writer = await keyCaller(["compute:write"]);
    const made = await writer.compute.volumes.create({ name: "by-key", sizeMb: 32 });
    await expect(writer.compute.volumes.get({ id: made.id })).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });
    await expect(writer.compute.volumes.list({})).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });
    await expect(writer.compute.registries.list()).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });

    const other = await keyCaller(["billing:read"]);
    await expect(other.compute.volumes.list({})).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });
    await expect(other.compute.instances.logsFollow({ id: crypto.randomUUID() })).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });
    // Admin procedures refuse every API key.
    const admin = await keyCaller(["compute:read", "compute:write"]);
    await expect(admin.admin.registries.list()).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });
  });

  test("unknown fields are refused (strict inputs), and no volume is made", async () => {
    const me = await customer();
    await expectAppError(me.api.compute.volumes.create.mutate({ name: "x", sizeMb: 32, hostPath: "/etc" } as never), "VALIDATION_FAILED");
    await expectAppError(
      me.api.compute.instances.create.mutate({ name: "x", planId: "nano", imageId: "busybox", volumes: [{ name: "v", mountPath: "/data", bind: "/" }] } as never),
      "VALIDATION_FAILED",
    );
    await expectAppError(me.api.compute.instances.create.mutate({ name: "x", planId: "nano", imageId: "busybox", privileged: true } as never), "VALIDATION_FAILED");
    expect((await me.api.compute.volumes.list.query()).items).toEqual([]);
  });
});
