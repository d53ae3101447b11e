import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../harness/server";
import { expectAppError } from "../harness/expect";
import { createUserWithSession } from "../harness/users";

let app: TestServer;
beforeAll(async () => {
  app = await startTestServer({ env: { CORS_ORIGINS: "https://console.sahary.test" } });
});
afterAll(() => app.close());

describe("health and readiness", () => {
  test("GET /health answers 200", async () => {
    const res = await fetch(`${app.url}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
  });

  test("GET /ready names database, Redis and Docker with state and latency", async () => {
    const res = await fetch(`${app.url}/ready`);
    const body = (await res.json()) as any;
    expect(res.status).toBe(200);
    expect(body.status).toBe("ready");
    for (const name of ["database", "redis", "docker"]) {
      expect(body.checks[name].state).toBe("up");
      expect(typeof body.checks[name].latencyMs).toBe("number");
    }
    expect(body.checks.database.required).toBe(true);
    expect(body.checks.redis.required).toBe(true);
  });

  test("GET /ready answers 503 naming Redis when Redis is gone", async () => {
    const broken = await startTestServer();
    try {
      broken.services.redis.disconnect();
      const res = await fetch(`${broken.url}/ready`);
      const body = (await res.json()) as any;
      expect(res.status).toBe(503);
      expect(body.status).toBe("not_ready");
      expect(body.checks.redis.state).toBe("down");
      expect(body.checks.database.state).toBe("up");
    } finally {
      await broken.close();
    }
  });
});

describe("bad input never yields a 500", () => {
  test("malformed JSON body gets a 4xx with a stable code", async () => {
    const res = await fetch(`${app.url}/trpc/auth.me`, { method: "POST", headers: { "content-type": "application/json" }, body: "{" });
    const body = (await res.json()) as any;
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(typeof body.error.data.appCode).toBe("string");
  });

  test("a malformed JSON body for a procedure that takes input gets 400 MALFORMED_REQUEST", async () => {
    const res = await fetch(`${app.url}/trpc/auth.login`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"email": "a@b.test", "password":' });
    const body = (await res.json()) as any;
    expect(res.status).toBe(400);
    expect(body.error.data).toMatchObject({ appCode: "MALFORMED_REQUEST", httpStatus: 400, path: "auth.login" });
    expect(JSON.stringify(body)).not.toContain("stack");
  });

  test("a well-formed body of the wrong shape gets 400 VALIDATION_FAILED listing the fields", async () => {
    const res = await fetch(`${app.url}/trpc/auth.login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email: 5 }) });
    const body = (await res.json()) as any;
    expect(res.status).toBe(400);
    expect(body.error.data.appCode).toBe("VALIDATION_FAILED");
    expect(body.error.data.issues.map((i: { path: string }) => i.path).sort()).toEqual(["email", "password"]);
  });

  test("an unknown procedure gets 404 PROCEDURE_NOT_FOUND", async () => {
    const res = await fetch(`${app.url}/trpc/auth.nothingHere`);
    const body = (await res.json()) as any;
    expect(res.status).toBe(404);
    expect(body.error.data.appCode).toBe("PROCEDURE_NOT_FOUND");
  });

  test("an unknown route gets 404 in the same envelope", async () => {
    const res = await fetch(`${app.url}/nope`);
    const body = (await res.json()) as any;
    expect(res.status).toBe(404);
    expect(body.error.data).toMatchObject({ appCode: "NOT_FOUND", httpStatus: 404 });
    expect(body.error.data.requestId).toBe(res.headers.get("x-request-id"));
  });

  test("an oversized body gets 413 whether or not it declares its length", async () => {
    const big = "x".repeat(app.services.config.http.bodyLimitBytes + 1);
    const declared = await fetch(`${app.url}/trpc/auth.me`, { method: "POST", headers: { "content-type": "application/json" }, body: big });
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as any).error.data.appCode).toBe("PAYLOAD_TOO_LARGE");

    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 20; i++) controller.enqueue(new TextEncoder().encode("y".repeat(64 * 1024)));
        controller.close();
      },
    });
    const chunked = await fetch(`${app.url}/trpc/auth.me`, { method: "POST", headers: { "content-type": "application/json" }, body: stream });
    expect(chunked.status).toBe(413);
  });

  test("error responses never carry a stack trace", async () => {
    for (const path of ["/trpc/auth.me", "/trpc/nope", `/trpc/auth.me?input=${encodeURIComponent("{")}`]) {
      const text = await (await fetch(`${app.url}${path}`)).text();
      expect(text).not.toContain("stack");
      expect(text).not.toContain("at ");
    }
  });
});

