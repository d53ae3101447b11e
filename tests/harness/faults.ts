import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import Docker from "dockerode";
import { Redis } from "ioredis";
import postgres from "postgres";
import { testRun } from "./env";
import { freePort, processEnv, projectRoot } from "./process";
import { eventually } from "./server";

/**
 * Real processes to break on purpose: the platform's own entry points as
 * child processes, and private instances of Redis, PostgreSQL and the Docker
 * engine that a test may stop, kill and restart. The machine's shared
 * services are never touched: every instance here lives in its own temporary
 * folder on its own port or socket and is removed by `destroy`.
 */

const bun = process.execPath;

export type LogLine = { level?: string; msg?: string; [key: string]: unknown };

/** One of the platform's entry points running as a child process. */
export type PlatformProcess = {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  pid: number;
  /** The API's base URL (entry points that serve HTTP only). */
  url: string;
  port: number;
  /** JSON log lines printed so far (stdout); other output is kept as `{ msg: raw }`. */
  logs: LogLine[];
  stderr(): string;
  /** Resolves with the exit code (or the signal's number + 128). */
  exited: Promise<number>;
  alive(): boolean;
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<number>;
  /** Waits for a log line matching `match` (after `since` lines). */
  waitForLog(match: (line: LogLine) => boolean, opts?: { timeoutMs?: number; since?: number; what?: string }): Promise<LogLine>;
};

export type PlatformEntry = "server/main.ts" | "server/api.ts" | "workers/main.ts";

/**
 * Starts an entry point bound to this run's sandbox (overridden by `env`) and
 * waits until it is up: `/health` answers for processes that serve HTTP, the
 * "workers started" line for a worker process.
 */
