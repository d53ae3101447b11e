import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { eventDeliveries, notifications } from "../../db/schema";
import type { Scope } from "../../server/auth/actor";
import { recordEvent } from "../../server/events/outbox";
import type { AppErrorCode } from "../../server/errors";
import { notifyProcessor } from "../../workers/notify";
import { expectAppError } from "../harness/expect";
import { eventually, startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

/**
 * A security test per procedure of `notifications` and `webhooks`: anonymous
 * callers, unverified and suspended accounts, API keys without the scope,
 * and other customers are refused with the stable code, and an owner's data
 * never shows to anyone else.
 */

type Client = ReturnType<TestServer["client"]>;
let app: TestServer;
let owner: Awaited<ReturnType<typeof createUserWithSession>>;
let mine: Client;
const ids = { notification: "", endpoint: "", delivery: "" };

beforeAll(async () => {
  // Endpoints here point at a documentation address: nothing is ever sent to them in time to matter.
  app = await startTestServer({ env: { NOTIFY_POLL_MS: "100", WEBHOOK_RETRY_SCHEDULE: "1h" }, workers: [notifyProcessor] });
  owner = await createUserWithSession(app.services);
  mine = app.client({ token: owner.token });
  ids.endpoint = (await mine.webhooks.endpoints.create.mutate({ url: "https://hooks.example.test/mine" })).endpoint.id;
  const eventId = await recordEvent(app.services.db, {
    type: "instance.failed",
    userId: owner.user.id,
    data: { instanceId: crypto.randomUUID(), name: "web", from: "running", reason: "container died (exit code 1)" },
  });
  const [row] = await eventually(
    () => app.services.db.select().from(notifications).where(eq(notifications.eventId, eventId)),
    (rows) => rows.length === 1,
    { what: "the notification" },
  );
  ids.notification = row!.id;
  const [delivery] = await eventually(
    () =>
      app.services.db
        .select()
        .from(eventDeliveries)
        .where(eq(eventDeliveries.eventId, eventId))
        .then((rows) => rows.filter((r) => r.channel === "webhook")),
    (rows) => rows.length === 1,
    { what: "the webhook delivery" },
  );
  ids.delivery = delivery!.id;
});
afterAll(async () => {
  await mine.webhooks.endpoints.delete.mutate({ id: ids.endpoint }).catch(() => {});
  await app.close();
});

/** Every procedure, the scope it needs, and a harmless call of it. */
const PROCEDURES: Array<{ name: string; scope: Scope; call: (api: Client) => Promise<unknown> }> = [
  { name: "notifications.list", scope: "notifications:read", call: (api) => api.notifications.list.query() },
  { name: "notifications.unreadCount", scope: "notifications:read", call: (api) => api.notifications.unreadCount.query() },
  { name: "notifications.markRead", scope: "notifications:write", call: (api) => api.notifications.markRead.mutate({ ids: [ids.notification] }) },
  { name: "notifications.markAllRead", scope: "notifications:write", call: (api) => api.notifications.markAllRead.mutate() },
  { name: "notifications.preferences.get", scope: "notifications:read", call: (api) => api.notifications.preferences.get.query() },
  { name: "notifications.preferences.update", scope: "notifications:write", call: (api) => api.notifications.preferences.update.mutate({ type: "instance.state_changed", inApp: false }) },
  { name: "webhooks.endpoints.create", scope: "webhooks:write", call: (api) => api.webhooks.endpoints.create.mutate({ url: "https://hooks.example.test/created" }) },
  { name: "webhooks.endpoints.list", scope: "webhooks:read", call: (api) => api.webhooks.endpoints.list.query() },
  { name: "webhooks.endpoints.update", scope: "webhooks:write", call: (api) => api.webhooks.endpoints.update.mutate({ id: ids.endpoint, description: "renamed" }) },
  { name: "webhooks.endpoints.rotateSecret", scope: "webhooks:write", call: (api) => api.webhooks.endpoints.rotateSecret.mutate({ id: ids.endpoint }) },
  { name: "webhooks.endpoints.delete", scope: "webhooks:write", call: (api) => api.webhooks.endpoints.delete.mutate({ id: crypto.randomUUID() }) },
  { name: "webhooks.deliveries.list", scope: "webhooks:read", call: (api) => api.webhooks.deliveries.list.query() },
  { name: "webhooks.deliveries.redeliver", scope: "webhooks:write", call: (api) => api.webhooks.deliveries.redeliver.mutate({ id: ids.delivery }) },
];

async function keyWith(scopes: Scope[]): Promise<Client> {
  const { key } = await mine.auth.apiKeys.create.mutate({ name: `scopes ${scopes.join(" ")}`, scopes });
  return app.client({ token: key });
}

describe("who may call", () => {
  test("anonymous callers are refused by every procedure (UNAUTHENTICATED)", async () => {
    const anonymous = app.client();
    for (const p of PROCEDURES) await expectAppError(p.call(anonymous), "UNAUTHENTICATED");
    const forged = app.client({ token: `sahary_${"a".repeat(52)}` });
    for (const p of PROCEDURES) await expectAppError(p.call(forged), "UNAUTHENTICATED");
  });

  test("unverified and suspended accounts are refused by every procedure", async () => {
    const unverified = app.client({ token: (await createUserWithSession(app.services, { status: "unverified" })).token });
    const suspended = app.client({ token: (await createUserWithSession(app.services, { status: "suspended" })).token });
    for (const p of PROCEDURES) {
      await expectAppError(p.call(unverified), "EMAIL_NOT_VERIFIED");
      await expectAppError(p.call(suspended), "ACCOUNT_SUSPENDED");
    }
  });

  test("an API key needs the procedure's scope (INSUFFICIENT_SCOPE otherwise, naming it); read scopes cannot write", async () => {
    const unrelated = await keyWith(["compute:read", "billing:write"]);
    const readers = await keyWith(["notifications:read", "webhooks:read"]);
    for (const p of PROCEDURES) {
      const refused = await expectAppError(p.call(unrelated), "INSUFFICIENT_SCOPE");
      expect({ name: p.name, scope: refused.data?.details?.requiredScope }).toEqual({ name: p.name, scope: p.scope });
      if (p.scope.endsWith(":write")) await expectAppError(p.call(readers), "INSUFFICIENT_SCOPE");
    }
  });

  test("with the scope, a key does what the owner's session does", async () => {
    const key = await keyWith(["notifications:read", "notifications:write", "webhooks:read", "webhooks:write"]);
    const expected: Record<string, AppErrorCode | "ok"> = { "webhooks.endpoints.delete": "NOT_FOUND" };
    for (const p of PROCEDURES) {
      if (expected[p.name] === "NOT_FOUND") await expectAppError(p.call(key), "NOT_FOUND");
      else await p.call(key);
    }
    expect((await key.notifications.list.query()).items.map((n) => n.id)).toContain(ids.notification);
    const created = (await key.webhooks.endpoints.list.query()).find((e) => e.url === "https://hooks.example.test/created")!;
    await key.webhooks.endpoints.delete.mutate({ id: created.id });
  });
});

describe("another customer", () => {
  test("cannot read, mark or change the owner's notifications, endpoints or deliveries: NOT_FOUND, and nothing of theirs is listed", async () => {
    const other = app.client({ token: (await createUserWithSession(app.services)).token });
    expect((await other.notifications.list.query()).items).toEqual([]);
    expect(await other.notifications.unreadCount.query()).toEqual({ unread: 0 });
    await expectAppError(other.notifications.markRead.mutate({ ids: [ids.notification] }), "NOT_FOUND");
    expect(await other.notifications.markAllRead.mutate()).toEqual({ marked: 0 });
    expect(await other.webhooks.endpoints.list.query()).toEqual([]);
    await expectAppError(other.webhooks.endpoints.update.mutate({ id: ids.endpoint, enabled: false }), "NOT_FOUND");
    await expectAppError(other.webhooks.endpoints.rotateSecret.mutate({ id: ids.endpoint }), "NOT_FOUND");
    await expectAppError(other.webhooks.endpoints.delete.mutate({ id: ids.endpoint }), "NOT_FOUND");
    expect((await other.webhooks.deliveries.list.query({ endpointId: ids.endpoint })).items).toEqual([]);
    await expectAppError(other.webhooks.deliveries.redeliver.mutate({ id: ids.delivery }), "NOT_FOUND");

    // The owner's things are untouched.
    const [notification] = await app.services.db.select().from(notifications).where(eq(notifications.id, ids.notification));
    expect(notification!.userId).toBe(owner.user.id);
    expect((await mine.webhooks.endpoints.list.query()).find((e) => e.id === ids.endpoint)).toMatchObject({ enabled: true });
  });

  test("marking read is all or nothing: one id that is not the caller's leaves every notification as it was", async () => {
    const fresh = await recordEvent(app.services.db, {
      type: "instance.failed",
      userId: owner.user.id,
      data: { instanceId: crypto.randomUUID(), name: "db", from: "running", reason: "container died" },
    });
    const [row] = await eventually(
      () => app.services.db.select().from(notifications).where(eq(notifications.eventId, fresh)),
      (rows) => rows.length === 1,
      { what: "the notification" },
    );
    await expectAppError(mine.notifications.markRead.mutate({ ids: [row!.id, crypto.randomUUID()] }), "NOT_FOUND");
    expect((await app.services.db.select().from(notifications).where(eq(notifications.id, row!.id)))[0]!.readAt).toBeNull();
    const before = (await mine.notifications.unreadCount.query()).unread;
    expect((await mine.notifications.markRead.mutate({ ids: [row!.id, row!.id] })).items).toHaveLength(1);
    expect((await mine.notifications.unreadCount.query()).unread).toBe(before - 1);
  });

  test("bad input is a validation error, never a 500", async () => {
    await expectAppError(mine.notifications.markRead.mutate({ ids: [] }), "VALIDATION_FAILED");
    await expectAppError(mine.notifications.markRead.mutate({ ids: ["not-a-uuid"] }), "VALIDATION_FAILED");
    await expectAppError(mine.notifications.list.query({ cursor: "garbage" }), "VALIDATION_FAILED");
    await expectAppError(mine.notifications.list.query({ limit: 1000 }), "VALIDATION_FAILED");
    await expectAppError(mine.webhooks.endpoints.create.mutate({ url: "https://hooks.example.test/x", eventTypes: ["nope"] as never }), "VALIDATION_FAILED");
    await expectAppError(mine.webhooks.endpoints.update.mutate({ id: ids.endpoint }), "VALIDATION_FAILED");
    await expectAppError(mine.webhooks.deliveries.list.query({ status: "lost" as never }), "VALIDATION_FAILED");
  });
});

describe("paging", () => {
  test("the notification list pages newest first with a cursor, and unreadOnly filters", async () => {
    const session = await createUserWithSession(app.services);
    const api = app.client({ token: session.token });
    const eventIds: string[] = [];
    for (let i = 0; i < 5; i++) {
      eventIds.push(await recordEvent(app.services.db, { type: "instance.failed", userId: session.user.id, data: { instanceId: crypto.randomUUID(), name: `n${i}`, from: "running", reason: "x" } }));
    }
    await eventually(
      () => api.notifications.unreadCount.query(),
      (c) => c.unread === 5,
      { what: "five notifications" },
    );
    const first = await api.notifications.list.query({ limit: 2 });
    const second = await api.notifications.list.query({ limit: 2, cursor: first.nextCursor! });
    const third = await api.notifications.list.query({ limit: 2, cursor: second.nextCursor! });
    expect(third.nextCursor).toBeNull();
    // Pages joined are the whole list, in its order (newest notification first; the outbox may deliver the five events out
    // of their recording order, so that is not the order they were recorded in), each once.
    const paged = [...first.items, ...second.items, ...third.items].map((n) => n.id);
    expect(paged).toEqual((await api.notifications.list.query({ limit: 10 })).items.map((n) => n.id));
    expect([...first.items, ...second.items, ...third.items].map((n) => n.eventId).sort()).toEqual([...eventIds].sort());
    await api.notifications.markRead.mutate({ ids: [first.items[0]!.id] });
    expect((await api.notifications.list.query({ unreadOnly: true })).items).toHaveLength(4);
    expect(await api.notifications.markAllRead.mutate()).toEqual({ marked: 4 });
    expect(await api.notifications.unreadCount.query()).toEqual({ unread: 0 });
  });
});
