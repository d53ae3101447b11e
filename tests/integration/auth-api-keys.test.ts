import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq } from "drizzle-orm";
import { apiKeys, auditLog, users } from "../../db/schema";
import { MAX_ACTIVE_KEYS } from "../../server/auth/api-keys";
import { expectAppError } from "../harness/expect";
import { startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

let app: TestServer;
beforeAll(async () => {
  app = await startTestServer();
});
afterAll(() => app.close());

const keyRow = (id: string) => app.services.db.query.apiKeys.findFirst({ where: eq(apiKeys.id, id) });

describe("creating and listing keys", () => {
  test("the key is shown once, recognisable by its prefix; the database keeps an HMAC and its first characters", async () => {
    const { token, user } = await createUserWithSession(app.services);
    const me = app.client({ token, headers: { "user-agent": "keys-spec" } });
    const created = await me.auth.apiKeys.create.mutate({ name: "CI deploys", scopes: ["compute:write", "compute:read"] });
    expect(created.key).toMatch(/^sahary_[a-z2-7]{52}$/);
    expect(created).toMatchObject({ name: "CI deploys", scopes: ["compute:read", "compute:write"], start: created.key.slice(0, 13), lastUsedAt: null });

    const row = await keyRow(created.id);
    expect(row!.keyHash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(row)).not.toContain(created.key);

    const listed = await me.auth.apiKeys.list.query();
    expect(listed).toEqual([{ id: created.id, name: "CI deploys", start: created.start, scopes: ["compute:read", "compute:write"], createdAt: created.createdAt, lastUsedAt: null }]);
    expect(JSON.stringify(listed)).not.toContain(created.key);

    const [audit] = await app.services.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "auth.api_key.created"), eq(auditLog.targetId, created.id)));
    expect(audit).toMatchObject({ actorType: "user", actorId: user.id, userAgent: "keys-spec", metadata: { name: "CI deploys", scopes: ["compute:read", "compute:write"] } });
  });

  test("a key authenticates as its owner, limited to its scopes", async () => {
    const { token, user } = await createUserWithSession(app.services);
    const { key } = await app.client({ token }).auth.apiKeys.create.mutate({ name: "reader", scopes: ["account:read"] });
    const viaKey = app.client({ token: key });
    expect((await viaKey.auth.me.query()).id).toBe(user.id);
    expect(await viaKey.auth.apiKeys.list.query()).toHaveLength(1);
  });

  test("a compute:read-only key is refused where another scope is needed, naming it", async () => {
    const { token } = await createUserWithSession(app.services);
    const { key } = await app.client({ token }).auth.apiKeys.create.mutate({ name: "metrics", scopes: ["compute:read"] });
    const error = await expectAppError(app.client({ token: key }).auth.me.query(), "INSUFFICIENT_SCOPE");
    expect(error.data?.httpStatus).toBe(403);
    expect(error.shape?.data.details).toEqual({ requiredScope: "account:read" });
    await expectAppError(app.client({ token: key }).auth.apiKeys.list.query(), "INSUFFICIENT_SCOPE");
  });

  test("no key, whatever its scopes, can create keys, revoke keys, change the password, sign out or edit the profile", async () => {
    const { token } = await createUserWithSession(app.services);
    const all = await app.client({ token }).auth.apiKeys.create.mutate({
      name: "everything",
      scopes: ["account:read", "compute:read", "compute:write", "billing:read", "billing:write", "energy:read"],
    });
    const viaKey = app.client({ token: all.key });
    await expectAppError(viaKey.auth.apiKeys.create.mutate({ name: "child", scopes: ["account:read"] }), "INSUFFICIENT_SCOPE");
    await expectAppError(viaKey.auth.apiKeys.revoke.mutate({ id: all.id }), "INSUFFICIENT_SCOPE");
    await expectAppError(viaKey.auth.changePassword.mutate({ currentPassword: "correct horse battery staple", newPassword: "new-long-passphrase-1" }), "INSUFFICIENT_SCOPE");
    await expectAppError(viaKey.auth.logout.mutate(), "INSUFFICIENT_SCOPE");
    await expectAppError(viaKey.auth.logoutAll.mutate(), "INSUFFICIENT_SCOPE");
    await expectAppError(viaKey.auth.updateProfile.mutate({ name: "Key" }), "INSUFFICIENT_SCOPE");
    await expectAppError(viaKey.auth.resendVerification.mutate(), "INSUFFICIENT_SCOPE");
    expect(await app.client({ token }).auth.apiKeys.list.query()).toHaveLength(1);
  });

  test("an unverified account cannot create keys", async () => {
    const { token } = await createUserWithSession(app.services, { status: "unverified" });
    await expectAppError(app.client({ token }).auth.apiKeys.create.mutate({ name: "early", scopes: ["account:read"] }), "EMAIL_NOT_VERIFIED");
  });

  test("bad names and scopes get VALIDATION_FAILED", async () => {
    const { token } = await createUserWithSession(app.services);
    const me = app.client({ token });
    const bad: Array<Record<string, unknown>> = [
      { name: "x", scopes: [] },
      { name: "x", scopes: ["root"] },
      { name: "x", scopes: ["account:read", "account:read"] },
      { name: "", scopes: ["account:read"] },
      { name: "n".repeat(101), scopes: ["account:read"] },
      { name: "x", scopes: "account:read" },
    ];
    for (const input of bad) await expectAppError(me.auth.apiKeys.create.mutate(input as never), "VALIDATION_FAILED");
    await expectAppError(me.auth.apiKeys.revoke.mutate({ id: "not-a-uuid" }), "VALIDATION_FAILED");
  });

  test(`a user holds at most ${MAX_ACTIVE_KEYS} active keys`, async () => {
    const { token } = await createUserWithSession(app.services);
    const me = app.client({ token, batch: false });
    const made = await Promise.all(
      Array.from({ length: MAX_ACTIVE_KEYS + 3 }, (_, i) =>
        me.auth.apiKeys.create.mutate({ name: `k${i}`, scopes: ["account:read"] }).then(
          (key) => key,
          (error: Error) => error,
        ),
      ),
    );
    const refused = made.filter((m) => m instanceof Error);
    expect(refused).toHaveLength(3);
    for (const error of refused) expect((error as any).data.appCode).toBe("QUOTA_EXCEEDED");
    expect(await me.auth.apiKeys.list.query()).toHaveLength(MAX_ACTIVE_KEYS);
  });
});

