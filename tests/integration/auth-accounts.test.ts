import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq } from "drizzle-orm";
import { auditLog, emailTokens, mailMessages, users } from "../../db/schema";
import { linkToken, mailBody, mailsTo, mailSubject, registerVerifiedUser, STRONG_PASSWORD, uniqueEmail, uniqueIp, startMailingServer, type MailingServer } from "../harness/accounts";
import { expectAppError } from "../harness/expect";
import { eventually } from "../harness/server";

let app: MailingServer;
beforeAll(async () => {
  app = await startMailingServer({ env: { PUBLIC_URL: "https://console.sahary.test" } });
});
afterAll(async () => {
  await app.close();
});

const anonymous = (ip = uniqueIp()) => app.client({ headers: { "x-forwarded-for": ip, "user-agent": "accounts-spec/1.0" } });
const userRow = (email: string) => app.services.db.query.users.findFirst({ where: eq(users.email, email) });
const auditFor = (action: string, targetId: string) =>
  app.services.db
    .select()
    .from(auditLog)
    .where(and(eq(auditLog.action, action), eq(auditLog.targetId, targetId)));

describe("registration", () => {
  test("creates an unverified customer, stores an Argon2id hash, and mails a verification link", async () => {
    const email = uniqueEmail();
    const ip = uniqueIp();
    const answer = await anonymous(ip).auth.register.mutate({ email, password: STRONG_PASSWORD, name: "Ada Sun" });
    expect(answer).toEqual({ email, next: "verify_email" });

    const user = await userRow(email);
    expect(user).toMatchObject({ email, name: "Ada Sun", role: "customer", status: "unverified", emailVerifiedAt: null });
    expect(user!.passwordHash).toStartWith("$argon2id$");
    expect(user!.passwordHash).not.toContain(STRONG_PASSWORD);

    const [mail] = await mailsTo(app.mail, email);
    expect(mailSubject(mail!)).toBe("Confirm your Sahary Cloud email address");
    expect(mailBody(mail!)).toContain("https://console.sahary.test/verify-email#token=");

    const [audit] = await auditFor("auth.account.registered", user!.id);
    expect(audit).toMatchObject({ actorType: "anonymous", ip, userAgent: "accounts-spec/1.0" });
  });

  test("normalises the address: case and surrounding spaces do not make a second account", async () => {
    const email = uniqueEmail("Mixed");
    await anonymous().auth.register.mutate({ email: `  ${email.toUpperCase()} `, password: STRONG_PASSWORD, name: "Ada" });
    expect((await userRow(email.toLowerCase()))?.email).toBe(email.toLowerCase());
  });

  test("accepts real-world addresses (plus tags, apostrophes) and refuses undeliverable ones", async () => {
    const tag = `ada+cloud-${crypto.randomUUID().slice(0, 8)}@example.test`;
    const apostrophe = `o'brien-${crypto.randomUUID().slice(0, 8)}@example.ie`;
    for (const email of [tag, apostrophe]) await anonymous().auth.register.mutate({ email, password: STRONG_PASSWORD, name: "Real" });
    expect(await userRow(tag)).toBeDefined();
    expect(await userRow(apostrophe)).toBeDefined();
    for (const email of ["root@localhost", "two@@example.test", "no-at-sign.example.test"]) {
      await expectAppError(anonymous().auth.register.mutate({ email, password: STRONG_PASSWORD, name: "Bad" }), "VALIDATION_FAILED");
    }
  });

  test("a taken address gets the same answer, no second account, and an 'already registered' mail to its owner", async () => {
    const email = uniqueEmail();
    const first = await anonymous().auth.register.mutate({ email, password: STRONG_PASSWORD, name: "Owner" });
    const second = await anonymous().auth.register.mutate({ email: email.toUpperCase(), password: "another-long-passphrase-9", name: "Intruder" });
    expect(second).toEqual(first);

    const rows = await app.services.db.select().from(users).where(eq(users.email, email));
    expect(rows).toHaveLength(1);
    expect(rows[0]!.name).toBe("Owner");
    expect(await Bun.password.verify(STRONG_PASSWORD, rows[0]!.passwordHash)).toBe(true);

    const mails = await mailsTo(app.mail, email, 2);
    expect(mails.map(mailSubject).sort()).toEqual(["Confirm your Sahary Cloud email address", "You already have a Sahary Cloud account"]);
    expect(mailBody(mails.find((m) => mailSubject(m).startsWith("You already"))!)).not.toContain("#token=");
  });

  test("a weak password is refused with WEAK_PASSWORD naming the reasons, and nothing is written", async () => {
    const email = uniqueEmail("weakling");
    const cases: Array<[string, string]> = [
      ["short1!", "too_short"],
      ["Password2024!", "common"],
      ["qwertyuiop", "common"],
      [`${email.split("@")[0]}-x9`, "contains_email"],
      ["aaaaaaaaaaaaaaaa", "too_repetitive"],
      ["Ada Lovelace rules", "contains_name"],
    ];
    for (const [password, reason] of cases) {
      const error = await expectAppError(anonymous().auth.register.mutate({ email, password, name: "Ada Lovelace" }), "WEAK_PASSWORD");
      expect(error.data?.httpStatus).toBe(400);
      expect(error.shape?.data.details.reasons).toContain(reason);
    }
    expect(await userRow(email)).toBeUndefined();
  });

  test("input cannot choose a role or status: unknown fields are refused, and nothing is created", async () => {
    const email = uniqueEmail();
    const input = { email, password: STRONG_PASSWORD, name: "Sneaky", role: "admin", status: "active" } as { email: string; password: string; name: string };
    const error = await expectAppError(anonymous().auth.register.mutate(input), "VALIDATION_FAILED");
    expect(error.data?.issues.map((i: { path: string }) => i.path)).toContain("role");
    expect(await userRow(email)).toBeUndefined();
    await anonymous().auth.register.mutate({ email, password: STRONG_PASSWORD, name: "Plain" });
    expect(await userRow(email)).toMatchObject({ role: "customer", status: "unverified" });
  });

  test("malformed and oversized fields get VALIDATION_FAILED naming the field, before any work", async () => {
    const client = anonymous();
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ email: "not-an-email", password: STRONG_PASSWORD, name: "A" }, "email"],
      [{ email: `${"a".repeat(250)}@example.test`, password: STRONG_PASSWORD, name: "A" }, "email"],
      [{ email: uniqueEmail(), password: "x".repeat(257), name: "A" }, "password"],
      [{ email: uniqueEmail(), password: STRONG_PASSWORD, name: "n".repeat(101) }, "name"],
      [{ email: uniqueEmail(), password: STRONG_PASSWORD, name: "   " }, "name"],
      [{ email: uniqueEmail(), password: STRONG_PASSWORD, name: "bell\u0007" }, "name"],
      [{ email: 42, password: STRONG_PASSWORD, name: "A" }, "email"],
    ];
    for (const [input, field] of bad) {
      const error = await expectAppError(client.auth.register.mutate(input as never), "VALIDATION_FAILED");
      expect(error.data?.httpStatus).toBe(400);
      expect(error.shape?.data.issues.map((i: { path: string }) => i.path)).toContain(field);
    }
  });
});

