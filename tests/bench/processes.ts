import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type postgres from "postgres";

/**
 * For benchmarks that run the platform as real OS processes (the shape it runs
 * in production) and watch them from outside: memory from /proc, PostgreSQL
 * connections from pg_stat_activity joined to the sockets each process owns.
 */

export const projectRoot = resolve(import.meta.dir, "../..");

export type PlatformProcess = { pid: number; url: string; entry: string; stop(): Promise<number | null> };

/** A TCP port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const probe = Bun.serve({ port: 0, fetch: () => new Response() });
  const port = probe.port!;
  await probe.stop(true);
  return port;
}

/** `bun <entry>` (server/main.ts, server/api.ts) on a free port, once it answers /health. */
export async function startPlatform(entry: string, env: Record<string, string>, opts: { stdout?: "inherit" | "ignore" } = {}): Promise<PlatformProcess> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = Bun.spawn([process.execPath, entry], {
    cwd: projectRoot,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root", ...env, PORT: String(port) },
    stdout: opts.stdout ?? "inherit",
    stderr: "inherit",
  });
  const deadline = Date.now() + 60_000;
  while (
    (await fetch(`${url}/health`).then(
      (r) => r.status,
      () => 0,
    )) !== 200
  ) {
    if (child.exitCode !== null) throw new Error(`${entry} exited with ${child.exitCode} before answering`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`${entry} did not answer /health on port ${port}`);
    }
    await Bun.sleep(100);
  }
  return {
    pid: child.pid,
    url,
    entry,
    async stop() {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      const code = await child.exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Resident memory of a process in MB (VmRSS), or null once it is gone. */
export function rssMb(pid: number): number | null {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Math.round(Number(match[1]) / 102.4) / 10 : null;
  } catch {
    return null;
  }
}

export type ConnectionCount = { pool: number; listen: number; other: number };

/**
 * PostgreSQL connections to `database`, by owning process and kind: the pool
 * (application_name `sahary`), the credential cache's listener
 * (`sahary-listen`) and anything else. Sockets are matched to processes
 * through `ss` (client port → pid).
 */
export async function connectionsByProcess(sql: postgres.Sql, database: string): Promise<Map<number, ConnectionCount>> {
  const rows = await sql<{ client_port: number; application_name: string }[]>`
    select client_port, application_name from pg_stat_activity where datname = ${database} and client_port is not null`;
  const owners = new Map<number, number>();
  const ss = Bun.spawnSync(["ss", "-tnpH", "state", "established", "( dport = :5432 )"]);
  for (const line of ss.stdout.toString().split("\n")) {
    const match = /:(\d+)\s+\S+:5432\s+users:\(\("[^"]*",pid=(\d+)/.exec(line);
    if (match) owners.set(Number(match[1]), Number(match[2]));
  }
  const byProcess = new Map<number, ConnectionCount>();
  for (const row of rows) {
    const pid = owners.get(row.client_port) ?? 0;
    const count = byProcess.get(pid) ?? { pool: 0, listen: 0, other: 0 };
    if (row.application_name === "sahary") count.pool++;
    else if (row.application_name === "sahary-listen") count.listen++;
    else count.other++;
    byProcess.set(pid, count);
  }
  return byProcess;
}

const percentile = (sorted: Float64Array | number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! : Number.NaN);

/** Count, p50, p95, p99 and max of latencies in ms (rounded to 0.1 ms). */
export function latencySummary(values: number[]) {
  const sorted = Float64Array.from(values).sort();
  const round = (ms: number) => Math.round(ms * 10) / 10;
  return { n: sorted.length, p50: round(percentile(sorted, 50)), p95: round(percentile(sorted, 95)), p99: round(percentile(sorted, 99)), max: round(sorted.at(-1) ?? Number.NaN) };
}

export const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length % 2 ? sorted[(sorted.length - 1) / 2]! : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
};
