import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq, inArray, notInArray, sql } from "drizzle-orm";
import { auditLog, users } from "../../db/schema";
import { mailProcessor } from "../../workers/mail";
import { registerVerifiedUser, STRONG_PASSWORD, uniqueIp, startMailingServer, type MailingServer } from "../harness/accounts";
import { expectAppError } from "../harness/expect";
import type { TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

let app: MailingServer;
let admin: Awaited<ReturnType<typeof createUserWithSession>>;
let api: ReturnType<TestServer["client"]>;

beforeAll(async () => {
  app = await startMailingServer({ workers: [mailProcessor] });
  admin = await createUserWithSession(app.services, { role: "admin" });
  api = app.client({ token: admin.token });
});
afterAll(async () => {
  await app.close();
});

const auditRows = (filter: { action?: string; targetId: string }) =>
  app.services.db
    .select()
    .from(auditLog)
    .where(and(eq(auditLog.targetId, filter.targetId), filter.action ? eq(auditLog.action, filter.action) : undefined));

/** Every page of a list, following the cursors; `between` runs after each page. */
async function allPages<T extends { id: string }>(fetchPage: (cursor?: string) => Promise<{ items: T[]; nextCursor: string | null }>, between?: () => Promise<void>) {
  const seen: T[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 100; pages++) {
    const result = await fetchPage(cursor);
    seen.push(...result.items);
    if (!result.nextCursor) return seen;
    cursor = result.nextCursor;
    await between?.();
  }
  throw new Error("more than 100 pages");
}

describe("listing and finding users", () => {
  test("pages newest first with a cursor that neither repeats nor skips a user while others sign up", async () => {
    const tag = `pager${crypto.randomUUID().slice(0, 8)}`;
    const originals = [];
    for (let i = 0; i < 7; i++) originals.push((await createUserWithSession(app.services, { name: `${tag} original ${i}` })).user);

    let added = 0;
    const listed = await allPages(
      (cursor) => api.admin.users.list.query({ query: tag, limit: 2, cursor }),
      async () => {
        added += 1;
        await createUserWithSession(app.services, { name: `${tag} late ${added}` });
      },
    );
    // Users who signed up meanwhile are newer than the cursor: they belong on a fresh first page, not in this walk.
    expect(listed.map((u) => u.id)).toEqual(originals.map((u) => u.id).reverse());
    const fresh = await api.admin.users.list.query({ query: tag, limit: 100 });
    expect(fresh.items).toHaveLength(7 + added);
    expect(fresh.items[0]!.name).toBe(`${tag} late ${added}`);
  });

  test("users created in the same millisecond (or the same microsecond) are neither skipped nor repeated", async () => {
    const tag = `tie${crypto.randomUUID().slice(0, 8)}`;
    // Three share a microsecond; two more are microseconds apart inside the same millisecond, which JavaScript dates cannot express.
    const times = ["123000", "123000", "123000", "123001", "123002"].map((us) => `2024-01-01T12:00:00.${us}Z`);
    const rows = await app.services.db
      .insert(users)
      .values(times.map((at, i) => ({ email: `${tag}-${i}@example.test`, name: tag, passwordHash: "not-a-real-hash", createdAt: sql`${at}::timestamptz` })))
      .returning({ id: users.id });
    const listed = await allPages((cursor) => api.admin.users.list.query({ query: tag, limit: 1, cursor }));
    expect(listed.map((u) => u.id).sort()).toEqual(rows.map((r) => r.id).sort());
  });

  test("filters by role and status, matches email or name case-insensitively, an id exactly, and treats LIKE symbols literally", async () => {
    const tag = `find${crypto.randomUUID().slice(0, 8)}`;
    const op = await createUserWithSession(app.services, { role: "operator", name: `${tag} Operator` });
    const suspended = await createUserWithSession(app.services, { status: "suspended", name: `${tag} Away` });
    const plain = await createUserWithSession(app.services, { email: `${tag}.plain@example.test`, name: "Someone" });

    const ids = async (input: Parameters<typeof api.admin.users.list.query>[0]) => (await api.admin.users.list.query(input)).items.map((u) => u.id);
    expect(await ids({ query: tag.toUpperCase() })).toEqual([plain.user.id, suspended.user.id, op.user.id]);
    expect(await ids({ query: tag, role: "operator" })).toEqual([op.user.id]);
    expect(await ids({ query: tag, status: "suspended" })).toEqual([suspended.user.id]);
    expect(await ids({ query: op.user.id })).toEqual([op.user.id]);
    expect(await ids({ query: `${tag}%` })).toEqual([]);
    expect(await ids({ query: `${tag.slice(0, 6)}_` })).toEqual([]);

    const listed = (await api.admin.users.list.query({ query: op.user.id })).items[0]!;
    expect(listed).toEqual({
      id: op.user.id,
      email: op.user.email,
      name: `${tag} Operator`,
      role: "operator",
      status: "active",
      emailVerifiedAt: op.user.emailVerifiedAt!.toISOString(),
      createdAt: op.user.createdAt.toISOString(),
      updatedAt: op.user.updatedAt.toISOString(),
    });
    expect(JSON.stringify(listed)).not.toContain("passwordHash");
  });

  test("get shows live sessions, active API keys and instances by state", async () => {
    const someone = await createUserWithSession(app.services);
    await app.client({ token: someone.token }).auth.apiKeys.create.mutate({ name: "bot", scopes: ["compute:read"] });
    const user = await api.admin.users.get.query({ id: someone.user.id });
    expect(user).toMatchObject({ id: someone.user.id, email: someone.user.email, sessions: 1, apiKeys: 1 });
    expect(Object.values(user.instances).every((n) => n === 0)).toBe(true);
    expect(Object.keys(user.instances)).toContain("running");
  });
});

describe("suspending and reactivating", () => {
  test("a suspended user's session, cookie and API key stop working at once; reactivation revives the key, not the sessions", async () => {
    const person = await registerVerifiedUser(app, app.mail);
    const key = (await app.client({ token: person.token }).auth.apiKeys.create.mutate({ name: "deploys", scopes: ["account:read"] })).key;
    const login = await fetch(`${app.url}/trpc/auth.login`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-forwarded-for": uniqueIp() },
      body: JSON.stringify({ email: person.email, password: STRONG_PASSWORD }),
    });
    const cookie = login.headers.getSetCookie()[0]!.split(";")[0]!;
    const bySession = app.client({ token: person.token });
    const byKey = app.client({ token: key });
    const byCookie = app.client({ headers: { cookie } });
    for (const client of [bySession, byKey, byCookie]) expect((await client.auth.me.query()).id).toBe(person.user.id);

    const suspended = await api.admin.users.setStatus.mutate({ id: person.user.id, status: "suspended", reason: "chargeback fraud report #42" });
    expect(suspended).toMatchObject({ changed: true, sessionsEnded: 2, user: { id: person.user.id, status: "suspended" } });
    expect(suspended.instances).toMatchObject({ unsettled: 0, followUp: "not_needed" });

    await expectAppError(bySession.auth.me.query(), "UNAUTHENTICATED");
    await expectAppError(byCookie.auth.me.query(), "UNAUTHENTICATED");
    await expectAppError(byKey.auth.me.query(), "ACCOUNT_SUSPENDED");
    await expectAppError(byKey.compute.instances.list.query({}), "ACCOUNT_SUSPENDED");
    await expectAppError(app.client({ headers: { "x-forwarded-for": uniqueIp() } }).auth.login.mutate({ email: person.email, password: STRONG_PASSWORD }), "ACCOUNT_SUSPENDED");

    const [audit] = await auditRows({ action: "admin.user.suspended", targetId: person.user.id });
    expect(audit).toMatchObject({
      actorType: "user",
      actorId: admin.user.id,
      targetType: "user",
      reason: "chargeback fraud report #42",
      metadata: { from: "active", to: "suspended", sessionsEnded: 2 },
    });

    // Suspending again changes nothing and records nothing.
    expect(await api.admin.users.setStatus.mutate({ id: person.user.id, status: "suspended", reason: "again" })).toMatchObject({ changed: false, sessionsEnded: 0 });
    expect(await auditRows({ action: "admin.user.suspended", targetId: person.user.id })).toHaveLength(1);

    const active = await api.admin.users.setStatus.mutate({ id: person.user.id, status: "active", reason: "resolved with the bank" });
    expect(active).toMatchObject({ changed: true, user: { status: "active" }, instances: null });
    expect((await byKey.auth.me.query()).status).toBe("active");
    await expectAppError(bySession.auth.me.query(), "UNAUTHENTICATED");
    const again = await app.client({ headers: { "x-forwarded-for": uniqueIp() } }).auth.login.mutate({ email: person.email, password: STRONG_PASSWORD });
    expect((await app.client({ token: again.token }).auth.me.query()).id).toBe(person.user.id);
    const [reactivated] = await auditRows({ action: "admin.user.activated", targetId: person.user.id });
    expect(reactivated).toMatchObject({ actorId: admin.user.id, reason: "resolved with the bank", metadata: { from: "suspended", to: "active" } });
  });

  test("activating an account whose email was never verified lets it in; the address stays unverified", async () => {
    const pending = await createUserWithSession(app.services, { status: "unverified" });
    const theirs = app.client({ token: pending.token });
    await expectAppError(theirs.compute.instances.list.query({}), "EMAIL_NOT_VERIFIED");
    const activated = await api.admin.users.setStatus.mutate({ id: pending.user.id, status: "active", reason: "verified by phone" });
    expect(activated).toMatchObject({ changed: true, sessionsEnded: 0, user: { status: "active", emailVerifiedAt: null }, instances: null });
    expect((await theirs.compute.instances.list.query({})).items).toEqual([]);
    const [audit] = await auditRows({ action: "admin.user.activated", targetId: pending.user.id });
    expect(audit).toMatchObject({ actorId: admin.user.id, reason: "verified by phone", metadata: { from: "unverified", to: "active", sessionsEnded: 0 } });
  });

  test("an unknown user is NOT_FOUND and changes nothing", async () => {
    await expectAppError(api.admin.users.setStatus.mutate({ id: crypto.randomUUID(), status: "suspended", reason: "typo" }), "NOT_FOUND");
    await expectAppError(api.admin.users.setRole.mutate({ id: crypto.randomUUID(), role: "admin" }), "NOT_FOUND");
  });
});

