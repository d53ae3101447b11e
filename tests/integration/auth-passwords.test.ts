import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq } from "drizzle-orm";
import { auditLog, emailTokens, users } from "../../db/schema";
import { RESET_REQUEST_MIN_MS } from "../../server/auth/password-flows";
import { linkToken, mailBody, mailsTo, mailSubject, mailWithSubject, registerVerifiedUser, STRONG_PASSWORD, uniqueEmail, uniqueIp, startMailingServer, type MailingServer } from "../harness/accounts";
import { expectAppError } from "../harness/expect";

let app: MailingServer;
beforeAll(async () => {
  app = await startMailingServer();
});
afterAll(async () => {
  await app.close();
});

const from = (ip = uniqueIp()) => app.client({ headers: { "x-forwarded-for": ip, "user-agent": "password-spec" } });
const audits = (action: string, targetId: string) =>
  app.services.db
    .select()
    .from(auditLog)
    .where(and(eq(auditLog.action, action), eq(auditLog.targetId, targetId)));
const NEW_PASSWORD = "moonless-granite-harbour-7";

/** Requests a reset and returns the token from the delivered mail (the n-th reset mail to the address). */
async function resetTokenFor(email: string, nth = 1): Promise<string> {
  await from().auth.requestPasswordReset.mutate({ email });
  const resets = (await mailsTo(app.mail, email, 1 + nth)).filter((m) => mailSubject(m) === "Reset your Sahary Cloud password");
  return linkToken(resets[nth - 1]!, "reset-password");
}

describe("changePassword", () => {
  test("needs the current password, ends the other sessions (not this one), and tells the owner", async () => {
    const { email, password, token, user } = await registerVerifiedUser(app, app.mail);
    const other = (await from().auth.login.mutate({ email, password })).token;
    const me = app.client({ token, headers: { "x-forwarded-for": "10.1.2.3", "user-agent": "console/3" } });

    expect(await me.auth.changePassword.mutate({ currentPassword: password, newPassword: NEW_PASSWORD })).toEqual({ sessionsEnded: 1, apiKeysRevoked: 0 });
    expect((await me.auth.me.query()).id).toBe(user.id);
    await expectAppError(app.client({ token: other }).auth.me.query(), "UNAUTHENTICATED");
    await expectAppError(from().auth.login.mutate({ email, password }), "INVALID_CREDENTIALS");
    await from().auth.login.mutate({ email, password: NEW_PASSWORD });

    const notices = await mailsTo(app.mail, email, 2);
    expect(notices.map(mailSubject)).toContain("Your Sahary Cloud password was changed");
    expect((await audits("auth.password.changed", user.id))[0]).toMatchObject({ actorType: "user", actorId: user.id, ip: "10.1.2.3", userAgent: "console/3" });
  });

  test("a wrong current password is INVALID_CREDENTIALS and changes nothing", async () => {
    const { email, password, token, user } = await registerVerifiedUser(app, app.mail);
    await expectAppError(app.client({ token }).auth.changePassword.mutate({ currentPassword: "wrong-password-1", newPassword: NEW_PASSWORD }), "INVALID_CREDENTIALS");
    await from().auth.login.mutate({ email, password });
    expect(await audits("auth.password.change_failed", user.id)).toHaveLength(1);
  });

  test("the new password must pass the policy and differ from the current one", async () => {
    const { password, token } = await registerVerifiedUser(app, app.mail);
    const weak = await expectAppError(app.client({ token }).auth.changePassword.mutate({ currentPassword: password, newPassword: "password1" }), "WEAK_PASSWORD");
    expect(weak.shape?.data.details.reasons).toEqual(["too_short", "common"]);
    const same = await expectAppError(app.client({ token }).auth.changePassword.mutate({ currentPassword: password, newPassword: password }), "WEAK_PASSWORD");
    expect(same.shape?.data.details.reasons).toContain("same_as_current");
  });
});

