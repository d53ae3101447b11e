import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq } from "drizzle-orm";
import { eventDeliveries, outboxEvents } from "../../db/schema";
import { mailSubject, mailsTo, registerVerifiedUser, startMailingServer, uniqueIp, type MailingServer } from "../harness/accounts";
import { mimeParts } from "../harness/mime";
import { eventually } from "../harness/server";

// Security events from the real auth flows: always in the console and by
// mail, and never a second mail for what auth already mails itself.

let app: MailingServer;
beforeAll(async () => {
  app = await startMailingServer({ env: { NOTIFY_POLL_MS: "100" } });
});
afterAll(() => app.close());

describe("account.security", () => {
  test("creating and revoking an API key tells the owner by mail and in the console, with where it came from", async () => {
    const ip = uniqueIp();
    const { email, token, user } = await registerVerifiedUser(app, app.mail, { ip });
    const api = app.client({ token, headers: { "x-forwarded-for": ip, "user-agent": "deploy-bot/2" } });
    const key = await api.auth.apiKeys.create.mutate({ name: "ci", scopes: ["compute:read"] });
    await api.auth.apiKeys.revoke.mutate({ id: key.id });

    const mails = await mailsTo(app.mail, email, 3);
    // Deliveries run concurrently: the two notices may arrive in either order.
    expect(mails.slice(1).map(mailSubject).sort()).toEqual(["API key revoked: ci", "New API key: ci"]);
    const text = mimeParts(mails.find((m) => mailSubject(m) === "New API key: ci")!)
      .find((p) => p.headers["content-type"]?.startsWith("text/plain"))!
      .body.toString("utf8");
    expect(text).toContain(`From address: ${ip}`);
    expect(text).toContain("Client: deploy-bot/2");
    expect(text).toContain("This is a security notice about your account; it is always sent.");

    const centre = await eventually(
      () => api.notifications.list.query(),
      (l) => l.items.length === 2,
      { what: "two notices" },
    );
    expect(centre.items.map((n) => [n.type, n.data.kind])).toEqual([
      ["account.security", "api_key_revoked"],
      ["account.security", "api_key_created"],
    ]);
    const [created] = await app.services.db
      .select()
      .from(outboxEvents)
      .where(and(eq(outboxEvents.userId, user.id), eq(outboxEvents.type, "account.security")));
    expect(created!.data).toMatchObject({ kind: "api_key_created", apiKeyId: key.id, apiKeyName: "ci", ip, userAgent: "deploy-bot/2" });
  });

  test("a password change is one event in the console and one mail (the one auth sends itself), not two", async () => {
    const { email, password, token, user } = await registerVerifiedUser(app, app.mail);
    const api = app.client({ token });
    await api.auth.changePassword.mutate({ currentPassword: password, newPassword: "quiet-harbour-lantern-77" });
    const [event] = await eventually(
      () =>
        app.services.db
          .select()
          .from(outboxEvents)
          .where(and(eq(outboxEvents.userId, user.id), eq(outboxEvents.type, "account.security"))),
      (rows) => rows.length === 1 && rows[0]!.dispatchedAt !== null,
      { what: "the event to be fanned out" },
    );
    expect(event!.data).toMatchObject({ kind: "password_changed" });
    expect(
      await app.services.db
        .select()
        .from(eventDeliveries)
        .where(and(eq(eventDeliveries.eventId, event!.id), eq(eventDeliveries.channel, "email"))),
    ).toEqual([]);
    const mails = await mailsTo(app.mail, email, 2);
    expect(mails.filter((m) => mailSubject(m).toLowerCase().includes("password"))).toHaveLength(1);
    expect((await api.notifications.list.query()).items.map((n) => n.title)).toEqual(["Your password was changed"]);
  });
});