describe("HTTP hygiene", () => {
  test("responses carry security headers and a request id", async () => {
    const res = await fetch(`${app.url}/health`);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("x-frame-options")).toBe("SAMEORIGIN");
    expect(res.headers.get("referrer-policy")).toBe("no-referrer");
    expect(res.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  test("CORS answers configured origins only", async () => {
    const allowed = await fetch(`${app.url}/trpc/auth.me`, { method: "OPTIONS", headers: { origin: "https://console.sahary.test", "access-control-request-method": "POST" } });
    expect(allowed.headers.get("access-control-allow-origin")).toBe("https://console.sahary.test");
    const denied = await fetch(`${app.url}/trpc/auth.me`, { method: "OPTIONS", headers: { origin: "https://evil.test", "access-control-request-method": "POST" } });
    expect(denied.headers.get("access-control-allow-origin")).toBeNull();
  });

  test("/metrics exposes request counters", async () => {
    await fetch(`${app.url}/health`);
    const text = await (await fetch(`${app.url}/metrics`)).text();
    expect(text).toMatch(/http_requests_total\{method="GET",route="\/health",status="200"\} \d+/);
  });
});

describe("sessions and the typed client", () => {
  test("an anonymous caller is UNAUTHENTICATED", async () => {
    await expectAppError(app.client().auth.me.query(), "UNAUTHENTICATED");
  });

  test("a bearer session token authenticates, and the database holds only its hash", async () => {
    const { user, token } = await createUserWithSession(app.services);
    const me = await app.client({ token }).auth.me.query();
    expect(me).toMatchObject({ id: user.id, email: user.email, role: "customer", status: "active" });
    const rows = await app.services.db.query.sessions.findMany({ where: (s, { eq }) => eq(s.userId, user.id) });
    expect(rows).toHaveLength(1);
    expect(rows[0]!.id).not.toBe(token);
    expect(rows[0]!.id).toMatch(/^[0-9a-f]{64}$/);
  });

  test("the session cookie authenticates too", async () => {
    const { user, cookie } = await createUserWithSession(app.services);
    const nameValue = cookie.split(";")[0]!;
    expect(cookie).toContain("HttpOnly");
    expect(cookie).toContain("SameSite=Lax");
    const me = await app.client({ headers: { cookie: nameValue } }).auth.me.query();
    expect(me.id).toBe(user.id);
  });

  test("a session past its absolute lifetime stops working even if it slid", async () => {
    const { user, token } = await createUserWithSession(app.services);
    const { sessions } = await import("../../db/schema");
    const { eq } = await import("drizzle-orm");
    await app.services.db
      .update(sessions)
      .set({ absoluteExpiresAt: new Date(Date.now() - 1000) })
      .where(eq(sessions.userId, user.id));
    await app.services.changes.settle();
    await expectAppError(app.client({ token }).auth.me.query(), "UNAUTHENTICATED");
    expect(await app.services.db.query.sessions.findMany({ where: (s, { eq }) => eq(s.userId, user.id) })).toHaveLength(0);
  });

  test("a suspended account's session is refused", async () => {
    const { token } = await createUserWithSession(app.services, { status: "suspended" });
    await expectAppError(app.client({ token }).auth.me.query(), "ACCOUNT_SUSPENDED");
  });

  test("a garbage bearer token is simply anonymous", async () => {
    await expectAppError(app.client({ token: "../../etc/passwd" }).auth.me.query(), "UNAUTHENTICATED");
  });
});
