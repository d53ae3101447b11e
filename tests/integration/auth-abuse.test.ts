import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq } from "drizzle-orm";
import { auditLog } from "../../db/schema";
import { accountKey } from "../../server/auth/rate-limit";
import { linkToken, mailsTo, mailSubject, settleMail, STRONG_PASSWORD, uniqueEmail, uniqueIp } from "../harness/accounts";
import { expectAppError } from "../harness/expect";
import { startTestServer, type TestServer } from "../harness/server";
import { startSmtpServer } from "../harness/smtp";
import { createUserWithSession } from "../harness/users";

const HARNESS_PASSWORD = "correct horse battery staple";

let smtp: Awaited<ReturnType<typeof startSmtpServer>>;
/** Default limits: the account lockout after 10 failures. */
let app: TestServer;
/** Small per-IP and per-account limits, to reach them quickly. */
let strict: TestServer;
beforeAll(async () => {
  smtp = await startSmtpServer();
  app = await startTestServer({ env: { SMTP_URL: smtp.url, TRUST_PROXY: "true" }, workers: true });
  strict = await startTestServer({
    env: { SMTP_URL: smtp.url, TRUST_PROXY: "true", RATE_LIMIT_LOGIN_PER_IP: "5", RATE_LIMIT_REGISTER_PER_IP: "3", RATE_LIMIT_RESET_PER_IP: "3", RATE_LIMIT_MAIL_PER_ACCOUNT: "2" },
    workers: true,
  });
});
afterAll(async () => {
  await settleMail(app);
  await strict.close();
  await app.close();
  await smtp.close();
});

const from = (server: TestServer, ip = uniqueIp()) => server.client({ headers: { "x-forwarded-for": ip, "user-agent": "abuse-spec" } });