describe("changing roles", () => {
  test("takes effect on the user's next request, with an audit row naming the admin, the target, the change and the reason", async () => {
    const someone = await createUserWithSession(app.services);
    const theirs = app.client({ token: someone.token });
    await expectAppError(theirs.admin.users.list.query({}), "FORBIDDEN");

    expect(await api.admin.users.setRole.mutate({ id: someone.user.id, role: "operator", reason: "joins the support rota" })).toMatchObject({ changed: true, user: { role: "operator" } });
    expect((await theirs.admin.users.list.query({ limit: 1 })).items).toHaveLength(1);
    await expectAppError(theirs.admin.users.setRole.mutate({ id: someone.user.id, role: "admin" }), "FORBIDDEN");

    await api.admin.users.setRole.mutate({ id: someone.user.id, role: "customer" });
    await expectAppError(theirs.admin.users.list.query({}), "FORBIDDEN");

    const rows = await auditRows({ action: "admin.user.role_changed", targetId: someone.user.id });
    expect(rows.map((r) => ({ actorId: r.actorId, reason: r.reason, metadata: r.metadata })).sort((a, b) => String(a.reason).localeCompare(String(b.reason)))).toEqual([
      { actorId: admin.user.id, reason: "joins the support rota", metadata: { from: "customer", to: "operator" } },
      { actorId: admin.user.id, reason: null, metadata: { from: "operator", to: "customer" } },
    ]);
  });
});

