import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { users } from "../../db/schema";
import { SCOPES } from "../../server/auth/actor";
import { linkToken, mailsTo, mailSubject, STRONG_PASSWORD, uniqueEmail, uniqueIp, startMailingServer, type MailingServer } from "../harness/accounts";
import { expectAppError } from "../harness/expect";
import type { TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

/**
 * One security test per procedure: the wrong caller (anonymous, an API key,
 * a key without the scope, a suspended or unverified account, another owner)
 * is refused with the stable code. Public procedures show they grant nothing.
 */

let app: MailingServer;
type Client = ReturnType<TestServer["client"]>;
let anonymous: Client;
let allScopesKey: Client;
let computeReadKey: Client;
let suspended: Client;
let unverified: Client;
let owner: Awaited<ReturnType<typeof createUserWithSession>>;

beforeAll(async () => {
  app = await startMailingServer();
  anonymous = app.client({ headers: { "x-forwarded-for": uniqueIp() } });
  owner = await createUserWithSession(app.services);
  const ownerClient = app.client({ token: owner.token });
  allScopesKey = app.client({ token: (await ownerClient.auth.apiKeys.create.mutate({ name: "all", scopes: [...SCOPES] })).key });
  computeReadKey = app.client({ token: (await ownerClient.auth.apiKeys.create.mutate({ name: "compute", scopes: ["compute:read"] })).key });
  suspended = app.client({ token: (await createUserWithSession(app.services, { status: "suspended" })).token });
  unverified = app.client({ token: (await createUserWithSession(app.services, { status: "unverified" })).token });
});
afterAll(async () => {
  await app.close();
});

const SESSION_ONLY = "INSUFFICIENT_SCOPE";

describe("auth.me", () => {
  test("refuses anonymous, a key without account:read, and a suspended account", async () => {
    await expectAppError(anonymous.auth.me.query(), "UNAUTHENTICATED");
    await expectAppError(computeReadKey.auth.me.query(), "INSUFFICIENT_SCOPE");
    await expectAppError(suspended.auth.me.query(), "ACCOUNT_SUSPENDED");
    expect((await allScopesKey.auth.me.query()).id).toBe(owner.user.id);
  });
});

describe("auth.logout", () => {
  test("refuses anonymous, any API key and a suspended account", async () => {
    await expectAppError(anonymous.auth.logout.mutate(), "UNAUTHENTICATED");
    await expectAppError(allScopesKey.auth.logout.mutate(), SESSION_ONLY);
    await expectAppError(suspended.auth.logout.mutate(), "ACCOUNT_SUSPENDED");
  });
});

describe("auth.logoutAll", () => {
  test("refuses anonymous, any API key and a suspended account; never touches another user's sessions", async () => {
    await expectAppError(anonymous.auth.logoutAll.mutate(), "UNAUTHENTICATED");
    await expectAppError(allScopesKey.auth.logoutAll.mutate(), SESSION_ONLY);
    await expectAppError(suspended.auth.logoutAll.mutate(), "ACCOUNT_SUSPENDED");
    const other = await createUserWithSession(app.services);
    await app.client({ token: other.token }).auth.logoutAll.mutate();
    expect((await app.client({ token: owner.token }).auth.me.query()).id).toBe(owner.user.id);
  });
});

describe("auth.resendVerification", () => {
  test("refuses anonymous, any API key and a suspended account", async () => {
    await expectAppError(anonymous.auth.resendVerification.mutate(), "UNAUTHENTICATED");
    await expectAppError(allScopesKey.auth.resendVerification.mutate(), SESSION_ONLY);
    await expectAppError(suspended.auth.resendVerification.mutate(), "ACCOUNT_SUSPENDED");
  });
});

describe("auth.changePassword", () => {
  test("refuses anonymous, any API key, a suspended account and a wrong current password", async () => {
    const input = { currentPassword: "correct horse battery staple", newPassword: "entirely-new-passphrase-4" };
    await expectAppError(anonymous.auth.changePassword.mutate(input), "UNAUTHENTICATED");
    await expectAppError(allScopesKey.auth.changePassword.mutate(input), SESSION_ONLY);
    await expectAppError(suspended.auth.changePassword.mutate(input), "ACCOUNT_SUSPENDED");
    const victim = await createUserWithSession(app.services);
    await expectAppError(app.client({ token: victim.token }).auth.changePassword.mutate({ ...input, currentPassword: "a-guess-at-it" }), "INVALID_CREDENTIALS");
  });
});

describe("auth.updateProfile", () => {
  test("refuses anonymous, any API key and a suspended account; only ever edits the caller", async () => {
    await expectAppError(anonymous.auth.updateProfile.mutate({ name: "X" }), "UNAUTHENTICATED");
    await expectAppError(allScopesKey.auth.updateProfile.mutate({ name: "X" }), SESSION_ONLY);
    await expectAppError(suspended.auth.updateProfile.mutate({ name: "X" }), "ACCOUNT_SUSPENDED");
    const other = await createUserWithSession(app.services);
    const sneaky = { name: "Renamed", id: owner.user.id } as { name: string };
    await expectAppError(app.client({ token: other.token }).auth.updateProfile.mutate(sneaky), "VALIDATION_FAILED");
    expect((await app.client({ token: other.token }).auth.updateProfile.mutate({ name: "Renamed" })).id).toBe(other.user.id);
    expect((await app.client({ token: owner.token }).auth.me.query()).name).not.toBe("Renamed");
  });
});

describe("auth.apiKeys.create", () => {
  test("refuses anonymous, any API key, a suspended and an unverified account", async () => {
    const input = { name: "k", scopes: ["account:read" as const] };
    await expectAppError(anonymous.auth.apiKeys.create.mutate(input), "UNAUTHENTICATED");
    await expectAppError(allScopesKey.auth.apiKeys.create.mutate(input), SESSION_ONLY);
    await expectAppError(suspended.auth.apiKeys.create.mutate(input), "ACCOUNT_SUSPENDED");
    await expectAppError(unverified.auth.apiKeys.create.mutate(input), "EMAIL_NOT_VERIFIED");
  });
});

describe("auth.apiKeys.list", () => {
  test("refuses anonymous, a key without account:read and a suspended account; shows only the caller's keys", async () => {
    await expectAppError(anonymous.auth.apiKeys.list.query(), "UNAUTHENTICATED");
    await expectAppError(computeReadKey.auth.apiKeys.list.query(), "INSUFFICIENT_SCOPE");
    await expectAppError(suspended.auth.apiKeys.list.query(), "ACCOUNT_SUSPENDED");
    const other = await createUserWithSession(app.services);
    expect(await app.client({ token: other.token }).auth.apiKeys.list.query()).toEqual([]);
  });
});

describe("auth.apiKeys.revoke", () => {
  test("refuses anonymous, any API key and a suspended account; another owner's key is NOT_FOUND", async () => {
    const [target] = await app.client({ token: owner.token }).auth.apiKeys.list.query();
    await expectAppError(anonymous.auth.apiKeys.revoke.mutate({ id: target!.id }), "UNAUTHENTICATED");
    await expectAppError(allScopesKey.auth.apiKeys.revoke.mutate({ id: target!.id }), SESSION_ONLY);
    await expectAppError(suspended.auth.apiKeys.revoke.mutate({ id: target!.id }), "ACCOUNT_SUSPENDED");
    const other = await createUserWithSession(app.services);
    await expectAppError(app.client({ token: other.token }).auth.apiKeys.revoke.mutate({ id: target!.id }), "NOT_FOUND");
    expect((await app.client({ token: owner.token }).auth.apiKeys.list.query()).map((k) => k.id)).toContain(target!.id);
  });
});

describe("auth.register", () => {
  test("cannot take over an existing account or pick a role", async () => {
    const input = { email: owner.user.email, password: "takeover-attempt-123", name: "Mallory", role: "admin" } as { email: string; password: string; name: string };
    await expectAppError(anonymous.auth.register.mutate(input), "VALIDATION_FAILED");
    const { role: _role, ...plain } = input as typeof input & { role: string };
    await anonymous.auth.register.mutate(plain);
    const [row] = await app.services.db.select().from(users).where(eq(users.id, owner.user.id));
    expect(row).toMatchObject({ name: owner.user.name, role: "customer" });
    expect(await Bun.password.verify("takeover-attempt-123", row!.passwordHash)).toBe(false);
  });
});

describe("auth.login", () => {
  test("refuses a wrong password and a suspended account", async () => {
    await expectAppError(anonymous.auth.login.mutate({ email: owner.user.email, password: "not-it-at-all" }), "INVALID_CREDENTIALS");
    const gone = await createUserWithSession(app.services, { status: "suspended" });
    await expectAppError(anonymous.auth.login.mutate({ email: gone.user.email, password: "correct horse battery staple" }), "ACCOUNT_SUSPENDED");
  });
});

describe("auth.verifyEmail", () => {
  test("refuses a token made for another purpose and a made-up one", async () => {
    const email = uniqueEmail();
    await anonymous.auth.register.mutate({ email, password: STRONG_PASSWORD, name: "Eve" });
    await anonymous.auth.requestPasswordReset.mutate({ email });
    const mails = await mailsTo(app.mail, email, 2);
    const resetMail = mails.find((m) => mailSubject(m) === "Reset your Sahary Cloud password")!;
    await expectAppError(anonymous.auth.verifyEmail.mutate({ token: linkToken(resetMail, "reset-password") }), "TOKEN_INVALID");
    await expectAppError(anonymous.auth.verifyEmail.mutate({ token: "z".repeat(52) }), "TOKEN_INVALID");
  });
});

describe("auth.requestPasswordReset", () => {
  test("gives the caller nothing but an acknowledgement", async () => {
    expect(await anonymous.auth.requestPasswordReset.mutate({ email: owner.user.email })).toEqual({ accepted: true });
  });
});

describe("auth.resetPassword", () => {
  test("refuses a verification token and a made-up one", async () => {
    const email = uniqueEmail();
    await anonymous.auth.register.mutate({ email, password: STRONG_PASSWORD, name: "Eve" });
    const verify = linkToken((await mailsTo(app.mail, email))[0]!, "verify-email");
    await expectAppError(anonymous.auth.resetPassword.mutate({ token: verify, password: "brand-new-passphrase-2" }), "TOKEN_INVALID");
    await expectAppError(anonymous.auth.resetPassword.mutate({ token: "q".repeat(52), password: "brand-new-passphrase-2" }), "TOKEN_INVALID");
  });
});
