/**
 * Time from the start command to the first `GET /health` 200, on the embedded
 * database (cold: new data folder; warm: existing folder) and on PostgreSQL.
 *   bun tests/bench/startup.ts [runs]
 * Needs PostgreSQL and Redis on their default local addresses.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Redis } from "ioredis";
import postgres from "postgres";

const root = resolve(import.meta.dir, "../..");
const runs = Number(process.argv[2] ?? 5);
const admin = postgres("postgres://postgres@127.0.0.1:5432/postgres", { max: 1, onnotice: () => {} });
const redisPrefix = `bench-startup-${process.pid}`;

async function freePort(): Promise<number> {
  const probe = Bun.serve({ port: 0, fetch: () => new Response() });
  const port = probe.port!;
  await probe.stop(true);
  return port;
}

async function timeToHealth(command: string[], env: Record<string, string>): Promise<number> {
  const port = await freePort();
  const started = performance.now();
  const child = Bun.spawn(command, { cwd: root, env: { ...process.env, PORT: String(port), LOG_LEVEL: "warn", REDIS_PREFIX: redisPrefix, ...env }, stdout: "ignore", stderr: "inherit" });
  try {
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${port}/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return performance.now() - started;
      if (performance.now() - started > 60_000) throw new Error("no /health within 60 s");
      await Bun.sleep(10);
    }
  } finally {
    child.kill("SIGTERM");
    await child.exited;
  }
}

const summarize = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return `median ${Math.round(sorted[Math.floor(sorted.length / 2)]!)} ms (min ${Math.round(sorted[0]!)}, max ${Math.round(sorted.at(-1)!)}, n=${xs.length})`;
};

const scenarios: Array<[string, () => Promise<number>]> = [
  [
    "npm start, embedded PGlite, new data folder",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "sahary-bench-"));
      try {
        return await timeToHealth(["npm", "start", "--silent"], { DATA_DIR: dir });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  ],
  [
    "npm start, embedded PGlite, existing data folder",
    (() => {
      const dir = mkdtempSync(join(tmpdir(), "sahary-bench-warm-"));
      return () => timeToHealth(["npm", "start", "--silent"], { DATA_DIR: dir });
    })(),
  ],
  [
    "npm start, DATABASE_URL (PostgreSQL, migrated)",
    (() => {
      const name = `sahary_bench_${Date.now()}`;
      return async () => {
        await admin.unsafe(`create database "${name}"`).catch(() => {});
        return timeToHealth(["npm", "start", "--silent"], { DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${name}` });
      };
    })(),
  ],
];

for (const [label, run] of scenarios) {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) times.push(await run());
  console.log(`${label}: ${summarize(times)}`);
}
const leftovers = await admin`select datname from pg_database where datname like 'sahary_bench_%'`;
for (const { datname } of leftovers) await admin.unsafe(`drop database "${datname}" with (force)`);
await admin.end();
// The started processes registered their job schedules under the bench's prefix.
const redis = new Redis("redis://127.0.0.1:6379");
let cursor = "0";
do {
  const [next, keys] = await redis.scan(cursor, "MATCH", `${redisPrefix}:*`, "COUNT", 1000);
  if (keys.length) await redis.unlink(...keys);
  cursor = next;
} while (cursor !== "0");
redis.disconnect();