describe("email verification", () => {
  test("the link from the mail activates the account, once", async () => {
    const email = uniqueEmail();
    const client = anonymous();
    await client.auth.register.mutate({ email, password: STRONG_PASSWORD, name: "Ada" });
    const token = linkToken((await mailsTo(app.mail, email))[0]!, "verify-email");

    const verified = await client.auth.verifyEmail.mutate({ token });
    expect(verified).toMatchObject({ email, status: "active" });
    expect(Date.parse(verified.emailVerifiedAt!)).toBeGreaterThan(Date.now() - 60_000);
    await expectAppError(client.auth.verifyEmail.mutate({ token }), "TOKEN_INVALID");

    const user = await userRow(email);
    const [audit] = await auditFor("auth.email.verified", user!.id);
    expect(audit).toBeDefined();
  });

  test("the database keeps only a keyed hash of the token, and the outbox forgets the link once delivered", async () => {
    const email = uniqueEmail();
    await anonymous().auth.register.mutate({ email, password: STRONG_PASSWORD, name: "Ada" });
    const token = linkToken((await mailsTo(app.mail, email))[0]!, "verify-email");
    const user = await userRow(email);
    const [stored] = await app.services.db.select().from(emailTokens).where(eq(emailTokens.userId, user!.id));
    expect(stored!.tokenHash).toMatch(/^[0-9a-f]{64}$/);
    expect(stored!.tokenHash).not.toBe(new Bun.CryptoHasher("sha256").update(token).digest("hex"));
    expect(JSON.stringify(stored)).not.toContain(token);

    const outbox = await eventually(
      () => app.services.db.select().from(mailMessages).where(eq(mailMessages.to, email)),
      (rows) => rows.length === 1 && rows[0]!.status === "sent",
      { what: "the verification mail to be marked sent" },
    );
    expect(outbox[0]!.text).not.toContain(token);
  });

  test("an expired link is refused with TOKEN_EXPIRED and the account stays unverified", async () => {
    const email = uniqueEmail();
    await anonymous().auth.register.mutate({ email, password: STRONG_PASSWORD, name: "Ada" });
    const token = linkToken((await mailsTo(app.mail, email))[0]!, "verify-email");
    const user = await userRow(email);
    await app.services.db
      .update(emailTokens)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(eq(emailTokens.userId, user!.id));
    await expectAppError(anonymous().auth.verifyEmail.mutate({ token }), "TOKEN_EXPIRED");
    expect((await userRow(email))!.status).toBe("unverified");
  });

  test("garbage tokens are TOKEN_INVALID; oversized ones are VALIDATION_FAILED", async () => {
    await expectAppError(anonymous().auth.verifyEmail.mutate({ token: "not-a-token" }), "TOKEN_INVALID");
    await expectAppError(anonymous().auth.verifyEmail.mutate({ token: "a".repeat(52) }), "TOKEN_INVALID");
    await expectAppError(anonymous().auth.verifyEmail.mutate({ token: "a".repeat(129) }), "VALIDATION_FAILED");
  });

  test("resendVerification mails a new link and retires the old one; verified accounts are told so", async () => {
    const email = uniqueEmail();
    const client = anonymous();
    await client.auth.register.mutate({ email, password: STRONG_PASSWORD, name: "Ada" });
    const first = linkToken((await mailsTo(app.mail, email))[0]!, "verify-email");
    const { token: session } = await client.auth.login.mutate({ email, password: STRONG_PASSWORD });
    const me = app.client({ token: session, headers: { "x-forwarded-for": uniqueIp() } });

    expect(await me.auth.resendVerification.mutate()).toEqual({ sent: true, reason: null });
    const second = linkToken((await mailsTo(app.mail, email, 2))[1]!, "verify-email");
    expect(second).not.toBe(first);
    await expectAppError(client.auth.verifyEmail.mutate({ token: first }), "TOKEN_INVALID");
    await client.auth.verifyEmail.mutate({ token: second });

    expect(await me.auth.resendVerification.mutate()).toEqual({ sent: false, reason: "already_verified" });
    expect((await me.auth.me.query()).status).toBe("active");
  });
});

