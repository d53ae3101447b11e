import { afterAll, beforeAll, expect, test } from "bun:test";
import { createLogger } from "../../server/log";
import { STRONG_PASSWORD, uniqueEmail } from "../harness/accounts";
import { eventually, startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

let app: TestServer;
const lines: string[] = [];
const records = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);

beforeAll(async () => {
  app = await startTestServer({ log: createLogger({ level: "info", base: { service: "api" }, sink: (line) => lines.push(line) }) });
});
afterAll(() => app.close());

/** The request line the server wrote for the request with this id. */
async function requestLine(requestId: string) {
  return eventually(
    async () => records().find((r) => r.msg === "request" && r.requestId === requestId),
    (r) => r !== undefined,
    { what: `the request line of ${requestId}` },
  );
}

test("request lines carry the request id and who called: the user, and the API key when one was used", async () => {
  const { user, token } = await createUserWithSession(app.services);
  const bySession = await fetch(`${app.url}/trpc/auth.me`, { headers: { authorization: `Bearer ${token}`, "x-request-id": "req-session-1" } });
  expect(bySession.status).toBe(200);
  expect(await requestLine("req-session-1")).toMatchObject({ level: "info", service: "api", requestId: "req-session-1", userId: user.id, method: "GET", path: "/trpc/auth.me", status: 200 });

  const { id: apiKeyId, key } = await app.client({ token }).auth.apiKeys.create.mutate({ name: "logger", scopes: ["account:read"] });
  await fetch(`${app.url}/trpc/auth.me`, { headers: { authorization: `Bearer ${key}`, "x-request-id": "req-key-1" } });
  expect(await requestLine("req-key-1")).toMatchObject({ userId: user.id, apiKeyId });

  await fetch(`${app.url}/trpc/auth.me`, { headers: { "x-request-id": "req-anon-1" } });
  const anonymous = (await requestLine("req-anon-1"))!;
  expect(anonymous.status).toBe(401);
  expect(anonymous).not.toHaveProperty("userId");

  // The dashboard and file routes resolve their caller themselves; their lines name it too.
  await fetch(`${app.url}/admin/queues/api/queues`, { headers: { authorization: `Bearer ${token}`, "x-request-id": "req-board-1" } });
  expect(await requestLine("req-board-1")).toMatchObject({ userId: user.id, status: 403 });

  // Secrets sent by callers appear in no line.
  for (const secret of [token, key]) expect(lines.some((line) => line.includes(secret))).toBe(false);
});

test("a password sent to login never reaches the logs, whatever happens to the request", async () => {
  const email = uniqueEmail("log");
  await app.client().auth.register.mutate({ email, password: STRONG_PASSWORD, name: "Log Reader" });
  await app
    .client()
    .auth.login.mutate({ email, password: STRONG_PASSWORD })
    .catch(() => undefined);
  await fetch(`${app.url}/trpc/auth.login`, { method: "POST", headers: { "content-type": "application/json" }, body: `{"email":"${email}","password":"${STRONG_PASSWORD}"` });
  expect(lines.length).toBeGreaterThan(0);
  expect(lines.some((line) => line.includes(STRONG_PASSWORD))).toBe(false);
});
