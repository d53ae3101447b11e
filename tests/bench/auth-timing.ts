/**
 * Does the time an auth answer takes tell whether an account exists? And what
 * does authenticating cost? Runs the real app over HTTP on a scratch database.
 *
 *   node_modules/.bin/bun tests/bench/auth-timing.ts [samples]
 *
 * Prints medians and p90s (ms) for each pair; the pairs should match.
 */
import { users } from "../../db/schema";
import { testRun } from "../harness/env";
import { startTestServer } from "../harness/server";
import { uniqueEmail, STRONG_PASSWORD } from "../harness/accounts";

const samples = Number(process.argv[2] ?? 25);
// The harness's sandbox: a scratch database, Redis prefix and data folder, removed at the end.
await testRun.create();

const generous = { RATE_LIMIT_LOGIN_PER_IP: "100000", RATE_LIMIT_REGISTER_PER_IP: "100000", RATE_LIMIT_RESET_PER_IP: "100000", RATE_LIMIT_MAIL_PER_ACCOUNT: "100000", LOGIN_MAX_FAILURES: "100000" };
const app = await startTestServer({ env: generous });

function stats(times: number[]) {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return `median ${at(0.5).toFixed(1)}  p90 ${at(0.9).toFixed(1)}`;
}

/** Alternates the two calls so drift on the shared machine hits both alike. */
async function pair(label: string, a: [string, () => Promise<unknown>], b: [string, () => Promise<unknown>]) {
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < samples; i++) {
    for (const [call, into] of [
      [a[1], ta],
      [b[1], tb],
    ] as const) {
      const started = performance.now();
      await call().catch(() => {});
      into.push(performance.now() - started);
    }
  }
  console.log(`${label}\n  ${a[0].padEnd(28)} ${stats(ta)}\n  ${b[0].padEnd(28)} ${stats(tb)}`);
}

try {
  const client = app.client({ batch: false });
  const existing = uniqueEmail("bench");
  await client.auth.register.mutate({ email: existing, password: STRONG_PASSWORD, name: "Bench" });

  await pair(
    "login with a wrong password",
    ["existing account", () => client.auth.login.mutate({ email: existing, password: "wrong-password-1" })],
    ["unknown address", () => client.auth.login.mutate({ email: uniqueEmail("nobody"), password: "wrong-password-1" })],
  );
  await pair(
    "requestPasswordReset",
    ["existing account", () => client.auth.requestPasswordReset.mutate({ email: existing })],
    ["unknown address", () => client.auth.requestPasswordReset.mutate({ email: uniqueEmail("nobody") })],
  );
  await pair(
    "register",
    ["address already taken", () => client.auth.register.mutate({ email: existing, password: STRONG_PASSWORD, name: "Again" })],
    ["new address", () => client.auth.register.mutate({ email: uniqueEmail("fresh"), password: STRONG_PASSWORD, name: "New" })],
  );

  const { token } = await client.auth.login.mutate({ email: existing, password: STRONG_PASSWORD });
  await app.services.db.update(users).set({ status: "active" });
  const { key } = await app.client({ token }).auth.apiKeys.create.mutate({ name: "bench", scopes: ["account:read"] });
  const viaSession = app.client({ token, batch: false });
  const viaKey = app.client({ token: key, batch: false });
  await pair("auth.me (authentication cost)", ["session token", () => viaSession.auth.me.query()], ["API key", () => viaKey.auth.me.query()]);
} finally {
  await app.close();
  await testRun.destroy();
}