describe("account lockout", () => {
  test("the 11th rapid wrong password is refused with ACCOUNT_LOCKED (429), even from fresh IPs, and the right one too", async () => {
    const { user } = await createUserWithSession(app.services);
    for (let i = 1; i <= 10; i++) {
      await expectAppError(from(app).auth.login.mutate({ email: user.email, password: `wrong-password-${i}` }), "INVALID_CREDENTIALS");
    }
    const locked = await expectAppError(from(app, "10.66.0.11").auth.login.mutate({ email: user.email, password: "wrong-password-11" }), "ACCOUNT_LOCKED");
    expect(locked.data?.httpStatus).toBe(429);
    const retryAfter = locked.shape?.data.details.retryAfterSeconds;
    expect(retryAfter).toBeGreaterThan(800);
    expect(retryAfter).toBeLessThanOrEqual(15 * 60);
    await expectAppError(from(app).auth.login.mutate({ email: user.email, password: HARNESS_PASSWORD }), "ACCOUNT_LOCKED");

    const events = await app.services.db.select().from(auditLog).where(eq(auditLog.targetId, user.id));
    expect(events.filter((e) => e.action === "auth.login.failed")).toHaveLength(10);
    expect(events.filter((e) => e.action === "auth.account.locked")).toHaveLength(1);
    expect(events.find((e) => e.action === "auth.account.locked")).toMatchObject({ userAgent: "abuse-spec" });
    expect(events.filter((e) => e.action === "auth.login.refused" && e.reason === "locked").map((e) => e.ip)).toContain("10.66.0.11");
  });

  test("parallel guesses cannot exceed the allowance: at most 10 are checked", async () => {
    const { user } = await createUserWithSession(app.services);
    const outcomes = await Promise.all(
      Array.from({ length: 25 }, (_, i) =>
        from(app)
          .auth.login.mutate({ email: user.email, password: `guess-${i}-password` })
          .then(
            () => "signed in",
            (error: any) => error.data.appCode as string,
          ),
      ),
    );
    expect(outcomes.filter((o) => o === "INVALID_CREDENTIALS").length).toBeLessThanOrEqual(10);
    expect(outcomes.filter((o) => o === "ACCOUNT_LOCKED").length).toBeGreaterThanOrEqual(15);
    expect(outcomes).not.toContain("signed in");
  });

  test("an address without an account locks the same way (locking reveals nothing)", async () => {
    const ghost = uniqueEmail("ghost");
    for (let i = 0; i < 10; i++) await expectAppError(from(app).auth.login.mutate({ email: ghost, password: "whatever-password" }), "INVALID_CREDENTIALS");
    await expectAppError(from(app).auth.login.mutate({ email: ghost, password: "whatever-password" }), "ACCOUNT_LOCKED");
  });

  test("a successful login resets the count of failures", async () => {
    const { user } = await createUserWithSession(app.services);
    for (let i = 0; i < 9; i++) await expectAppError(from(app).auth.login.mutate({ email: user.email, password: "nope-nope-nope" }), "INVALID_CREDENTIALS");
    await from(app).auth.login.mutate({ email: user.email, password: HARNESS_PASSWORD });
    for (let i = 0; i < 9; i++) await expectAppError(from(app).auth.login.mutate({ email: user.email, password: "nope-nope-nope" }), "INVALID_CREDENTIALS");
    await from(app).auth.login.mutate({ email: user.email, password: HARNESS_PASSWORD });
  });

  test("the lock ends when its time is up", async () => {
    const { user } = await createUserWithSession(app.services);
    for (let i = 0; i < 10; i++) await expectAppError(from(app).auth.login.mutate({ email: user.email, password: "nope-nope-nope" }), "INVALID_CREDENTIALS");
    await expectAppError(from(app).auth.login.mutate({ email: user.email, password: HARNESS_PASSWORD }), "ACCOUNT_LOCKED");
    const lockKey = app.services.limits.passwordAttempts.getKey(accountKey(app.services, user.email));
    expect(await app.services.redis.pttl(lockKey)).toBeGreaterThan(0);
    await app.services.redis.pexpire(lockKey, 1);
    await Bun.sleep(5);
    await from(app).auth.login.mutate({ email: user.email, password: HARNESS_PASSWORD });
  });

  test("wrong current passwords in changePassword count towards the lock", async () => {
    const { user, token } = await createUserWithSession(app.services);
    const me = app.client({ token });
    for (let i = 0; i < 10; i++) {
      await expectAppError(me.auth.changePassword.mutate({ currentPassword: `guess-${i}-xyz`, newPassword: "fresh-long-passphrase-5" }), "INVALID_CREDENTIALS");
    }
    await expectAppError(me.auth.changePassword.mutate({ currentPassword: HARNESS_PASSWORD, newPassword: "fresh-long-passphrase-5" }), "ACCOUNT_LOCKED");
    await expectAppError(from(app).auth.login.mutate({ email: user.email, password: HARNESS_PASSWORD }), "ACCOUNT_LOCKED");
  });

  test("a password reset lifts the lock", async () => {
    const email = uniqueEmail();
    await from(app).auth.register.mutate({ email, password: STRONG_PASSWORD, name: "Locked Out" });
    for (let i = 0; i < 10; i++) await expectAppError(from(app).auth.login.mutate({ email, password: "nope-nope-nope" }), "INVALID_CREDENTIALS");
    await expectAppError(from(app).auth.login.mutate({ email, password: STRONG_PASSWORD }), "ACCOUNT_LOCKED");

    await from(app).auth.requestPasswordReset.mutate({ email });
    const reset = (await mailsTo(smtp.received, email, 2)).find((m) => mailSubject(m) === "Reset your Sahary Cloud password")!;
    await from(app).auth.resetPassword.mutate({ token: linkToken(reset, "reset-password"), password: "after-the-storm-88" });
    await from(app).auth.login.mutate({ email, password: "after-the-storm-88" });
  });
});

