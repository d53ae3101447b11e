import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq } from "drizzle-orm";
import { auditLog, instances, sessions } from "../../db/schema";
import { clientAddress } from "../../server/client-ip";
import { MAX_REPORTED_ISSUES } from "../../server/input";
import { testRun } from "../harness/env";
import { startPlatform } from "../harness/faults";
import { startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";
import { holdInvoiceCounter, seedInstance, seedUsage } from "../harness/billing";

/**
 * What the outside test found at the HTTP edge: input rules, the CSRF rule
 * for cookie sessions, the client address behind proxies, and answers for
 * slow requests and failed credential lookups.
 */

let app: TestServer;
beforeAll(async () => {
  app = await startTestServer({ env: { TRUST_PROXY: "true" } });
});
afterAll(() => app.close());

const own = () => new URL(app.services.config.publicUrl).origin;

function call(path: string, init: { method?: "GET" | "POST"; input?: unknown; headers?: Record<string, string>; body?: string | FormData } = {}) {
  const method = init.method ?? "POST";
  const url = method === "GET" ? `${app.url}/trpc/${path}${init.input === undefined ? "" : `?input=${encodeURIComponent(JSON.stringify(init.input))}`}` : `${app.url}/trpc/${path}`;
  const headers = init.body ? (init.headers ?? {}) : { "content-type": "application/json", ...init.headers };
  return fetch(url, { method, headers, body: method === "POST" ? (init.body ?? JSON.stringify(init.input ?? null)) : undefined });
}
const errorOf = async (res: Response) => ((await res.json()) as any).error;

describe("inputs", () => {
  test("an unknown key is refused with 400, naming the key, instead of being dropped", async () => {
    const { token } = await createUserWithSession(app.services);
    const res = await call("auth.updateProfile", { input: { name: "Ada", role: "admin" }, headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(400);
    const error = await errorOf(res);
    expect(error.data.appCode).toBe("VALIDATION_FAILED");
    expect(error.data.issues).toEqual([{ path: "role", message: "is not a known field" }]);
  });

  test("an input with 80,000 issues gets a short answer: the first issues and how many were left out", async () => {
    const { token } = await createUserWithSession(app.services);
    const res = await call("compute.instances.create", {
      input: { name: "x", planId: "nano", imageId: "busybox", env: Object.fromEntries(Array.from({ length: 40_000 }, (_, i) => [`9bad${i}`, i])) },
      headers: { authorization: `Bearer ${token}` },
    });
    const text = await res.text();
    expect(res.status).toBe(400);
    expect(text.length).toBeLessThan(10_000);
    const error = JSON.parse(text).error;
    expect(error.data.issues).toHaveLength(MAX_REPORTED_ISSUES);
    expect(error.data.issuesOmitted).toBeGreaterThan(40_000);
  });

  test("env given as an array is refused rather than read as an empty record", async () => {
    const { token } = await createUserWithSession(app.services);
    const res = await call("compute.instances.create", { input: { name: "arr", planId: "nano", imageId: "busybox", env: [] }, headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(400);
    expect((await errorOf(res)).data.issues[0]).toMatchObject({ path: "env" });
    expect(await app.services.db.select().from(instances).where(eq(instances.name, "arr"))).toHaveLength(0);
  });

  test("a NUL byte anywhere in the input is 400 VALIDATION_FAILED, never a 500 from PostgreSQL", async () => {
    const admin = await createUserWithSession(app.services, { role: "admin" });
    const auth = { authorization: `Bearer ${admin.token}` };
    const cases: Array<[string, "GET" | "POST", unknown, string]> = [
      ["admin.users.list", "GET", { query: "ada\u0000" }, "query"],
      ["admin.audit.list", "GET", { targetId: "x\u0000y" }, "targetId"],
      ["admin.audit.list", "GET", { targetType: "\u0000" }, "targetType"],
      ["auth.login", "POST", { email: "a\u0000@example.test", password: "whatever-password" }, "email"],
      ["compute.instances.create", "POST", { name: "nul", planId: "nano", imageId: "busybox", env: { A: "b\u0000c" } }, "env.A"],
    ];
    for (const [path, method, input, where] of cases) {
      const res = await call(path, { method, input, headers: auth });
      const error = await errorOf(res);
      expect({ path, status: res.status, appCode: error.data.appCode }).toEqual({ path, status: 400, appCode: "VALIDATION_FAILED" });
      expect(error.data.issues[0].path).toBe(where);
      expect(error.data.requestId).toBeString();
    }
    const inKey = await call("compute.instances.create", { input: { name: "nul", planId: "nano", imageId: "busybox", env: { "A\u0000": "b" } }, headers: auth });
    expect(inKey.status).toBe(400);
  });
});

describe("cookie sessions and CSRF", () => {
  test("a cookie-authenticated mutation without Origin is refused with 403 CROSS_SITE_REQUEST; with the platform's Origin it runs", async () => {
    const { user, token } = await createUserWithSession(app.services);
    const cookie = `sahary_session=${token}`;
    const bare = await call("auth.updateProfile", { input: { name: "No Origin" }, headers: { cookie } });
    expect(bare.status).toBe(403);
    expect((await errorOf(bare)).data.appCode).toBe("CROSS_SITE_REQUEST");
    const fromOwn = await call("auth.updateProfile", { input: { name: "Own Origin" }, headers: { cookie, origin: own() } });
    expect(fromOwn.status).toBe(200);
    // Queries stay open to the cookie without Origin (browsers do not send it on same-origin GETs).
    expect((await call("auth.me", { method: "GET", headers: { cookie } })).status).toBe(200);
    expect(
      await app.services.db
        .select({ n: auditLog.id })
        .from(auditLog)
        .where(and(eq(auditLog.action, "auth.profile.updated"), eq(auditLog.targetId, user.id))),
    ).toHaveLength(1);
  });

  test("a multipart body to a mutation without input (logoutAll) is refused for the cookie, even from the platform's origin", async () => {
    const { user, token } = await createUserWithSession(app.services);
    await app.services.sessions.create(user.id, { ip: null, userAgent: "other device" });
    const form = new FormData();
    form.set("x", "1");
    const res = await call("auth.logoutAll", { body: form, headers: { cookie: `sahary_session=${token}`, origin: own() } });
    expect(res.status).toBe(403);
    expect((await errorOf(res)).data.appCode).toBe("CROSS_SITE_REQUEST");
    expect(await app.services.db.select().from(sessions).where(eq(sessions.userId, user.id))).toHaveLength(2);
  });

  test("bearer clients need neither Origin nor anything else", async () => {
    const { token } = await createUserWithSession(app.services);
    const res = await call("auth.logoutAll", { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
  });
});

describe("the client address behind trusted proxies", () => {
  test("is the entry the trusted proxy appended (rightmost for one hop), not what the client wrote", async () => {
    const { user, token } = await createUserWithSession(app.services);
    const res = await call("auth.updateProfile", { input: { name: "Behind Proxy" }, headers: { authorization: `Bearer ${token}`, "x-forwarded-for": "6.6.6.6, 203.0.113.7" } });
    expect(res.status).toBe(200);
    const [row] = await app.services.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "auth.profile.updated"), eq(auditLog.targetId, user.id)));
    expect(row!.ip).toBe("203.0.113.7");
  });

  test("a client rotating the left of X-Forwarded-For stays under one per-IP login limit", async () => {
    const strict = await startTestServer({ env: { TRUST_PROXY: "true", RATE_LIMIT_LOGIN_PER_IP: "3" } });
    try {
      const statuses: number[] = [];
      const proxied = `198.51.100.${(Date.now() % 200) + 1}`;
      for (let i = 0; i < 5; i++) {
        const res = await fetch(`${strict.url}/trpc/auth.login`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-forwarded-for": `10.9.${i}.1, ${proxied}` },
          body: JSON.stringify({ email: `rotate${i}@example.test`, password: "whatever-password" }),
        });
        statuses.push(res.status);
      }
      expect(statuses.slice(0, 3)).toEqual([401, 401, 401]);
      expect(statuses.slice(3)).toEqual([429, 429]);
    } finally {
      await strict.close();
    }
  });

  test("counts hops from the right; bad entries and missing proxies fall back safely", () => {
    expect(clientAddress("10.0.0.2", "1.1.1.1, 2.2.2.2, 3.3.3.3", 1)).toBe("3.3.3.3");
    expect(clientAddress("10.0.0.2", "1.1.1.1, 2.2.2.2, 3.3.3.3", 2)).toBe("2.2.2.2");
    expect(clientAddress("10.0.0.2", "2.2.2.2", 3)).toBe("2.2.2.2");
    expect(clientAddress("10.0.0.2", "1.1.1.1", 0)).toBe("10.0.0.2");
    expect(clientAddress("10.0.0.2", "1.1.1.1, not-an-ip", 1)).toBe("10.0.0.2");
    expect(clientAddress("::ffff:192.0.2.9", undefined, 1)).toBe("192.0.2.9");
    expect(clientAddress(null, undefined, 1)).toBeNull();
  });
});

describe("slow requests and failed lookups", () => {
  test("a request that takes longer than 10 s still gets its answer; past REQUEST_TIMEOUT_MS it gets 504 in the error envelope", async () => {
    const api = await startPlatform("server/api.ts", { REQUEST_TIMEOUT_MS: "20000" });
    const strict = await startPlatform("server/api.ts", { REQUEST_TIMEOUT_MS: "2000" });
    let counter: Awaited<ReturnType<typeof holdInvoiceCounter>> | undefined;
    try {
      const { token } = await createUserWithSession(app.services, { role: "admin" });
      const customer = await createUserWithSession(app.services);
      const instance = await seedInstance(app.services, customer.user.id);
      await seedUsage(app.services, instance, [{ hour: new Date("2002-06-01T00:00:00Z"), runningMs: 60_000 }]);
      const invoice = (base: string) =>
        fetch(`${base}/trpc/admin.billing.runInvoicing`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({ period: "2002-06" }),
        });

      counter = await holdInvoiceCounter(testRun.databaseUrl);

      const started = Date.now();
      const slow = invoice(api.url);
      const cut = await invoice(strict.url);
      const cutAfter = Date.now() - started;
      expect(cut.status).toBe(504);
      const body = (await cut.json()) as any;
      expect(body.error.data).toMatchObject({ appCode: "DEADLINE_EXCEEDED", httpStatus: 504 });
      expect(body.error.data.requestId).toBeString();
      expect(cutAfter).toBeLessThan(10_000);

      await Bun.sleep(Math.max(0, 12_000 - (Date.now() - started)));
      await counter.release();
      const answer = await slow;
      expect(Date.now() - started).toBeGreaterThan(11_000);
      expect(answer.status).toBe(200);
      expect(((await answer.json()) as any).result.data.period).toBe("2002-06");
    } finally {
      await counter?.release();
      api.kill();
      strict.kill();
    }
    // Two API processes start (migrations, a cold start each) on a machine that may be busy.
  }, 120_000);

  test("a credential lookup that fails answers with the error envelope and its request id (503 for a lost database)", async () => {
    const broken = await startTestServer();
    try {
      const { token } = await createUserWithSession(broken.services);
      await broken.services.database.close();
      const res = await fetch(`${broken.url}/trpc/auth.me`, { headers: { authorization: `Bearer ${token}`, "x-request-id": "lookup-failed-1" } });
      expect(res.status).toBe(503);
      const body = (await res.json()) as any;
      expect(body.error.data).toMatchObject({ appCode: "DEPENDENCY_UNAVAILABLE", requestId: "lookup-failed-1" });
    } finally {
      await broken.close().catch(() => {});
    }
  });
});
