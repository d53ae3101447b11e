import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq } from "drizzle-orm";
import { auditLog } from "../../db/schema";
import { QUEUE_NAMES } from "../../workers/queues";
import { expectAppError } from "../harness/expect";
import { startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// Who may call each admin procedure and open the queue dashboard.
let app: TestServer;
let customer: Awaited<ReturnType<typeof createUserWithSession>>;
let operator: Awaited<ReturnType<typeof createUserWithSession>>;
let admin: Awaited<ReturnType<typeof createUserWithSession>>;
let target: Awaited<ReturnType<typeof createUserWithSession>>;
let adminKey: string;

beforeAll(async () => {
  app = await startTestServer();
  customer = await createUserWithSession(app.services);
  operator = await createUserWithSession(app.services, { role: "operator" });
  admin = await createUserWithSession(app.services, { role: "admin" });
  target = await createUserWithSession(app.services);
  // A real key, minted through the API with every scope: still no way in.
  const created = await app.client({ token: admin.token }).auth.apiKeys.create.mutate({
    name: "admin automation",
    scopes: ["account:read", "compute:read", "compute:write", "billing:read", "billing:write", "energy:read"],
  });
  adminKey = created.key;
});
afterAll(() => app.close());

type Api = ReturnType<TestServer["client"]>;

/** Every admin procedure, called with valid input. */
const READS: Record<string, (api: Api) => Promise<unknown>> = {
  "users.list": (api) => api.admin.users.list.query({}),
  "users.get": (api) => api.admin.users.get.query({ id: target.user.id }),
  "audit.list": (api) => api.admin.audit.list.query({}),
  "stats.overview": (api) => api.admin.stats.overview.query(),
  "instances.list": (api) => api.admin.instances.list.query({}),
  "hosts.list": (api) => api.admin.hosts.list.query(),
  "queues.health": (api) => api.admin.queues.health.query(),
};
const WRITES: Record<string, (api: Api) => Promise<unknown>> = {
  "users.setStatus": (api) => api.admin.users.setStatus.mutate({ id: target.user.id, status: "active", reason: "access check" }),
  "users.setRole": (api) => api.admin.users.setRole.mutate({ id: target.user.id, role: "customer", reason: "access check" }),
  "instances.forceStop": (api) => api.admin.instances.forceStop.mutate({ id: crypto.randomUUID(), reason: "access check" }),
  "billing.runInvoicing": (api) => api.admin.billing.runInvoicing.mutate({ period: "2020-01" }),
};
const ALL = { ...READS, ...WRITES };

describe("who may call the admin procedures", () => {
  test("an anonymous caller is refused by every one", async () => {
    for (const call of Object.values(ALL)) await expectAppError(call(app.client()), "UNAUTHENTICATED");
  });

  test("a customer is FORBIDDEN from every one", async () => {
    for (const call of Object.values(ALL)) await expectAppError(call(app.client({ token: customer.token })), "FORBIDDEN");
  });

  test("an operator reads everything and changes nothing", async () => {
    const api = app.client({ token: operator.token });
    for (const call of Object.values(READS)) await call(api);
    for (const call of Object.values(WRITES)) await expectAppError(call(api), "FORBIDDEN");
  });

  test("an admin's API key, whatever its scopes, is refused by every one", async () => {
    for (const call of Object.values(ALL)) await expectAppError(call(app.client({ token: adminKey })), "INSUFFICIENT_SCOPE");
  });

  test("an admin may call every one (an unknown instance is NOT_FOUND, not a refusal)", async () => {
    const api = app.client({ token: admin.token });
    for (const [name, call] of Object.entries(ALL)) {
      if (name === "instances.forceStop") await expectAppError(call(api), "NOT_FOUND");
      else await call(api);
    }
  });

  test("unverified and suspended admins are refused", async () => {
    const unverified = await createUserWithSession(app.services, { role: "admin", status: "unverified" });
    await expectAppError(app.client({ token: unverified.token }).admin.users.list.query({}), "EMAIL_NOT_VERIFIED");
    const suspended = await createUserWithSession(app.services, { role: "admin", status: "suspended" });
    await expectAppError(app.client({ token: suspended.token }).admin.stats.overview.query(), "ACCOUNT_SUSPENDED");
  });

  test("malformed input is a validation error, not a refusal or a 500", async () => {
    const api = app.client({ token: admin.token });
    await expectAppError(api.admin.users.get.query({ id: "not-a-uuid" }), "VALIDATION_FAILED");
    await expectAppError(api.admin.users.list.query({ limit: 1000 }), "VALIDATION_FAILED");
    await expectAppError(api.admin.users.list.query({ cursor: "bm90LWEtY3Vyc29y" }), "VALIDATION_FAILED");
    await expectAppError(api.admin.users.setStatus.mutate({ id: target.user.id, status: "suspended", reason: "" }), "VALIDATION_FAILED");
    await expectAppError(api.admin.users.setStatus.mutate({ id: target.user.id, status: "unverified" as "active", reason: "nope" }), "VALIDATION_FAILED");
    await expectAppError(api.admin.audit.list.query({ from: "2030-01-01T00:00:00Z", to: "2020-01-01T00:00:00Z" }), "VALIDATION_FAILED");
    await expectAppError(api.admin.audit.list.query({ action: "admin.%" }), "VALIDATION_FAILED");
    await expectAppError(api.admin.billing.runInvoicing.mutate({ period: "2020-13" }), "VALIDATION_FAILED");
    await expectAppError(api.admin.billing.runInvoicing.mutate({ period: "2999-01" }), "VALIDATION_FAILED");
    await expectAppError(api.admin.users.get.query({ id: crypto.randomUUID() }), "NOT_FOUND");
  });
});

describe("the queue dashboard at /admin/queues", () => {
  const board = (path: string, init: RequestInit & { headers?: Record<string, string> } = {}) => fetch(`${app.url}/admin/queues${path}`, init);
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const cookieOf = (user: { cookie: string }) => user.cookie.split(";")[0]!;
  const appCodeOf = async (response: Response) => ((await response.json()) as { error: { data: { appCode: string } } }).error.data.appCode;

  test("refuses everyone but operators and admins, with the standard error body", async () => {
    const anonymous = await board("");
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get("content-type")).toContain("application/json");
    expect(await appCodeOf(anonymous)).toBe("UNAUTHENTICATED");
    expect((await board("/api/queues")).status).toBe(401);
    expect((await board("/static/images/logo.svg")).status).toBe(401);

    const asCustomer = await board("", { headers: bearer(customer.token) });
    expect(asCustomer.status).toBe(403);
    expect(await appCodeOf(asCustomer)).toBe("FORBIDDEN");
    expect(await appCodeOf(await board("/api/queues", { headers: { cookie: cookieOf(customer) } }))).toBe("FORBIDDEN");

    const withKey = await board("/api/queues", { headers: bearer(adminKey) });
    expect(withKey.status).toBe(403);
    expect(await appCodeOf(withKey)).toBe("INSUFFICIENT_SCOPE");

    expect(await appCodeOf(await board("", { headers: bearer("not-a-session") }))).toBe("UNAUTHENTICATED");
  });

  test("answers an admin's session cookie with the UI, its static files and its JSON API over every queue", async () => {
    const headers = { cookie: cookieOf(admin) };
    const page = await board("", { headers });
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    expect(page.headers.get("cache-control")).toBe("private, no-store");
    const html = await page.text();
    expect(html).toContain('<base href="/admin/queues/"');
    expect(html).toContain("Sahary queues");

    const script = /src="(static\/[^"]+\.js)"/.exec(html)?.[1];
    expect(script).toBeDefined();
    const asset = await board(`/${script}`, { headers });
    expect(asset.status).toBe(200);
    expect(asset.headers.get("content-type")).toContain("javascript");
    expect((await asset.text()).length).toBeGreaterThan(1000);

    const api = await board("/api/queues?activeQueue=lifecycle&status=latest&page=1&jobsPerPage=10", { headers });
    expect(api.status).toBe(200);
    const body = (await api.json()) as { queues: Array<{ name: string; readOnlyMode: boolean; counts: Record<string, number> }> };
    expect(body.queues.map((q) => q.name).sort()).toEqual([...QUEUE_NAMES].sort());
    expect(body.queues.every((q) => q.readOnlyMode === false)).toBe(true);

    const unknown = await board("/no/such/page", { headers });
    expect(unknown.status).toBe(404);
    expect(await appCodeOf(unknown)).toBe("NOT_FOUND");
  });

  test("an admin may pause and resume a queue (audited) but not author or destroy work", async () => {
    const headers = { ...bearer(admin.token), "content-type": "application/json" };
    const queue = app.services.queues.queue("mail");

    const paused = await board("/api/queues/mail/pause", { method: "PUT", headers });
    expect(paused.status).toBeLessThan(300);
    expect(await queue.isPaused()).toBe(true);
    const resumed = await board("/api/queues/mail/resume", { method: "PUT", headers });
    expect(resumed.status).toBeLessThan(300);
    expect(await queue.isPaused()).toBe(false);

    const audit = await app.services.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.actorId, admin.user.id), eq(auditLog.targetType, "queue")));
    expect(audit.map((row) => [row.action, row.targetId])).toEqual(
      expect.arrayContaining([
        ["admin.queue.pause", "mail"],
        ["admin.queue.resume", "mail"],
      ]),
    );

    const countsBefore = await queue.getJobCounts("waiting", "delayed", "completed", "failed");
    for (const [method, path] of [
      ["POST", "/api/queues/mail/add"],
      ["PUT", "/api/queues/mail/obliterate"],
      ["PUT", "/api/queues/mail/empty"],
      ["PATCH", "/api/queues/mail/some-job/update-data"],
      ["PUT", "/api/queues/mail/concurrency"],
    ] as const) {
      const refused = await board(path, { method, headers, body: JSON.stringify({ name: "send", data: {} }) });
      expect(refused.status).toBe(403);
      expect(await appCodeOf(refused)).toBe("FORBIDDEN");
    }
    expect(await queue.getJobCounts("waiting", "delayed", "completed", "failed")).toEqual(countsBefore);
  });

  test("an operator sees the board read-only", async () => {
    const headers = bearer(operator.token);
    expect((await board("", { headers })).status).toBe(200);
    const api = (await (await board("/api/queues?activeQueue=mail&status=latest&page=1&jobsPerPage=10", { headers })).json()) as { queues: Array<{ readOnlyMode: boolean }> };
    expect(api.queues.length).toBe(QUEUE_NAMES.length);
    expect(api.queues.every((q) => q.readOnlyMode)).toBe(true);
    const refused = await board("/api/queues/mail/pause", { method: "PUT", headers });
    expect(refused.status).toBe(403);
    expect(await appCodeOf(refused)).toBe("FORBIDDEN");
    expect(await app.services.queues.queue("mail").isPaused()).toBe(false);
  });

  test("a change made with the session cookie needs the platform's Origin (CSRF)", async () => {
    const bare = await board("/api/queues/mail/pause", { method: "PUT", headers: { cookie: cookieOf(admin) } });
    expect(bare.status).toBe(403);
    expect(await appCodeOf(bare)).toBe("CROSS_SITE_REQUEST");
    expect(await app.services.queues.queue("mail").isPaused()).toBe(false);
    const own = new URL(app.services.config.publicUrl).origin;
    expect((await board("/api/queues/mail/pause", { method: "PUT", headers: { cookie: cookieOf(admin), origin: own } })).status).toBeLessThan(300);
    expect((await board("/api/queues/mail/resume", { method: "PUT", headers: { cookie: cookieOf(admin), origin: own } })).status).toBeLessThan(300);
    expect(await app.services.queues.queue("mail").isPaused()).toBe(false);
  });

  test("ignores the session cookie on a request from another origin (CSRF)", async () => {
    const response = await board("/api/queues/mail/pause", { method: "PUT", headers: { cookie: cookieOf(admin), origin: "https://evil.example" } });
    expect(response.status).toBe(401);
    expect(await appCodeOf(response)).toBe("UNAUTHENTICATED");
    expect(await app.services.queues.queue("mail").isPaused()).toBe(false);
  });
});
