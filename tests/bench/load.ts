/**
 * Load suite (not a test): the platform as real processes — the all-in-one
 * `server/main.ts` (API + workers) and optionally more `server/api.ts` — on
 * PostgreSQL, driven from outside with many distinct sessions:
 *
 * - `sessions` logged-in sessions across `accounts` accounts, each polling
 *   every `poll-ms` (jittered), alternating `compute.instances.list` and
 *   `energy.status`, spread over the API processes;
 * - a steady trickle of instance creates (and deletes, keeping two per
 *   account) on the real Docker engine, Stripe webhooks signed with the
 *   official library's test helper (tests/harness/stripe.ts) and the metering
 *   worker every 5 s on whatever runs.
 *
 * Reports throughput, latency percentiles by kind, errors (and 429s
 * separately), the PostgreSQL connection peak per process (pool and listener,
 * from pg_stat_activity) against DATABASE_POOL_MAX, and RSS over time.
 *
 * Run: npm run bench:load -- [--duration 60] [--sessions 1000] [--accounts 100] [--poll-ms 2000]
 *        [--create-every-ms 3000] [--create-accounts 10] [--webhook-every-ms 1000] [--api-processes 1]
 *        [--pool-max 10] [--log-level info]
 *
 * Its own database, Redis prefix, Docker namespace and data folder, removed at the end.
 */
import { parseArgs } from "node:util";
import postgres from "postgres";
import { users } from "../../db/schema";
import { loadConfig } from "../../server/config";
import { createLogger } from "../../server/log";
import { createServices } from "../../server/services";
import { defineSandbox } from "../harness/sandbox";
import { startStripeStandIn } from "../harness/stripe";
import { connectionsByProcess, latencySummary, rssMb, startPlatform, type ConnectionCount, type PlatformProcess } from "./processes";

const { values: args } = parseArgs({
  options: {
    duration: { type: "string", default: "60" },
    sessions: { type: "string", default: "1000" },
    accounts: { type: "string", default: "100" },
    "poll-ms": { type: "string", default: "2000" },
    "create-every-ms": { type: "string", default: "3000" },
    "create-accounts": { type: "string", default: "10" },
    "webhook-every-ms": { type: "string", default: "1000" },
    "api-processes": { type: "string", default: "1" },
    "pool-max": { type: "string", default: "10" },
    "log-level": { type: "string", default: "info" },
  },
});
const durationS = Number(args.duration);
const sessionCount = Number(args.sessions);
const accountCount = Number(args.accounts);
const pollMs = Number(args["poll-ms"]);
const createEveryMs = Number(args["create-every-ms"]);
const createAccounts = Math.min(Number(args["create-accounts"]), accountCount);
const webhookEveryMs = Number(args["webhook-every-ms"]);
const apiProcesses = Math.max(1, Number(args["api-processes"]));
const poolMax = Number(args["pool-max"]);

const sandbox = defineSandbox("bench");
await sandbox.create();
const stripe = await startStripeStandIn();
const env: Record<string, string> = {
  ...sandbox.env,
  ...stripe.env,
  LOG_LEVEL: args["log-level"]!,
  DATABASE_POOL_MAX: String(poolMax),
  METERING_INTERVAL_MS: "5000",
  HOST_CPU_OVERCOMMIT: "1000",
  HOST_MEMORY_OVERCOMMIT: "100",
};
const admin = postgres(sandbox.adminDatabaseUrl, { max: 1, onnotice: () => {} });
const processes: PlatformProcess[] = [];
const log = (line: string) => process.stderr.write(`load: ${line}\n`);

