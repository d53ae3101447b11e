import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startRedis, type OwnRedis } from "../harness/faults";
import { startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

/**
 * Budgets of authenticated calls (server/limits/budgets.ts): points per minute
 * per account and per API key, a cost per procedure, 429 RATE_LIMITED with
 * Retry-After; and the sign-in limits answering with the same header.
 */

let app: TestServer;
beforeAll(async () => {
  app = await startTestServer({ env: { RATE_LIMIT_ACCOUNT_PER_MINUTE: "40", RATE_LIMIT_API_KEY_PER_MINUTE: "12", RATE_LIMIT_LOGIN_PER_IP: "2", TRUST_PROXY: "true" } });
});
afterAll(() => app.close());

function get(path: string, headers: Record<string, string>, input?: unknown) {
  return fetch(`${app.url}/trpc/${path}${input === undefined ? "" : `?input=${encodeURIComponent(JSON.stringify(input))}`}`, { headers });
}

async function apiKey(token: string, scopes: string[]) {
  const res = await fetch(`${app.url}/trpc/auth.apiKeys.create`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "limits", scopes }),
  });
  return ((await res.json()) as any).result.data.key as string;
}

describe("budgets of authenticated calls", () => {
  test("an API key beyond its budget gets 429 RATE_LIMITED with Retry-After; another key of the account still works", async () => {
    const { token } = await createUserWithSession(app.services);
    const [first, second] = [await apiKey(token, ["account:read"]), await apiKey(token, ["account:read"])];
    const statuses: number[] = [];
    for (let i = 0; i < 13; i++) statuses.push((await get("auth.me", { authorization: `Bearer ${first}` })).status);
    expect(statuses.slice(0, 12).every((s) => s === 200)).toBe(true);
    expect(statuses[12]).toBe(429);

    const refused = await get("auth.me", { authorization: `Bearer ${first}` });
    expect(refused.status).toBe(429);
    const error = ((await refused.json()) as any).error;
    expect(error.data).toMatchObject({ appCode: "RATE_LIMITED", details: { limit: "apiKey" } });
    const retryAfter = Number(refused.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(retryAfter).toBe(error.data.details.retryAfterSeconds);

    expect((await get("auth.me", { authorization: `Bearer ${second}` })).status).toBe(200);
  });

  test("an account's calls through its sessions and keys share its budget; other accounts are unaffected", async () => {
    const owner = await createUserWithSession(app.services);
    const other = await createUserWithSession(app.services);
    const key = await apiKey(owner.token, ["account:read"]);
    for (let i = 0; i < 10; i++) expect((await get("auth.me", { authorization: `Bearer ${key}` })).status).toBe(200);
    // 1 (key creation) + 10 by key so far; the session spends the rest of the 40.
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push((await get("auth.me", { authorization: `Bearer ${owner.token}` })).status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(29);
    expect(statuses.at(-1)).toBe(429);
    const refused = await get("auth.me", { authorization: `Bearer ${owner.token}` });
    expect(((await refused.json()) as any).error.data.details.limit).toBe("account");
    expect((await get("auth.me", { authorization: `Bearer ${other.token}` })).status).toBe(200);
  });

  test("Docker-backed procedures cost more: two stats calls spend a key's budget of 12", async () => {
    const { token } = await createUserWithSession(app.services);
    const key = await apiKey(token, ["compute:read"]);
    const id = crypto.randomUUID();
    // Charged whatever the answer (here NOT_FOUND): the cost is spent on arrival.
    expect((await get("compute.instances.stats", { authorization: `Bearer ${key}` }, { id })).status).toBe(404);
    expect((await get("compute.instances.stats", { authorization: `Bearer ${key}` }, { id })).status).toBe(429);
  });

  test("a batch is charged once for all its calls", async () => {
    const { token } = await createUserWithSession(app.services);
    const key = await apiKey(token, ["account:read"]);
    const batch = (n: number) => {
      const paths = Array.from({ length: n }, () => "auth.me").join(",");
      const input = encodeURIComponent(JSON.stringify(Object.fromEntries(Array.from({ length: n }, (_, i) => [i, null]))));
      return fetch(`${app.url}/trpc/${paths}?batch=1&input=${input}`, { headers: { authorization: `Bearer ${key}` } });
    };
    const ten = await batch(10);
    expect(((await ten.json()) as any[]).every((r) => r.result)).toBe(true);
    const three = await batch(3);
    expect(((await three.json()) as any[]).map((r) => r.error?.data.appCode)).toEqual(["RATE_LIMITED", "RATE_LIMITED", "RATE_LIMITED"]);
    expect(three.headers.get("retry-after")).toMatch(/^\d+$/);
  });

  test("anonymous calls spend nothing", async () => {
    for (let i = 0; i < 60; i++) expect((await fetch(`${app.url}/trpc/auth.me`)).status).toBe(401);
  });
});

describe("sign-in limits", () => {
  test("a login beyond the per-IP limit carries Retry-After, equal to details.retryAfterSeconds", async () => {
    const login = () =>
      fetch(`${app.url}/trpc/auth.login`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-forwarded-for": "192.0.2.77" },
        body: JSON.stringify({ email: "nobody@example.test", password: "whatever-password" }),
      });
    expect((await login()).status).toBe(401);
    expect((await login()).status).toBe(401);
    const limited = await login();
    expect(limited.status).toBe(429);
    const seconds = ((await limited.json()) as any).error.data.details.retryAfterSeconds;
    expect(seconds).toBeGreaterThan(800);
    expect(limited.headers.get("retry-after")).toBe(String(seconds));
  });
});

describe("the budget's cost on Redis", () => {
  let redis: OwnRedis;
  let own: TestServer;
  beforeAll(async () => {
    redis = await startRedis();
    own = await startTestServer({ env: { REDIS_URL: redis.url, RATE_LIMIT_ACCOUNT_PER_MINUTE: "1000", RATE_LIMIT_API_KEY_PER_MINUTE: "1000" } });
  });
  afterAll(async () => {
    await own.close();
    await redis.destroy();
  });

  /** Commands per name since the last reset; commands run inside a script are listed too, under their own names. */
  const commandStats = async (reset = false) => {
    const client = redis.client();
    try {
      if (reset) await client.config("RESETSTAT");
      const info = await client.info("commandstats");
      return Object.fromEntries([...info.matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)].map((m) => [m[1]!, Number(m[2])]));
    } finally {
      client.disconnect();
    }
  };

  test("a session's request costs one Redis round trip (one script); a batch of five costs one too", async () => {
    const { token } = await createUserWithSession(own.services);
    await fetch(`${own.url}/trpc/auth.me`, { headers: { authorization: `Bearer ${token}` } });
    await commandStats(true);
    for (let i = 0; i < 20; i++) await fetch(`${own.url}/trpc/auth.me`, { headers: { authorization: `Bearer ${token}` } });
    const input = encodeURIComponent(JSON.stringify({ 0: null, 1: null, 2: null, 3: null, 4: null }));
    await fetch(`${own.url}/trpc/auth.me,auth.me,auth.me,auth.me,auth.me?batch=1&input=${input}`, { headers: { authorization: `Bearer ${token}` } });
    const stats = await commandStats();
    expect((stats.evalsha ?? 0) + (stats.eval ?? 0)).toBe(21);
    // Everything else ran inside those scripts (set/incrby/pttl/expire) or is this test's own reading.
    const topLevel = Object.keys(stats).filter((name) => !["evalsha", "eval", "set", "incrby", "pttl", "expire", "info", "config|resetstat"].includes(name));
    expect(topLevel).toEqual([]);
  });

  test("with Redis gone, budgets fall back to a per-process limiter: reads that need no Redis still answer", async () => {
    const { token } = await createUserWithSession(own.services);
    await redis.stop("kill");
    try {
      const res = await fetch(`${own.url}/trpc/auth.me`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).toBe(200);
      // The sign-in limits fail closed.
      const login = await fetch(`${own.url}/trpc/auth.login`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ email: "a@example.test", password: "whatever-password" }),
      });
      expect(login.status).toBe(503);
    } finally {
      await redis.start();
    }
  });
});