describe("password reset", () => {
  test("answers the same for an existing and an unknown address, no sooner than the floor, and mails only the owner", async () => {
    const { email } = await registerVerifiedUser(app, app.mail);
    const ghost = uniqueEmail("ghost");
    let started = performance.now();
    const known = await from().auth.requestPasswordReset.mutate({ email });
    const knownMs = performance.now() - started;
    started = performance.now();
    const unknown = await from().auth.requestPasswordReset.mutate({ email: ghost });
    const unknownMs = performance.now() - started;

    expect(unknown).toEqual(known);
    expect(knownMs).toBeGreaterThanOrEqual(RESET_REQUEST_MIN_MS);
    expect(unknownMs).toBeGreaterThanOrEqual(RESET_REQUEST_MIN_MS);
    await mailsTo(app.mail, email, 2);
    expect(app.mail.filter((m) => m.to.includes(ghost))).toHaveLength(0);
  });

  test("a reset token works once: the password changes, every session ends, the token is then TOKEN_INVALID", async () => {
    const { email, password, token, user } = await registerVerifiedUser(app, app.mail);
    const resetToken = await resetTokenFor(email);
    expect(mailBody((await mailsTo(app.mail, email, 2))[1]!)).toContain(`/reset-password#token=${resetToken}`);

    expect(await from("10.4.4.4").auth.resetPassword.mutate({ token: resetToken, password: NEW_PASSWORD })).toEqual({ sessionsEnded: 1, apiKeysRevoked: 0 });
    await expectAppError(app.client({ token }).auth.me.query(), "UNAUTHENTICATED");
    await expectAppError(from().auth.login.mutate({ email, password }), "INVALID_CREDENTIALS");
    await from().auth.login.mutate({ email, password: NEW_PASSWORD });

    await expectAppError(from().auth.resetPassword.mutate({ token: resetToken, password: "yet-another-passphrase-3" }), "TOKEN_INVALID");
    await from().auth.login.mutate({ email, password: NEW_PASSWORD });
    expect((await audits("auth.password_reset.completed", user.id))[0]).toMatchObject({ actorType: "anonymous", ip: "10.4.4.4" });
  });

  test("an expired reset token is TOKEN_EXPIRED and the password stays", async () => {
    const { email, password, user } = await registerVerifiedUser(app, app.mail);
    const resetToken = await resetTokenFor(email);
    await app.services.db
      .update(emailTokens)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(and(eq(emailTokens.userId, user.id), eq(emailTokens.purpose, "reset_password")));
    await expectAppError(from().auth.resetPassword.mutate({ token: resetToken, password: NEW_PASSWORD }), "TOKEN_EXPIRED");
    await from().auth.login.mutate({ email, password });
  });

  test("only the latest reset link works", async () => {
    const { email } = await registerVerifiedUser(app, app.mail);
    const first = await resetTokenFor(email, 1);
    const second = await resetTokenFor(email, 2);
    await expectAppError(from().auth.resetPassword.mutate({ token: first, password: NEW_PASSWORD }), "TOKEN_INVALID");
    await from().auth.resetPassword.mutate({ token: second, password: NEW_PASSWORD });
  });

  test("a weak new password is refused without using up the token", async () => {
    const { email } = await registerVerifiedUser(app, app.mail);
    const resetToken = await resetTokenFor(email);
    await expectAppError(from().auth.resetPassword.mutate({ token: resetToken, password: "letmein" }), "WEAK_PASSWORD");
    await from().auth.resetPassword.mutate({ token: resetToken, password: NEW_PASSWORD });
  });

  test("a verification token cannot reset a password, nor a reset token verify an address", async () => {
    const email = uniqueEmail();
    await from().auth.register.mutate({ email, password: STRONG_PASSWORD, name: "Ada" });
    const verifyToken = linkToken((await mailsTo(app.mail, email))[0]!, "verify-email");
    await expectAppError(from().auth.resetPassword.mutate({ token: verifyToken, password: NEW_PASSWORD }), "TOKEN_INVALID");

    const resetToken = await resetTokenFor(email);
    await expectAppError(from().auth.verifyEmail.mutate({ token: resetToken }), "TOKEN_INVALID");
  });

  test("resetting proves the mailbox: an unverified account becomes active", async () => {
    const email = uniqueEmail();
    await from().auth.register.mutate({ email, password: STRONG_PASSWORD, name: "Ada" });
    const resetToken = await resetTokenFor(email);
    await from().auth.resetPassword.mutate({ token: resetToken, password: NEW_PASSWORD });
    const [row] = await app.services.db.select().from(users).where(eq(users.email, email));
    expect(row).toMatchObject({ status: "active" });
    expect(row!.emailVerifiedAt).toBeInstanceOf(Date);
  });
});

describe('API keys after a password change or reset (docs/api.md, "API keys and passwords")', () => {
  const keyFor = async (token: string, name: string) => (await app.client({ token }).auth.apiKeys.create.mutate({ name, scopes: ["account:read"] })).key;

  test("a reset revokes every API key of the account, says so in the answer, the audit row and the mail", async () => {
    const { email, token, user } = await registerVerifiedUser(app, app.mail);
    const keys = [await keyFor(token, "ci"), await keyFor(token, "backup")];
    for (const key of keys) expect((await app.client({ token: key }).auth.me.query()).id).toBe(user.id);

    const resetToken = await resetTokenFor(email);
    expect(await from().auth.resetPassword.mutate({ token: resetToken, password: NEW_PASSWORD })).toEqual({ sessionsEnded: 1, apiKeysRevoked: 2 });
    for (const key of keys) await expectAppError(app.client({ token: key }).auth.me.query(), "UNAUTHENTICATED");
    expect((await audits("auth.password_reset.completed", user.id))[0]!.metadata).toEqual({ sessionsEnded: 1, apiKeysRevoked: 2 });
    // Mail about the keys themselves (account.security notices) arrives too: look for this one by subject.
    const notice = await mailWithSubject(app.mail, email, "Your Sahary Cloud password was changed");
    expect(mailBody(notice)).toContain("2 API keys were revoked");
  });

  test("a change revokes them too, unless the caller asks to keep them; either way the mail says what happened", async () => {
    const revoking = await registerVerifiedUser(app, app.mail);
    const gone = await keyFor(revoking.token, "deploy");
    expect(await app.client({ token: revoking.token }).auth.changePassword.mutate({ currentPassword: revoking.password, newPassword: NEW_PASSWORD })).toEqual({
      sessionsEnded: 0,
      apiKeysRevoked: 1,
    });
    await expectAppError(app.client({ token: gone }).auth.me.query(), "UNAUTHENTICATED");
    expect((await audits("auth.password.changed", revoking.user.id))[0]!.metadata).toEqual({ sessionsEnded: 0, apiKeysRevoked: 1 });

    const keeping = await registerVerifiedUser(app, app.mail);
    const kept = await keyFor(keeping.token, "deploy");
    expect(await app.client({ token: keeping.token }).auth.changePassword.mutate({ currentPassword: keeping.password, newPassword: NEW_PASSWORD, keepApiKeys: true })).toEqual({
      sessionsEnded: 0,
      apiKeysRevoked: 0,
    });
    expect((await app.client({ token: kept }).auth.me.query()).id).toBe(keeping.user.id);
    const notice = await mailWithSubject(app.mail, keeping.email, "Your Sahary Cloud password was changed");
    expect(mailBody(notice)).toContain("Your 1 API key still works");
  });
});
