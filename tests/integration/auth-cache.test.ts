import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eq, sql } from "drizzle-orm";
import postgres from "postgres";
import { users } from "../../db/schema";
import { issueEmailToken } from "../../server/auth/email-tokens";
import { startMailingServer, STRONG_PASSWORD, uniqueIp, type MailingServer } from "../harness/accounts";
import { testRun } from "../harness/env";
import { expectAppError } from "../harness/expect";
import { startApiProcess, type ApiProcess } from "../harness/process";
import { eventually } from "../harness/server";
import { createUserWithSession } from "../harness/users";

/**
 * The credential cache (server/auth/cache.ts) across real API processes: a
 * change made through one process, or straight in the database, is refused
 * by every other process on its very next request, even though each had the
 * credential cached. `a` makes the changes, `b` is asked right after.
 */

let app: MailingServer;
let a: ApiProcess;
let b: ApiProcess;

beforeAll(async () => {
  app = await startMailingServer();
  [a, b] = await Promise.all([startApiProcess({ TRUST_PROXY: "true" }), startApiProcess({ TRUST_PROXY: "true" })]);
});
afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await app?.close();
});

const PASSWORD = "correct horse battery staple";
/** Callers from distinct addresses, so the per-IP limits of the password flows never interfere. */
const on = (api: ApiProcess, token?: string) => api.client({ ...(token ? { token } : {}), headers: { "x-forwarded-for": uniqueIp() } });

/** Resolves each credential in both processes, so each holds it in its cache. */
async function warm(...credentials: string[]) {
  for (const credential of credentials) {
    for (const api of [a, b]) expect((await on(api, credential).auth.me.query()).id).toBeString();
  }
}

async function customerWithKey() {
  const owner = await createUserWithSession(app.services);
  const { key } = await on(a, owner.token).auth.apiKeys.create.mutate({ name: "bot", scopes: ["account:read", "compute:read"] });
  return { ...owner, key };
}

describe("a change made through one API process applies to the next request in another", () => {
  test("logout", async () => {
    for (let round = 0; round < 5; round++) {
      const { token } = await createUserWithSession(app.services);
      await warm(token);
      await on(a, token).auth.logout.mutate();
      await expectAppError(on(b, token).auth.me.query(), "UNAUTHENTICATED");
    }
  });

  test("logout everywhere: every other session ends, the caller's stays", async () => {
    const { user, token } = await createUserWithSession(app.services);
    const others = await Promise.all([1, 2, 3].map(() => app.services.sessions.create(user.id, { ip: null, userAgent: null })));
    await warm(token, ...others.map((s) => s.token));
    expect(await on(a, token).auth.logoutAll.mutate()).toEqual({ sessionsEnded: 3 });
    for (const other of others) await expectAppError(on(b, other.token).auth.me.query(), "UNAUTHENTICATED");
    expect((await on(b, token).auth.me.query()).id).toBe(user.id);
  });

  test("password change ends the other sessions", async () => {
    const { user, token } = await createUserWithSession(app.services);
    const other = await app.services.sessions.create(user.id, { ip: null, userAgent: null });
    await warm(token, other.token);
    await on(a, token).auth.changePassword.mutate({ currentPassword: PASSWORD, newPassword: STRONG_PASSWORD });
    await expectAppError(on(b, other.token).auth.me.query(), "UNAUTHENTICATED");
    expect((await on(b, token).auth.me.query()).id).toBe(user.id);
  });

  test("password reset ends every session", async () => {
    const { user, token } = await createUserWithSession(app.services);
    const other = await app.services.sessions.create(user.id, { ip: null, userAgent: null });
    await warm(token, other.token);
    const reset = await issueEmailToken(app.services.db, app.services.config.secret, user.id, "reset_password", 600_000);
    await on(a).auth.resetPassword.mutate({ token: reset.token, password: STRONG_PASSWORD });
    await expectAppError(on(b, token).auth.me.query(), "UNAUTHENTICATED");
    await expectAppError(on(b, other.token).auth.me.query(), "UNAUTHENTICATED");
  });

  test("suspension refuses the sessions and the API keys; reactivation revives the keys", async () => {
    const admin = await createUserWithSession(app.services, { role: "admin" });
    const target = await customerWithKey();
    await warm(target.token, target.key);
    await on(a, admin.token).admin.users.setStatus.mutate({ id: target.user.id, status: "suspended", reason: "cache test" });
    await expectAppError(on(b, target.token).auth.me.query(), "UNAUTHENTICATED");
    await expectAppError(on(b, target.key).auth.me.query(), "ACCOUNT_SUSPENDED");
    await expectAppError(on(b, target.key).compute.instances.list.query({}), "ACCOUNT_SUSPENDED");

    await on(a, admin.token).admin.users.setStatus.mutate({ id: target.user.id, status: "active", reason: "cache test" });
    expect((await on(b, target.key).auth.me.query()).status).toBe("active");
  });

  test("a role change applies from the next request, both ways", async () => {
    const admin = await createUserWithSession(app.services, { role: "admin" });
    const { user, token } = await createUserWithSession(app.services);
    await warm(token);
    await expectAppError(on(b, token).admin.users.list.query({}), "FORBIDDEN");
    await on(a, admin.token).admin.users.setRole.mutate({ id: user.id, role: "operator" });
    expect((await on(b, token).admin.users.list.query({ query: user.email })).items.map((u) => u.id)).toEqual([user.id]);
    expect((await on(b, token).auth.me.query()).role).toBe("operator");
    await on(a, admin.token).admin.users.setRole.mutate({ id: user.id, role: "customer" });
    await expectAppError(on(b, token).admin.users.list.query({}), "FORBIDDEN");
  });

  test("a revoked API key is refused", async () => {
    const owner = await customerWithKey();
    await warm(owner.key);
    const [listed] = await on(a, owner.token).auth.apiKeys.list.query();
    await on(a, owner.token).auth.apiKeys.revoke.mutate({ id: listed!.id });
    await expectAppError(on(b, owner.key).auth.me.query(), "UNAUTHENTICATED");
  });
});