export async function startPlatform(entry: PlatformEntry, env: Record<string, string> = {}, opts: { readyTimeoutMs?: number } = {}): Promise<PlatformProcess> {
  const port = await freePort();
  const proc = Bun.spawn([bun, entry], {
    cwd: projectRoot,
    env: processEnv({ PORT: String(port), SHUTDOWN_TIMEOUT_MS: "5000", ...env }),
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const logs: LogLine[] = [];
  let stderr = "";
  void (async () => {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of proc.stdout) {
      pending += decoder.decode(chunk, { stream: true });
      for (let newline = pending.indexOf("\n"); newline >= 0; newline = pending.indexOf("\n")) {
        const raw = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        try {
          logs.push(JSON.parse(raw) as LogLine);
        } catch {
          logs.push({ msg: raw });
        }
      }
    }
  })();
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) stderr += decoder.decode(chunk, { stream: true });
  })();
  let done = false;
  const exited = proc.exited.then((code) => {
    done = true;
    return code;
  });
  const child: PlatformProcess = {
    proc,
    pid: proc.pid,
    port,
    url: `http://127.0.0.1:${port}`,
    logs,
    stderr: () => stderr,
    exited,
    alive: () => !done,
    kill: (signal = "SIGKILL") => {
      if (!done) proc.kill(signal);
    },
    async stop(graceMs = 10_000) {
      if (!done) proc.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    async waitForLog(match, { timeoutMs = 30_000, since = 0, what = "a log line" } = {}) {
      const found = await eventually(
        async () => {
          if (done) throw new Error(`${entry} exited while waiting for ${what}: ${stderr.slice(-2000)} ${JSON.stringify(logs.slice(-5))}`);
          return logs.slice(since).find(match);
        },
        (line) => line !== undefined,
        { timeoutMs, intervalMs: 50, what: `${entry}: ${what}` },
      );
      return found!;
    },
  };
  try {
    if (entry === "workers/main.ts") {
      await child.waitForLog((l) => l.msg === "workers started", { timeoutMs: opts.readyTimeoutMs ?? 60_000, what: "workers started" });
    } else {
      await eventually(
        async () => {
          if (done) throw new Error(`${entry} exited during start-up: ${stderr.slice(-2000)} ${JSON.stringify(logs.slice(-5))}`);
          return fetch(`${child.url}/health`).then(
            (r) => r.status,
            () => 0,
          );
        },
        (status) => status === 200,
        { timeoutMs: opts.readyTimeoutMs ?? 60_000, intervalMs: 100, what: `${entry} /health` },
      );
    }
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  return child;
}

/**
 * A database of its own on the machine's PostgreSQL (this run's name with a
 * suffix), for a test whose processes must not share rows with the rest of
 * the run (their own hosts, say). The platform migrates it when it starts.
 */
export async function scratchDatabase(suffix: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `${testRun.databaseName}_${suffix}`;
  const admin = postgres(testRun.adminDatabaseUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database "${name}"`);
  } finally {
    await admin.end({ timeout: 5 });
  }
  return {
    url: Object.assign(new URL(testRun.adminDatabaseUrl), { pathname: `/${name}` }).toString(),
    async drop() {
      const again = postgres(testRun.adminDatabaseUrl, { max: 1, onnotice: () => {} });
      try {
        await again.unsafe(`drop database if exists "${name}" with (force)`);
      } finally {
        await again.end({ timeout: 5 });
      }
    },
  };
}

/** A folder under the system temp dir, short enough for unix socket paths. */
function scratchDir(label: string): string {
  return mkdtempSync(join(tmpdir(), `sf-${label}-`));
}

async function waitExit(proc: Subprocess, ms: number): Promise<void> {
  const timer = setTimeout(() => proc.kill("SIGKILL"), ms);
  await proc.exited;
  clearTimeout(timer);
}

// ─── Redis ────────────────────────────────────────────────────────────────

export type OwnRedis = {
  url: string;
  port: number;
  /** Stops the server: "term" saves and exits cleanly, "kill" is SIGKILL (the AOF keeps what was acknowledged). */
  stop(how?: "term" | "kill"): Promise<void>;
  start(): Promise<void>;
  restart(how?: "term" | "kill"): Promise<void>;
  /** A plain client (for assertions); the caller disconnects it. */
  client(): Redis;
  destroy(): Promise<void>;
};

/**
 * A private redis-server on a free port, persisting to an append-only file in
 * its own folder (fsync on every write, so a kill loses nothing acknowledged),
 * with the eviction policy BullMQ needs unless told otherwise.
 */
export async function startRedis(opts: { maxmemoryPolicy?: string; maxmemory?: string } = {}): Promise<OwnRedis> {
  const dir = scratchDir("redis");
  const port = await freePort();
  const args = [
    "redis-server",
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--dir",
    dir,
    "--appendonly",
    "yes",
    "--appendfsync",
    "always",
    "--save",
    "",
    "--maxmemory-policy",
    opts.maxmemoryPolicy ?? "noeviction",
    ...(opts.maxmemory ? ["--maxmemory", opts.maxmemory] : []),
    "--logfile",
    join(dir, "redis.log"),
  ];
  let proc: Subprocess | null = null;
  const url = `redis://127.0.0.1:${port}`;
  const ping = async () => {
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    probe.on("error", () => {});
    try {
      await probe.connect();
      return (await probe.ping()) === "PONG";
    } catch {
      return false;
    } finally {
      probe.disconnect();
    }
  };
  const start = async () => {
    proc = Bun.spawn(args, { stdout: "ignore", stderr: "pipe" });
    await eventually(
      async () => {
        if (proc!.exitCode !== null) throw new Error(`redis-server exited: ${readFileSync(join(dir, "redis.log"), "utf8").slice(-1000)}`);
        return ping();
      },
      (ok) => ok,
      { timeoutMs: 15_000, intervalMs: 50, what: `redis-server on ${port}` },
    );
  };
  const stop = async (how: "term" | "kill" = "term") => {
    if (!proc) return;
    proc.kill(how === "term" ? "SIGTERM" : "SIGKILL");
    await waitExit(proc, 10_000);
    proc = null;
  };
  await start();
  return {
    url,
    port,
    stop,
    start,
    async restart(how = "term") {
      await stop(how);
      await start();
    },
    client: () => {
      const client = new Redis(url, { maxRetriesPerRequest: 1 });
      client.on("error", () => {});
      return client;
    },
    async destroy() {
      await stop("kill");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ─── PostgreSQL ───────────────────────────────────────────────────────────

/** The newest PostgreSQL server binaries installed (Debian layout: /usr/lib/postgresql/<major>/bin). */
const PG_BIN = (() => {
  const majors = Bun.spawnSync(["ls", "/usr/lib/postgresql"])
    .stdout.toString()
    .split(/\s+/)
    .filter((v) => /^\d+$/.test(v))
    .map(Number)
    .sort((a, b) => b - a);
  return `/usr/lib/postgresql/${majors[0] ?? 15}/bin`;
})();

export type OwnPostgres = {
  port: number;
  /** URL of a database on this cluster (default `postgres`). */
  url(database?: string): string;
  createDatabase(name: string): Promise<string>;
  /** `fast` disconnects clients and shuts down cleanly; `immediate` is a crash (recovery on start). */
  stop(mode?: "fast" | "immediate"): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
};

/**
 * A private PostgreSQL cluster (the newest server installed) in a temporary folder owned by the
 * `postgres` user (initdb refuses to run as root), listening on 127.0.0.1 on a
 * free port with trust authentication.
 */
export async function startPostgres(): Promise<OwnPostgres> {
  const dir = scratchDir("pg");
  const data = join(dir, "data");
  const port = await freePort();
  const owner = postgresUser();
  chownSync(dir, owner.uid, owner.gid);
  chmodSync(dir, 0o700);
  const asPostgres = (cmd: string[]) => (process.getuid?.() === 0 ? ["runuser", "-u", "postgres", "--", ...cmd] : cmd);
  const run = async (cmd: string[]) => {
    const proc = Bun.spawn(asPostgres(cmd), { stdout: "pipe", stderr: "pipe", cwd: dir });
    const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    if (code !== 0) throw new Error(`${cmd.join(" ")} failed (${code}): ${err || out}`);
  };
  await run([`${PG_BIN}/initdb`, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale", "C"]);
  const options = `-p ${port} -c listen_addresses=127.0.0.1 -k ${dir} -c fsync=off -c full_page_writes=off -c max_connections=100`;
  const start = async () => {
    await run([`${PG_BIN}/pg_ctl`, "-D", data, "-o", options, "-l", join(dir, "postgres.log"), "-w", "-t", "30", "start"]);
  };
  const stop = async (mode: "fast" | "immediate" = "fast") => {
    await run([`${PG_BIN}/pg_ctl`, "-D", data, "-m", mode, "-w", "-t", "30", "stop"]);
  };
  const url = (database = "postgres") => `postgres://postgres@127.0.0.1:${port}/${database}`;
  await start();
  return {
    port,
    url,
    async createDatabase(name) {
      const admin = postgres(url(), { max: 1, onnotice: () => {} });
      try {
        await admin.unsafe(`create database "${name}"`);
      } finally {
        await admin.end({ timeout: 5 });
      }
      return url(name);
    },
    stop,
    start,
    async destroy() {
      await stop("immediate").catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function postgresUser(): { uid: number; gid: number } {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("postgres:"));
  if (!line) throw new Error("no postgres user on this machine: install PostgreSQL 15 (apt-get install postgresql-15)");
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

// ─── Docker engine ────────────────────────────────────────────────────────

export type OwnDockerd = {
  socketPath: string;
  /** `DOCKER_HOSTS` / `DOCKER_SOCKET` values pointing the platform at this engine. */
  env: Record<string, string>;
  docker: Docker;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Copies an image from the machine's engine into this one. */
  loadImage(reference: string): Promise<void>;
  destroy(): Promise<void>;
};

/**
 * A private Docker engine: its own data root, exec root, pid file, socket and
 * config file (the machine's /etc/docker/daemon.json is not read), running in
 * a network namespace of its own. The namespace matters: dockerd manages
 * interfaces by name, and a second one on the host deletes the machine
 * engine's `docker0` (at start-up with `--bridge none`, and when restarted on
 * its data root) — seen here, it broke every default-network container on the
 * machine. Inside its namespace its bridges, routes and iptables rules touch
 * nothing else; its socket and cgroups are on the host as usual.
 */
export async function startDockerd(opts: { hostName?: string } = {}): Promise<OwnDockerd> {
  const dir = scratchDir("dockerd");
  const socketPath = join(dir, "d.sock");
  const netns = `sf-${Math.random().toString(36).slice(2, 10)}`;
  run(["ip", "netns", "add", netns]);
  run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"]);
  writeFileSync(join(dir, "daemon.json"), JSON.stringify({ "default-address-pools": [{ base: "10.99.0.0/16", size: 24 }] }));
  mkdirSync(join(dir, "data"));
  mkdirSync(join(dir, "exec"));
  // nsenter switches the network namespace only: `ip netns exec` also remounts /sys, hiding the cgroup mounts dockerd needs.
  const args = [
    "nsenter",
    `--net=/run/netns/${netns}`,
    "dockerd",
    "--config-file",
    join(dir, "daemon.json"),
    "--data-root",
    join(dir, "data"),
    "--exec-root",
    join(dir, "exec"),
    "--pidfile",
    join(dir, "docker.pid"),
    "-H",
    `unix://${socketPath}`,
    "--iptables=false",
    "--ip-masq=false",
    "--shutdown-timeout",
    "5",
  ];
  const docker = new Docker({ socketPath });
  let proc: Subprocess | null = null;
  const start = async () => {
    proc = Bun.spawn(args, { stdout: "ignore", stderr: Bun.file(join(dir, "dockerd.log")) });
    await eventually(
      async () => {
        if (proc!.exitCode !== null) throw new Error(`dockerd exited: ${readFileSync(join(dir, "dockerd.log"), "utf8").slice(-2000)}`);
        return docker.ping().then(
          () => true,
          () => false,
        );
      },
      (ok) => ok,
      { timeoutMs: 60_000, intervalMs: 200, what: "the private dockerd" },
    );
  };
  const stop = async () => {
    if (!proc) return;
    proc.kill("SIGTERM");
    await waitExit(proc, 30_000);
    proc = null;
  };
  try {
    await start();
  } catch (error) {
    run(["ip", "netns", "del", netns], { allowFailure: true });
    throw error;
  }
  return {
    socketPath,
    env: { DOCKER_SOCKET: socketPath, DOCKER_HOSTS: `${opts.hostName ?? "own"}=unix://${socketPath}` },
    docker,
    stop,
    start,
    async loadImage(reference) {
      const save = Bun.spawn(["docker", "save", reference], { stdout: "pipe", stderr: "pipe" });
      const load = Bun.spawn(["docker", "-H", `unix://${socketPath}`, "load"], { stdin: save.stdout, stdout: "pipe", stderr: "pipe" });
      const [a, b] = await Promise.all([save.exited, load.exited]);
      if (a !== 0 || b !== 0) throw new Error(`loading ${reference} failed: ${await new Response(load.stderr).text()}`);
    },
    async destroy() {
      const containers = await docker.listContainers({ all: true }).catch(() => []);
      await Promise.all(
        containers.map((c) =>
          docker
            .getContainer(c.Id)
            .remove({ force: true })
            .catch(() => {}),
        ),
      );
      await stop();
      // Its interfaces go with the namespace.
      run(["ip", "netns", "del", netns], { allowFailure: true });
      // Overlay mounts under the data root are gone once dockerd has stopped; anything left is removed with the folder.
      Bun.spawnSync(["sh", "-c", `grep ' ${dir}' /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r umount -l`]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function run(cmd: string[], opts: { allowFailure?: boolean } = {}): void {
  const result = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0 && !opts.allowFailure) throw new Error(`${cmd.join(" ")} failed: ${result.stderr.toString()}`);
}

/** A monotonic stopwatch for recovery times reported by the fault suite. */
export function stopwatch() {
  const started = performance.now();
  return () => Math.round(performance.now() - started);
}
