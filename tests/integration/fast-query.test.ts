import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { fetchRequestHandler } from "@trpc/server/adapters/fetch";
import { Hono } from "hono";
import { fastQueries } from "../../server/fast-query";
import { appRouter } from "../../server/router";
import { createContext } from "../../server/trpc";
import { startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

/**
 * The short way for single GET queries (server/fast-query.ts) answers exactly
 * as tRPC's own fetch adapter does: same status, body (error shapes included),
 * content type, `vary` and cookies, for successes and for every kind of
 * refusal; and it leaves everything else to the full handler.
 */

let app: TestServer;
let verified: { token: string };
let unverified: { token: string };
let computeKey: string;

beforeAll(async () => {
  app = await startTestServer();
  verified = await createUserWithSession(app.services);
  unverified = await createUserWithSession(app.services, { status: "unverified" });
  computeKey = (await app.client({ token: verified.token }).auth.apiKeys.create.mutate({ name: "reader", scopes: ["compute:read"] })).key;
});
afterAll(async () => {
  await app.close();
});

/** What tRPC's fetch adapter answers to the same request, with the same context. */
function reference(req: Request) {
  return fetchRequestHandler({
    endpoint: "/trpc",
    req,
    router: appRouter,
    createContext: ({ req, resHeaders }) =>
      createContext(app.services, { headers: req.headers, resHeaders, request: { requestId: req.headers.get("x-request-id")!, ip: null, userAgent: null }, cost: 1 }),
  });
}

async function observed(response: Response) {
  return {
    status: response.status,
    contentType: response.headers.get("content-type"),
    vary: response.headers.get("vary"),
    cookies: response.headers.getSetCookie(),
    body: await response.json(),
  };
}

const input = (value: unknown) => `?input=${encodeURIComponent(JSON.stringify(value))}`;

const cases: Array<[string, string, () => Record<string, string>]> = [
  ["the signed-in user", "auth.me", () => ({ authorization: `Bearer ${verified.token}` })],
  ["an anonymous caller", "auth.me", () => ({})],
  ["a garbage token", "auth.me", () => ({ authorization: "Bearer nope" })],
  ["a list with input", `compute.instances.list${input({ limit: 5 })}`, () => ({ authorization: `Bearer ${verified.token}` })],
  ["a list without input", "compute.instances.list", () => ({ authorization: `Bearer ${verified.token}` })],
  ["invalid input", `compute.instances.list${input({ limit: 0, state: "melted" })}`, () => ({ authorization: `Bearer ${verified.token}` })],
  ["an unknown key in the input", `compute.instances.list${input({ limit: 5, extra: true })}`, () => ({ authorization: `Bearer ${verified.token}` })],
  ["an unverified account", "compute.instances.list", () => ({ authorization: `Bearer ${unverified.token}` })],
  ["an API key without the scope", "auth.me", () => ({ authorization: `Bearer ${computeKey}` })],
  ["an API key with the scope", "compute.instances.list", () => ({ authorization: `Bearer ${computeKey}` })],
  ["someone else's instance", `compute.instances.get${input({ id: crypto.randomUUID() })}`, () => ({ authorization: `Bearer ${verified.token}` })],
  ["a dead cookie (cleared)", "auth.me", () => ({ cookie: `sahary_session=${"a".repeat(52)}` })],
  ["a cookie from a foreign origin", "auth.me", () => ({ cookie: `sahary_session=${verified.token}`, origin: "https://evil.test" })],
  // These are left to the full handler.
  ["malformed input", "auth.me?input=%7B", () => ({ authorization: `Bearer ${verified.token}` })],
  ["a batch", `auth.me,compute.instances.list?batch=1&input=${encodeURIComponent("{}")}`, () => ({ authorization: `Bearer ${verified.token}` })],
  ["a mutation by GET", "auth.logout", () => ({ authorization: `Bearer ${verified.token}` })],
  ["an unknown procedure", "auth.nothing", () => ({ authorization: `Bearer ${verified.token}` })],
];

describe("single GET queries", () => {
  for (const [what, path, headers] of cases) {
    test(`answer as tRPC's fetch adapter does: ${what}`, async () => {
      const requestId = crypto.randomUUID();
      const init = { headers: { ...headers(), "x-request-id": requestId } };
      const fast = await observed(await fetch(`${app.url}/trpc/${path}`, init));
      const full = await observed(await reference(new Request(`http://127.0.0.1/trpc/${path}`, init)));
      // The app's edge middleware adds `Origin` to every response's `vary` (CORS); the adapter alone does not.
      expect({ ...fast, vary: fast.vary?.replace(/, Origin$/, "") ?? null }).toEqual(full);
    });
  }

  test("take the short way only for one query by GET; everything else reaches the full handler", async () => {
    const probe = new Hono();
    probe.get("/trpc/*", fastQueries({ endpoint: "/trpc", router: appRouter, createContext: async () => ({}) as never, onError: () => {} }));
    probe.all("/trpc/*", (c) => c.text("full handler"));
    const reached = async (path: string, headers: Record<string, string> = {}) => (await (await probe.request(`/trpc/${path}`, { headers })).text()) === "full handler";

    for (const path of ["auth.me", `compute.instances.list${input({})}`, "energy.status"]) expect(await reached(path)).toBe(false);
    for (const [path, headers] of [
      ["auth.me,auth.me?batch=1", {}],
      ["auth.me?batch=1&input=%7B%7D", {}],
      ["auth.logout", {}],
      ["auth.nothing", {}],
      ["auth.me?input=%7B", {}],
      ["auth%2Eme", {}],
      ["auth.me", { "trpc-accept": "application/jsonl" }],
    ] as const) {
      expect(await reached(path, headers)).toBe(true);
    }
  });
});