describe("using and revoking keys", () => {
  test("last use is recorded, at most once a minute", async () => {
    const { token } = await createUserWithSession(app.services);
    const created = await app.client({ token }).auth.apiKeys.create.mutate({ name: "poller", scopes: ["account:read"] });
    await app.client({ token: created.key }).auth.me.query();
    const first = (await keyRow(created.id))!.lastUsedAt;
    expect(first).toBeInstanceOf(Date);
    await app.client({ token: created.key }).auth.me.query();
    expect((await keyRow(created.id))!.lastUsedAt).toEqual(first);

    await app.services.db
      .update(apiKeys)
      .set({ lastUsedAt: new Date(Date.now() - 120_000) })
      .where(eq(apiKeys.id, created.id));
    await app.services.changes.settle();
    await app.client({ token: created.key }).auth.me.query();
    expect((await keyRow(created.id))!.lastUsedAt!.getTime()).toBeGreaterThan(Date.now() - 10_000);
    expect((await app.client({ token }).auth.apiKeys.list.query())[0]!.lastUsedAt).not.toBeNull();
  });

  test("a revoked key stops working at once and leaves the list", async () => {
    const { token, user } = await createUserWithSession(app.services);
    const created = await app.client({ token }).auth.apiKeys.create.mutate({ name: "temp", scopes: ["account:read"] });
    expect((await app.client({ token: created.key }).auth.me.query()).id).toBe(user.id);

    const revoked = await app.client({ token }).auth.apiKeys.revoke.mutate({ id: created.id });
    expect(revoked.id).toBe(created.id);
    await expectAppError(app.client({ token: created.key }).auth.me.query(), "UNAUTHENTICATED");
    expect(await app.client({ token }).auth.apiKeys.list.query()).toEqual([]);
    await expectAppError(app.client({ token }).auth.apiKeys.revoke.mutate({ id: created.id }), "NOT_FOUND");
    const [audit] = await app.services.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "auth.api_key.revoked"), eq(auditLog.targetId, created.id)));
    expect(audit).toMatchObject({ actorId: user.id });
  });

  test("user A cannot list or revoke user B's keys", async () => {
    const a = await createUserWithSession(app.services);
    const b = await createUserWithSession(app.services);
    const bKey = await app.client({ token: b.token }).auth.apiKeys.create.mutate({ name: "b's key", scopes: ["account:read"] });

    expect(await app.client({ token: a.token }).auth.apiKeys.list.query()).toEqual([]);
    await expectAppError(app.client({ token: a.token }).auth.apiKeys.revoke.mutate({ id: bKey.id }), "NOT_FOUND");
    await expectAppError(app.client({ token: a.token }).auth.apiKeys.revoke.mutate({ id: crypto.randomUUID() }), "NOT_FOUND");
    expect((await keyRow(bKey.id))!.revokedAt).toBeNull();
    expect((await app.client({ token: bKey.key }).auth.me.query()).id).toBe(b.user.id);
  });

  test("a suspended owner's keys stop working", async () => {
    const { token, user } = await createUserWithSession(app.services);
    const { key } = await app.client({ token }).auth.apiKeys.create.mutate({ name: "bot", scopes: ["account:read"] });
    await app.services.db.update(users).set({ status: "suspended" }).where(eq(users.id, user.id));
    await app.services.changes.settle();
    await expectAppError(app.client({ token: key }).auth.me.query(), "ACCOUNT_SUSPENDED");
    await expectAppError(app.client({ token }).auth.me.query(), "ACCOUNT_SUSPENDED");
  });

  test("a forged or truncated key is simply anonymous", async () => {
    const { token } = await createUserWithSession(app.services);
    const { key } = await app.client({ token }).auth.apiKeys.create.mutate({ name: "real", scopes: ["account:read"] });
    const forged = key.slice(0, -1) + (key.endsWith("a") ? "b" : "a");
    await expectAppError(app.client({ token: forged }).auth.me.query(), "UNAUTHENTICATED");
    await expectAppError(app.client({ token: key.slice(0, 20) }).auth.me.query(), "UNAUTHENTICATED");
  });
});