describe("changes made outside the API", () => {
  const listeners = async () =>
    (await app.services.db.execute(sql`select pid from pg_stat_activity where datname = current_database() and application_name = 'sahary-listen'`)) as unknown as { pid: number }[];

  test("a change written straight to the database (psql, a script) applies in every process once its message is handled", async () => {
    const owner = await customerWithKey();
    await warm(owner.token, owner.key);
    await app.services.db.update(users).set({ status: "suspended" }).where(eq(users.id, owner.user.id));
    // Nothing held the answer back this time: wait for every process to confirm, as a script can.
    await app.services.changes.settle();
    await expectAppError(on(b, owner.token).auth.me.query(), "ACCOUNT_SUSPENDED");
    await expectAppError(on(a, owner.key).auth.me.query(), "ACCOUNT_SUSPENDED");
    await app.services.db.update(users).set({ name: "Renamed Outside", status: "active" }).where(eq(users.id, owner.user.id));
    await app.services.changes.settle();
    expect((await on(b, owner.token).auth.me.query()).name).toBe("Renamed Outside");
  });

  test("a change committed while a process's invalidation channel is down is not served from its cache", async () => {
    const { user, token } = await createUserWithSession(app.services);
    await warm(token);
    const before = (await listeners()).map((row) => row.pid);
    expect(before.length).toBeGreaterThanOrEqual(2);
    // Cut every process's channel, then change the user while nobody listens: that message is lost.
    await app.services.db.execute(sql`select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and application_name = 'sahary-listen'`);
    await app.services.db.update(users).set({ status: "suspended" }).where(eq(users.id, user.id));
    await eventually(listeners, (rows) => rows.filter((row) => !before.includes(row.pid)).length >= before.length, { timeoutMs: 20_000, what: "the channels to reconnect" });
    await expectAppError(on(a, token).auth.me.query(), "ACCOUNT_SUSPENDED");
    await expectAppError(on(b, token).auth.me.query(), "ACCOUNT_SUSPENDED");
  });

  test("entries are used from memory, and a lost message is bounded by AUTH_CACHE_TTL_MS", async () => {
    const subscribed = (await listeners()).length;
    const c = await startApiProcess({ AUTH_CACHE_TTL_MS: "5000" });
    await eventually(listeners, (rows) => rows.length > subscribed, { timeoutMs: 20_000, what: "the new process to subscribe" });
    // A connection with triggers off (session_replication_role = replica): its change announces nothing.
    const silent = postgres(testRun.env.DATABASE_URL, { max: 1, onnotice: () => {} });
    try {
      const { user, token } = await createUserWithSession(app.services);
      expect((await c.client({ token }).auth.me.query()).status).toBe("active");
      await silent.begin(async (tx) => {
        await tx`set local session_replication_role = replica`;
        await tx`update users set status = 'suspended' where id = ${user.id}`;
      });
      // Still served from memory: no database read happened.
      expect((await c.client({ token }).auth.me.query()).status).toBe("active");
      const changedAt = Date.now();
      await eventually(
        () =>
          c
            .client({ token })
            .auth.me.query()
            .then(
              () => "served",
              (error) => error.data?.appCode,
            ),
        (outcome) => outcome === "ACCOUNT_SUSPENDED",
        { timeoutMs: 15_000, intervalMs: 200, what: "the entry to expire" },
      );
      expect(Date.now() - changedAt).toBeLessThan(5000 + 5000);
    } finally {
      await silent.end();
      await c.stop();
    }
  });
});