describe("profile", () => {
  test("me shows the account; updateProfile changes the name and is audited", async () => {
    const { token, email, user } = await registerVerifiedUser(app, app.mail);
    const client = app.client({ token, headers: { "x-forwarded-for": "10.9.8.7", "user-agent": "profile-spec" } });
    expect(await client.auth.me.query()).toEqual({ id: user.id, email, name: "Ada Sun", role: "customer", status: "active", emailVerifiedAt: expect.any(String) });

    const updated = await client.auth.updateProfile.mutate({ name: "  Ada Solar  " });
    expect(updated.name).toBe("Ada Solar");
    expect((await client.auth.me.query()).name).toBe("Ada Solar");
    const [audit] = await auditFor("auth.profile.updated", user.id);
    expect(audit).toMatchObject({ actorType: "user", actorId: user.id, ip: "10.9.8.7", userAgent: "profile-spec" });
  });

  test("updateProfile refuses an empty or oversized name", async () => {
    const { token } = await registerVerifiedUser(app, app.mail);
    const client = app.client({ token });
    await expectAppError(client.auth.updateProfile.mutate({ name: "" }), "VALIDATION_FAILED");
    await expectAppError(client.auth.updateProfile.mutate({ name: "x".repeat(10_000) }), "VALIDATION_FAILED");
  });
});