describe("there is always an active admin", () => {
  /**
   * The database is shared with the other test files, whose admins would
   * count: for these tests the platform's other active admins are set aside
   * (demoted in the database) and put back afterwards.
   */
  async function withOnlyAdmins<T>(keep: string[], run: () => Promise<T>): Promise<T> {
    const setAside = await app.services.db
      .update(users)
      .set({ role: "customer" })
      .where(and(eq(users.role, "admin"), eq(users.status, "active"), notInArray(users.id, keep)))
      .returning({ id: users.id });
    try {
      return await run();
    } finally {
      if (setAside.length) {
        await app.services.db
          .update(users)
          .set({ role: "admin" })
          .where(
            inArray(
              users.id,
              setAside.map((u) => u.id),
            ),
          );
      }
    }
  }
  const activeAdmins = async () =>
    (
      await app.services.db
        .select({ id: users.id })
        .from(users)
        .where(and(eq(users.role, "admin"), eq(users.status, "active")))
    )
      .map((r) => r.id)
      .sort();

  test("the last admin cannot demote or suspend themself; with a second admin they can step down", async () => {
    const solo = await createUserWithSession(app.services, { role: "admin" });
    const soloApi = app.client({ token: solo.token });
    await withOnlyAdmins([solo.user.id], async () => {
      expect(await activeAdmins()).toEqual([solo.user.id]);
      await expectAppError(soloApi.admin.users.setRole.mutate({ id: solo.user.id, role: "operator", reason: "stepping down" }), "LAST_ADMIN");
      await expectAppError(soloApi.admin.users.setStatus.mutate({ id: solo.user.id, status: "suspended", reason: "holiday" }), "LAST_ADMIN");
      expect(await activeAdmins()).toEqual([solo.user.id]);
      expect(await auditRows({ targetId: solo.user.id })).toEqual([]);

      const deputy = await createUserWithSession(app.services);
      await soloApi.admin.users.setRole.mutate({ id: deputy.user.id, role: "admin", reason: "second admin" });
      expect(await soloApi.admin.users.setRole.mutate({ id: solo.user.id, role: "operator", reason: "stepping down" })).toMatchObject({ changed: true });
      await expectAppError(app.client({ token: deputy.token }).admin.users.setRole.mutate({ id: deputy.user.id, role: "customer" }), "LAST_ADMIN");
      await expectAppError(app.client({ token: deputy.token }).admin.users.setStatus.mutate({ id: deputy.user.id, status: "suspended", reason: "oops" }), "LAST_ADMIN");
      expect(await activeAdmins()).toEqual([deputy.user.id]);
    });
  });

  test("two admins removing each other at the same moment leave exactly one", async () => {
    for (let round = 0; round < 6; round++) {
      const a = await createUserWithSession(app.services, { role: "admin" });
      const b = await createUserWithSession(app.services, { role: "admin" });
      await withOnlyAdmins([a.user.id, b.user.id], async () => {
        expect(await activeAdmins()).toEqual([a.user.id, b.user.id].sort());
        const [byA, byB] = await Promise.allSettled(
          round % 2 === 0
            ? [
                app.client({ token: a.token }).admin.users.setRole.mutate({ id: b.user.id, role: "customer", reason: "race" }),
                app.client({ token: b.token }).admin.users.setRole.mutate({ id: a.user.id, role: "customer", reason: "race" }),
              ]
            : [
                app.client({ token: a.token }).admin.users.setStatus.mutate({ id: b.user.id, status: "suspended", reason: "race" }),
                app.client({ token: b.token }).admin.users.setStatus.mutate({ id: a.user.id, status: "suspended", reason: "race" }),
              ],
        );
        const outcomes = [byA, byB].map((r) => (r.status === "fulfilled" ? "ok" : (r.reason as { data?: { appCode?: string } }).data?.appCode));
        expect(outcomes.filter((o) => o === "ok")).toHaveLength(1);
        // The loser was either demoted before its own change ran (FORBIDDEN) or would have removed the last admin.
        expect(["FORBIDDEN", "LAST_ADMIN"]).toContain(outcomes.find((o) => o !== "ok")!);
        const remaining = await activeAdmins();
        expect(remaining).toHaveLength(1);
        expect([a.user.id, b.user.id]).toContain(remaining[0]!);
      });
    }
  });
});

