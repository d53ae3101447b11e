import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq } from "drizzle-orm";
import { auditLog, sessions, users } from "../../db/schema";
import { createSessionManager } from "../../server/auth/session";
import { registerVerifiedUser, STRONG_PASSWORD, uniqueEmail, uniqueIp, startMailingServer, type MailingServer } from "../harness/accounts";
import { expectAppError } from "../harness/expect";
import { createUserWithSession } from "../harness/users";

let app: MailingServer;
beforeAll(async () => {
  app = await startMailingServer();
});
afterAll(async () => {
  await app.close();
});

const from = (ip = uniqueIp(), extra: Record<string, string> = {}) => app.client({ headers: { "x-forwarded-for": ip, ...extra } });
const sessionRows = (userId: string) => app.services.db.select().from(sessions).where(eq(sessions.userId, userId));
const audits = (action: string, targetId: string) =>
  app.services.db
    .select()
    .from(auditLog)
    .where(and(eq(auditLog.action, action), eq(auditLog.targetId, targetId)));

function postJson(path: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${app.url}/trpc/${path}`, { method: "POST", headers: { "content-type": "application/json", "x-forwarded-for": uniqueIp(), ...headers }, body: JSON.stringify(body) });
}

describe("login", () => {
  test("returns a bearer token and sets an HttpOnly SameSite cookie; both authenticate", async () => {
    const { email, password, user } = await registerVerifiedUser(app, app.mail);
    const res = await postJson("auth.login", { email, password });
    expect(res.status).toBe(200);
    const body = (await res.json()) as any;
    const { token, expiresAt, user: shown } = body.result.data;
    expect(token).toMatch(/^[a-z2-7]{52}$/);
    expect(Date.parse(expiresAt)).toBeGreaterThan(Date.now() + 6 * 86_400_000);
    expect(shown).toMatchObject({ id: user.id, email, status: "active" });

    const [cookie] = res.headers.getSetCookie();
    expect(cookie).toStartWith(`sahary_session=${token};`);
    expect(cookie).toContain("HttpOnly");
    expect(cookie).toContain("SameSite=Lax");
    expect(cookie).toContain("Path=/");

    expect((await app.client({ token }).auth.me.query()).id).toBe(user.id);
    expect((await app.client({ headers: { cookie: cookie!.split(";")[0]! } }).auth.me.query()).id).toBe(user.id);
  });

  test("is audited with actor, IP and user agent; the session row records them too", async () => {
    const { email, password, user } = await registerVerifiedUser(app, app.mail);
    await from("10.20.30.40", { "user-agent": "login-spec/2" }).auth.login.mutate({ email, password });
    const rows = await audits("auth.login.succeeded", user.id);
    expect(rows.at(-1)).toMatchObject({ actorType: "user", actorId: user.id, ip: "10.20.30.40", userAgent: "login-spec/2" });
    expect((await sessionRows(user.id)).some((s) => s.ip === "10.20.30.40" && s.userAgent === "login-spec/2")).toBe(true);
  });

  test("an unknown email and a wrong password get the same INVALID_CREDENTIALS, both audited", async () => {
    const { email, user } = await registerVerifiedUser(app, app.mail);
    const wrong = await expectAppError(from().auth.login.mutate({ email, password: "not-the-password-1" }), "INVALID_CREDENTIALS");
    const unknown = await expectAppError(from().auth.login.mutate({ email: uniqueEmail("ghost"), password: "not-the-password-1" }), "INVALID_CREDENTIALS");
    expect(unknown.message).toBe(wrong.message);
    expect(unknown.data?.httpStatus).toBe(401);
    expect(await audits("auth.login.failed", user.id)).toHaveLength(1);
  });

  test("an unverified account can sign in (verified-only procedures refuse it later)", async () => {
    const email = uniqueEmail();
    await from().auth.register.mutate({ email, password: STRONG_PASSWORD, name: "New" });
    const { user } = await from().auth.login.mutate({ email: email.toUpperCase(), password: STRONG_PASSWORD });
    expect(user.status).toBe("unverified");
  });

  test("a suspended account cannot sign in, and its existing sessions stop working", async () => {
    const { email, password, token, user } = await registerVerifiedUser(app, app.mail);
    await app.services.db.update(users).set({ status: "suspended" }).where(eq(users.id, user.id));
    await app.services.changes.settle();
    await expectAppError(from().auth.login.mutate({ email, password }), "ACCOUNT_SUSPENDED");
    await expectAppError(app.client({ token }).auth.me.query(), "ACCOUNT_SUSPENDED");
    // Only someone who knows the password learns that the account is suspended.
    await expectAppError(from().auth.login.mutate({ email, password: "wrong-password-123" }), "INVALID_CREDENTIALS");
    expect((await audits("auth.login.refused", user.id)).map((a) => a.reason)).toContain("suspended");
  });

  test("passwords hashed with other parameters are re-hashed with the configured ones on login", async () => {
    const { user } = await createUserWithSession(app.services);
    expect(user.passwordHash).toContain("m=4096,t=1");
    await from().auth.login.mutate({ email: user.email, password: "correct horse battery staple" });
    const [row] = await app.services.db.select().from(users).where(eq(users.id, user.id));
    const { memoryKib, timeCost } = app.services.config.auth.passwordHash;
    expect(row!.passwordHash).toContain(`m=${memoryKib},t=${timeCost}`);
  });
});

describe("logout", () => {
  test("a stolen session token stops working after its owner logs out", async () => {
    const { email, password } = await registerVerifiedUser(app, app.mail);
    const { token } = await from().auth.login.mutate({ email, password });
    const thief = app.client({ token });
    expect((await thief.auth.me.query()).email).toBe(email);

    await app.client({ token }).auth.logout.mutate();
    await expectAppError(thief.auth.me.query(), "UNAUTHENTICATED");
  });

  test("blanks the cookie and ends the session server-side", async () => {
    const { email, password, user } = await registerVerifiedUser(app, app.mail);
    const login = await postJson("auth.login", { email, password });
    const cookie = login.headers.getSetCookie()[0]!.split(";")[0]!;
    const before = (await sessionRows(user.id)).length;

    // A browser sends Origin with every POST; a cookie mutation without it is refused (tests/integration/http-hardening.test.ts).
    const res = await postJson("auth.logout", null, { cookie, origin: new URL(app.services.config.publicUrl).origin });
    expect(res.status).toBe(200);
    const cleared = res.headers.getSetCookie();
    expect(cleared.at(-1)).toMatch(/^sahary_session=;.*Max-Age=0/);
    expect(await sessionRows(user.id)).toHaveLength(before - 1);
    await expectAppError(app.client({ headers: { cookie } }).auth.me.query(), "UNAUTHENTICATED");
    expect(await audits("auth.logout", user.id)).toHaveLength(1);
  });

  test("logoutAll ends every other session of the caller, and nobody else's", async () => {
    const a = await registerVerifiedUser(app, app.mail);
    const b = await registerVerifiedUser(app, app.mail);
    const second = (await from().auth.login.mutate({ email: a.email, password: a.password })).token;
    const third = (await from().auth.login.mutate({ email: a.email, password: a.password })).token;

    expect(await app.client({ token: a.token }).auth.logoutAll.mutate()).toEqual({ sessionsEnded: 2 });
    expect((await app.client({ token: a.token }).auth.me.query()).id).toBe(a.user.id);
    await expectAppError(app.client({ token: second }).auth.me.query(), "UNAUTHENTICATED");
    await expectAppError(app.client({ token: third }).auth.me.query(), "UNAUTHENTICATED");
    expect((await app.client({ token: b.token }).auth.me.query()).id).toBe(b.user.id);
    expect((await audits("auth.logout_all", a.user.id))[0]!.metadata).toEqual({ sessionsEnded: 2 });
  });
});

describe("the session cookie", () => {
  test("two Set-Cookie headers in one response both arrive, in order (dead cookie cleared, new one set)", async () => {
    const { email, password } = await registerVerifiedUser(app, app.mail);
    const dead = `sahary_session=${"a".repeat(52)}`;
    const res = await postJson("auth.login", { email, password }, { cookie: dead });
    const cookies = res.headers.getSetCookie();
    expect(cookies).toHaveLength(2);
    expect(cookies[0]).toMatch(/^sahary_session=;.*Max-Age=0/);
    expect(cookies[1]).toMatch(/^sahary_session=[a-z2-7]{52};/);
  });

  test("a cookie sent from a foreign origin is ignored (CSRF); the platform's own origins are honoured", async () => {
    const { user, token } = await createUserWithSession(app.services);
    const cookie = `sahary_session=${token}`;
    await expectAppError(from(uniqueIp(), { cookie, origin: "https://evil.test" }).auth.logoutAll.mutate(), "UNAUTHENTICATED");
    await expectAppError(from(uniqueIp(), { cookie, "sec-fetch-site": "cross-site" }).auth.me.query(), "UNAUTHENTICATED");
    const own = new URL(app.services.config.publicUrl).origin;
    expect((await from(uniqueIp(), { cookie, origin: own }).auth.me.query()).id).toBe(user.id);
    expect((await from(uniqueIp(), { cookie, "sec-fetch-site": "same-origin" }).auth.me.query()).id).toBe(user.id);
  });

  test("a form-encoded or text/plain POST (what a cross-site form can send) is refused", async () => {
    const { email, password } = await registerVerifiedUser(app, app.mail);
    const text = await fetch(`${app.url}/trpc/auth.login`, { method: "POST", headers: { "content-type": "text/plain" }, body: JSON.stringify({ email, password }) });
    expect(text.status).toBe(415);
    expect(((await text.json()) as any).error.data.appCode).toBe("UNSUPPORTED_MEDIA_TYPE");
    const form = new FormData();
    form.set("email", email);
    form.set("password", password);
    const multipart = await fetch(`${app.url}/trpc/auth.login`, { method: "POST", body: form });
    expect(multipart.status).toBe(400);
    expect(multipart.headers.getSetCookie()).toHaveLength(0);
  });

  test("a cross-site multipart form aimed at a procedure without input is refused: the cookie is not honoured", async () => {
    const { user, token } = await createUserWithSession(app.services);
    await from().auth.login.mutate({ email: user.email, password: "correct horse battery staple" });
    const form = new FormData();
    form.set("x", "1");
    const res = await fetch(`${app.url}/trpc/auth.logoutAll`, { method: "POST", body: form, headers: { cookie: `sahary_session=${token}`, origin: "https://evil.test" } });
    expect(res.status).toBe(401);
    expect(await sessionRows(user.id)).toHaveLength(2);
  });

  test("production cookies use the __Host- prefix, Secure, Path=/ and no Domain", async () => {
    const { user } = await createUserWithSession(app.services);
    const production = createSessionManager(app.services.db, { production: true });
    const { cookie } = await production.create(user.id, { ip: null, userAgent: null });
    expect(cookie).toStartWith("__Host-sahary_session=");
    expect(cookie).toContain("Secure");
    expect(cookie).toContain("Path=/");
    expect(cookie).not.toContain("Domain");
  });
});

describe("session storage", () => {
  test("a session id is the SHA-256 of the token, never a user attribute (Lucia L-2)", async () => {
    const { email, password, user } = await registerVerifiedUser(app, app.mail);
    const { token } = await from().auth.login.mutate({ email, password });
    const expected = new Bun.CryptoHasher("sha256").update(token).digest("hex");
    const rows = await sessionRows(user.id);
    expect(rows.map((r) => r.id)).toContain(expected);
    expect(rows.map((r) => r.id)).not.toContain(user.id);
    for (const row of rows) expect(row.absoluteExpiresAt.getTime()).toBeGreaterThan(row.expiresAt.getTime());
  });

  test("a bearer session slides: the expiry moves forward when half of it has passed", async () => {
    const { email, password, user } = await registerVerifiedUser(app, app.mail);
    const { token } = await from().auth.login.mutate({ email, password });
    const id = new Bun.CryptoHasher("sha256").update(token).digest("hex");
    const soon = new Date(Date.now() + 86_400_000);
    await app.services.db.update(sessions).set({ expiresAt: soon }).where(eq(sessions.id, id));
    await app.services.changes.settle();
    await app.client({ token }).auth.me.query();
    const [row] = await app.services.db.select().from(sessions).where(eq(sessions.id, id));
    expect(row!.expiresAt.getTime()).toBeGreaterThan(Date.now() + 6 * 86_400_000);
    expect(row!.userId).toBe(user.id);
  });

  test("a sliding cookie session is re-sent to the browser", async () => {
    const { email, password } = await registerVerifiedUser(app, app.mail);
    const { token } = await from().auth.login.mutate({ email, password });
    const id = new Bun.CryptoHasher("sha256").update(token).digest("hex");
    await app.services.db
      .update(sessions)
      .set({ expiresAt: new Date(Date.now() + 3_600_000) })
      .where(eq(sessions.id, id));
    await app.services.changes.settle();
    const res = await fetch(`${app.url}/trpc/auth.me`, { headers: { cookie: `sahary_session=${token}` } });
    expect(res.status).toBe(200);
    expect(res.headers.getSetCookie()[0]).toStartWith(`sahary_session=${token};`);
  });
});