try {
  // Accounts and sessions, written directly (the login flow is not what is measured here).
  log(`creating ${accountCount} accounts and ${sessionCount} sessions`);
  const setup = await createServices(loadConfig({ ...env, LOG_LEVEL: "error" }), { log: createLogger({ level: "error" }) });
  const passwordHash = await Bun.password.hash("load-test-password-1", { algorithm: "argon2id", memoryCost: 4096, timeCost: 1 });
  const accounts = await setup.db
    .insert(users)
    .values(Array.from({ length: accountCount }, (_, i) => ({ email: `load${i}@example.test`, name: `Load ${i}`, passwordHash, status: "active" as const, emailVerifiedAt: new Date() })))
    .returning({ id: users.id });
  const tokens: string[] = [];
  for (let i = 0; i < sessionCount; i++) tokens.push((await setup.sessions.create(accounts[i % accountCount]!.id, { ip: "127.0.0.1", userAgent: "bench:load" })).token);
  await setup.close();

  // Their stdout (the request log at info) goes to /dev/null: written, as in production, but not shown.
  processes.push(await startPlatform("server/main.ts", env, { stdout: "ignore" }));
  for (let i = 1; i < apiProcesses; i++) processes.push(await startPlatform("server/api.ts", env, { stdout: "ignore" }));
  const mainPid = processes[0]!.pid;
  await Bun.sleep(5000);
  const idleRss = rssMb(mainPid);
  log(`all-in-one process idle: ${idleRss} MB RSS; ${apiProcesses} API process(es); running ${durationS} s`);

  const latencies: Record<string, number[]> = { list: [], energy: [], create: [], delete: [], webhook: [] };
  const failures: Record<string, number> = {};
  let tooMany = 0;
  const fail = (what: string) => (failures[what] = (failures[what] ?? 0) + 1);
  const started = performance.now();
  const end = started + durationS * 1000;
  let completed = 0;

  /** Times one request to its last byte; the body when it succeeded, else null. */
  async function timed(kind: string, request: () => Promise<Response>): Promise<string | null> {
    const t0 = performance.now();
    try {
      const response = await request();
      const body = await response.text();
      const ms = performance.now() - t0;
      completed++;
      if (response.status === 429) tooMany++;
      else if (response.status >= 300) fail(`${kind} ${response.status}`);
      else latencies[kind]!.push(ms);
      return response.status < 300 ? body : null;
    } catch (error) {
      fail(`${kind} ${(error as Error).name}`);
      return null;
    }
  }
  const urlOf = (i: number) => processes[i % processes.length]!.url;
  const get = (i: number, path: string, token: string) => fetch(`${urlOf(i)}/trpc/${path}`, { headers: { authorization: `Bearer ${token}` } });
  const post = (i: number, path: string, token: string, body: unknown) =>
    fetch(`${urlOf(i)}/trpc/${path}`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify(body) });

  // The pollers: one loop per session, each on its own schedule.
  const LIST = "compute.instances.list?input=%7B%7D";
  const pollers = tokens.map(async (token, i) => {
    let next = started + Math.random() * pollMs;
    for (let n = 0; ; n++) {
      const wait = next - performance.now();
      if (wait > 0) await Bun.sleep(wait);
      if (performance.now() >= end) return;
      await timed(n % 2 ? "energy" : "list", () => get(i, n % 2 ? "energy.status" : LIST, token));
      next += pollMs * (0.9 + Math.random() * 0.2);
    }
  });

  // Creates (and deletes beyond two per account) by the first `createAccounts` accounts' sessions.
  const creator = (async () => {
    const owned = new Map<number, string[]>();
    for (let n = 0; performance.now() + createEveryMs < end; n++) {
      await Bun.sleep(createEveryMs);
      const account = n % createAccounts;
      const token = tokens[account]!;
      const created = await timed("create", () => post(n, "compute.instances.create", token, { name: `load-${n}`, planId: "nano", imageId: "busybox" }));
      if (!created) continue;
      const { result } = JSON.parse(created) as { result: { data: { instance: { id: string } } } };
      const mine = owned.get(account) ?? [];
      mine.push(result.data.instance.id);
      owned.set(account, mine);
      if (mine.length > 2) await timed("delete", () => post(n, "compute.instances.delete", token, { id: mine.shift() }));
    }
  })();

  const webhooks = (async () => {
    for (let n = 0; performance.now() + webhookEveryMs < end; n++) {
      await Bun.sleep(webhookEveryMs);
      const delivery =
        n % 2
          ? await stripe.signedEvent("payment_intent.succeeded", { id: `pi_load${n}`, object: "payment_intent", amount: 1000, currency: "usd", metadata: {}, livemode: false })
          : await stripe.signedEvent("invoice.created", { id: `in_load${n}`, object: "invoice" });
      await timed("webhook", () =>
        fetch(`${urlOf(n)}/webhooks/stripe`, { method: "POST", headers: { "content-type": "application/json", "stripe-signature": delivery.header }, body: delivery.payload }),
      );
    }
  })();

  // Once a second: throughput, RSS, connections.
  const timeline: { s: number; requests: number; rss: (number | null)[] }[] = [];
  const connectionPeak = new Map<number, ConnectionCount>();
  let lastCompleted = 0;
  const sampler = (async () => {
    for (let s = 1; performance.now() < end; s++) {
      await Bun.sleep(started + s * 1000 - performance.now());
      timeline.push({ s, requests: completed - lastCompleted, rss: processes.map((p) => rssMb(p.pid)) });
      lastCompleted = completed;
      for (const [pid, count] of await connectionsByProcess(admin, sandbox.databaseName)) {
        const peak = connectionPeak.get(pid) ?? { pool: 0, listen: 0, other: 0 };
        connectionPeak.set(pid, { pool: Math.max(peak.pool, count.pool), listen: Math.max(peak.listen, count.listen), other: Math.max(peak.other, count.other) });
      }
      if (s % 60 === 0) log(`${s} s: ${timeline.at(-1)!.requests} req/s, RSS ${timeline.at(-1)!.rss.join(" / ")} MB`);
    }
  })();

  await Promise.all([...pollers, creator, webhooks, sampler]);
  const elapsedS = (performance.now() - started) / 1000;

  const polled = [...latencies.list!, ...latencies.energy!];
  const rssOf = (i: number) => timeline.map((t) => t.rss[i]).filter((v): v is number => v !== null);
  const minuteAverage = (values: number[], from: number, to: number) => {
    const slice = values.slice(from, to);
    return slice.length ? Math.round((slice.reduce((a, b) => a + b, 0) / slice.length) * 10) / 10 : null;
  };
  const report = {
    command: `npm run bench:load -- ${process.argv.slice(2).join(" ")}`.trim(),
    machine: { cpus: navigator.hardwareConcurrency },
    load: { durationS: Math.round(elapsedS), sessions: sessionCount, accounts: accountCount, pollMs, createEveryMs, webhookEveryMs, apiProcesses, poolMax, logLevel: args["log-level"] },
    throughputPerS: Math.round(completed / elapsedS),
    latencyMs: { polling: latencySummary(polled), ...Object.fromEntries(Object.entries(latencies).map(([kind, values]) => [kind, latencySummary(values)])) },
    errors: failures,
    tooManyRequests: tooMany,
    postgresConnectionsPeak: processes.map((p) => ({ process: p.entry, pid: p.pid, ...(connectionPeak.get(p.pid) ?? { pool: 0, listen: 0, other: 0 }), poolMax })),
    rssMb: processes.map((p, i) => {
      const values = rssOf(i);
      return {
        process: p.entry,
        idleBeforeLoad: i === 0 ? idleRss : null,
        firstMinute: minuteAverage(values, 0, 60),
        lastMinute: minuteAverage(values, Math.max(0, values.length - 60), values.length),
        max: values.length ? Math.max(...values) : null,
        perMinute: Array.from({ length: Math.ceil(values.length / 60) }, (_, m) => minuteAverage(values, m * 60, m * 60 + 60)),
      };
    }),
  };
  const errors = Object.values(failures).reduce((a, b) => a + b, 0);
  const targets = {
    "0 errors": errors === 0,
    "no 429": tooMany === 0,
    "polling p95 < 50 ms": report.latencyMs.polling.p95 < 50,
    "pool connections <= pool max (each process)": report.postgresConnectionsPeak.every((p) => p.pool <= poolMax),
    "RSS flat (last minute within 10% of the first)": report.rssMb.every((r) => r.firstMinute !== null && r.lastMinute !== null && r.lastMinute <= r.firstMinute * 1.1),
  };
  console.log(JSON.stringify({ ...report, targets }, null, 2));
} finally {
  await Promise.all(processes.map((p) => p.stop().catch(() => null)));
  await admin.end({ timeout: 5 });
  await stripe.close();
  const { containersRemoved } = await sandbox.destroy();
  log(`cleaned up (${containersRemoved} containers removed)`);
}