describe("the audit log", () => {
  test("filters by actor, action (exact or prefix), target and time, and pages stably while entries are added", async () => {
    const subject = await createUserWithSession(app.services);
    const started = new Date();
    for (let i = 0; i < 5; i++) await api.admin.users.setRole.mutate({ id: subject.user.id, role: i % 2 === 0 ? "operator" : "customer", reason: `change ${i}` });

    let extra = 0;
    const walked = await allPages(
      (cursor) => api.admin.audit.list.query({ targetId: subject.user.id, limit: 2, cursor }),
      async () => {
        extra += 1;
        await api.admin.users.setRole.mutate({ id: subject.user.id, role: extra % 2 === 1 ? "customer" : "operator", reason: `late ${extra}` });
      },
    );
    expect(walked.map((e) => e.reason)).toEqual(["change 4", "change 3", "change 2", "change 1", "change 0"]);
    expect(walked[0]).toMatchObject({ actorType: "user", actorId: admin.user.id, actorEmail: admin.user.email, action: "admin.user.role_changed", targetType: "user", targetId: subject.user.id });

    const byAction = await api.admin.audit.list.query({ action: "admin.user.role_changed", targetId: subject.user.id, limit: 100 });
    expect(byAction.items).toHaveLength(5 + extra);
    const byPrefix = await api.admin.audit.list.query({ action: "admin.*", actorId: admin.user.id, from: started.toISOString(), limit: 100 });
    expect(byPrefix.items.length).toBeGreaterThanOrEqual(5 + extra);
    expect(byPrefix.items.every((e) => e.action.startsWith("admin.") && e.actorId === admin.user.id)).toBe(true);
    expect((await api.admin.audit.list.query({ action: "admin.user.*", targetId: subject.user.id, limit: 100 })).items).toHaveLength(5 + extra);
    expect((await api.admin.audit.list.query({ targetId: subject.user.id, to: started.toISOString() })).items).toEqual([]);
    expect((await api.admin.audit.list.query({ actorId: subject.user.id, from: started.toISOString() })).items).toEqual([]);
  });
});