describe("rate limits by IP and by account", () => {
  test("login: beyond the per-IP allowance RATE_LIMITED (429) with a retry hint; other IPs are unaffected", async () => {
    const ip = uniqueIp();
    for (let i = 0; i < 5; i++) await expectAppError(from(strict, ip).auth.login.mutate({ email: uniqueEmail(), password: "whatever-password" }), "INVALID_CREDENTIALS");
    const limited = await expectAppError(from(strict, ip).auth.login.mutate({ email: uniqueEmail(), password: "whatever-password" }), "RATE_LIMITED");
    expect(limited.data?.httpStatus).toBe(429);
    expect(limited.shape?.data.details.retryAfterSeconds).toBeGreaterThan(0);
    await expectAppError(from(strict).auth.login.mutate({ email: uniqueEmail(), password: "whatever-password" }), "INVALID_CREDENTIALS");
  });

  test("register: limited per IP", async () => {
    const ip = uniqueIp();
    for (let i = 0; i < 3; i++) await from(strict, ip).auth.register.mutate({ email: uniqueEmail(), password: STRONG_PASSWORD, name: "Bulk" });
    await expectAppError(from(strict, ip).auth.register.mutate({ email: uniqueEmail(), password: STRONG_PASSWORD, name: "Bulk" }), "RATE_LIMITED");
  });

  test("password reset requests and attempts: limited per IP", async () => {
    const ip = uniqueIp();
    await from(strict, ip).auth.requestPasswordReset.mutate({ email: uniqueEmail() });
    await expectAppError(from(strict, ip).auth.resetPassword.mutate({ token: "a".repeat(52), password: STRONG_PASSWORD }), "TOKEN_INVALID");
    await expectAppError(from(strict, ip).auth.resetPassword.mutate({ token: "b".repeat(52), password: STRONG_PASSWORD }), "TOKEN_INVALID");
    await expectAppError(from(strict, ip).auth.resetPassword.mutate({ token: "c".repeat(52), password: STRONG_PASSWORD }), "RATE_LIMITED");
    await expectAppError(from(strict, ip).auth.requestPasswordReset.mutate({ email: uniqueEmail() }), "RATE_LIMITED");
  });

  test("mail to one address is limited from any IP, alike for existing and unknown addresses", async () => {
    const { user } = await createUserWithSession(strict.services);
    const ghost = uniqueEmail("ghost");
    for (const email of [user.email, ghost]) {
      await from(strict).auth.requestPasswordReset.mutate({ email });
      await from(strict).auth.requestPasswordReset.mutate({ email });
      await expectAppError(from(strict).auth.requestPasswordReset.mutate({ email }), "RATE_LIMITED");
    }
    // Registering again with a taken address sends mail too: same allowance.
    await expectAppError(from(strict).auth.register.mutate({ email: user.email, password: STRONG_PASSWORD, name: "Again" }), "RATE_LIMITED");
  });

  test("limits and lockouts are audited with the caller's IP and user agent", async () => {
    const ip = uniqueIp();
    const email = uniqueEmail();
    await expectAppError(from(strict, ip).auth.login.mutate({ email, password: "whatever-password" }), "INVALID_CREDENTIALS");
    const [failed] = await strict.services.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "auth.login.failed"), eq(auditLog.ip, ip)));
    expect(failed).toMatchObject({ actorType: "anonymous", actorId: null, userAgent: "abuse-spec", metadata: { email, attempt: 1 } });
  });
});

describe("when Redis is gone", () => {
  test("login fails closed with 503 DEPENDENCY_UNAVAILABLE rather than skipping the limits", async () => {
    const broken = await startTestServer();
    try {
      const { user } = await createUserWithSession(broken.services);
      broken.services.redis.disconnect();
      const error = await expectAppError(broken.client().auth.login.mutate({ email: user.email, password: HARNESS_PASSWORD }), "DEPENDENCY_UNAVAILABLE");
      expect(error.data?.httpStatus).toBe(503);
    } finally {
      await broken.close();
    }
  });
});
