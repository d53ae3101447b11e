import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import Docker from "dockerode";
import { Redis } from "ioredis";
import postgres from "postgres";
import { openDatabase } from "../../db/client";
import { migrateDatabase } from "../../db/migrate";

/**
 * An isolated slice of the machine's real services for one test run or one
 * benchmark: its own PostgreSQL database, Redis key prefix, Docker namespace
 * (the `sahary.namespace` label on every container and network) and data
 * folder. `destroy` removes all four, so runs never see each other's state
 * and leave nothing behind. Service locations come from TEST_* variables.
 */
export type Sandbox = ReturnType<typeof defineSandbox>;

export function defineSandbox(kind: "test" | "bench") {
  const id = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const adminDatabaseUrl = process.env.TEST_DATABASE_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
  const databaseName = `sahary_${kind}_${id}`;
  const databaseUrl = Object.assign(new URL(adminDatabaseUrl), { pathname: `/${databaseName}` }).toString();
  const redisUrl = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
  const redisPrefix = `sahary-${kind}-${id}`;
  const dockerSocket = process.env.TEST_DOCKER_SOCKET ?? "/var/run/docker.sock";
  const dockerNamespace = `sahary-${kind[0]}${id}`;
  const dataDir = resolve(import.meta.dir, "..", ".artifacts", `${kind}-${id}`);

  return {
    id,
    adminDatabaseUrl,
    databaseName,
    databaseUrl,
    redisUrl,
    redisPrefix,
    dockerSocket,
    dockerNamespace,
    dataDir,
    /** Environment variables that point a configuration (or a child process) at this sandbox. */
    env: {
      NODE_ENV: "test",
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
      REDIS_PREFIX: redisPrefix,
      DOCKER_SOCKET: dockerSocket,
      DOCKER_NAMESPACE: dockerNamespace,
      DATA_DIR: dataDir,
      // Never start a proxy or take the shared traffic-log port; the ingress tests run their own proxy.
      INGRESS_PROXY: "external",
      INGRESS_LOG_ADDRESS: "off",
      // Tests and benchmarks poll and load one account hard; the budgets themselves are tested with small values.
      RATE_LIMIT_ACCOUNT_PER_MINUTE: "1000000",
      RATE_LIMIT_API_KEY_PER_MINUTE: "1000000",
    } satisfies Record<string, string>,

    /** Creates and migrates the database and the data folder. */
    async create(): Promise<void> {
      mkdirSync(dataDir, { recursive: true });
      const admin = postgres(adminDatabaseUrl, { max: 1, onnotice: () => {} });
      try {
        await admin.unsafe(`create database "${databaseName}"`);
      } finally {
        await admin.end({ timeout: 5 });
      }
      const handle = await openDatabase({ url: databaseUrl, dataDir, poolMax: 1 });
      try {
        await migrateDatabase(handle, databaseUrl);
      } finally {
        await handle.close();
      }
    },

    /** Removes the namespace's containers, networks and volumes (and the loop devices of volume files in the data folder), the prefix's Redis keys, the database and the data folder. */
    async destroy(): Promise<{ containersRemoved: number }> {
      const docker = new Docker({ socketPath: dockerSocket });
      const filters = { label: [`sahary.namespace=${dockerNamespace}`] };
      releaseFreezeGroups(dockerNamespace, "thaw");
      const containers = await docker.listContainers({ all: true, filters }).catch(() => []);
      await Promise.all(
        containers.map((c) =>
          docker
            .getContainer(c.Id)
            .remove({ force: true })
            .catch(() => {}),
        ),
      );
      const networks = await docker.listNetworks({ filters }).catch(() => []);
      await Promise.all(
        networks.map((n) =>
          docker
            .getNetwork(n.Id)
            .remove()
            .catch(() => {}),
        ),
      );
      const { Volumes: volumes } = await docker.listVolumes({ filters }).catch(() => ({ Volumes: [] as Array<{ Name: string }> }));
      await Promise.all(
        (volumes ?? []).map((v) =>
          docker
            .getVolume(v.Name)
            .remove()
            .catch(() => {}),
        ),
      );
      await detachLoops(dataDir);
      releaseFreezeGroups(dockerNamespace, "remove");

      const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
      try {
        let cursor = "0";
        do {
          const [next, keys] = await redis.scan(cursor, "MATCH", `${redisPrefix}*`, "COUNT", 1000);
          if (keys.length) await redis.unlink(...keys);
          cursor = next;
        } while (cursor !== "0");
      } finally {
        redis.disconnect();
      }

      const admin = postgres(adminDatabaseUrl, { max: 1, onnotice: () => {} });
      try {
        await admin.unsafe(`drop database if exists "${databaseName}" with (force)`);
      } finally {
        await admin.end({ timeout: 5 });
      }
      rmSync(dataDir, { recursive: true, force: true });
      return { containersRemoved: containers.length };
    },
  };
}

/**
 * The namespace's freeze groups (server/compute/freezer.ts), which the engine
 * leaves behind as empty cgroups: /sys/fs/cgroup/<controller>/<ns>.<priority>
 * under cgroup v1, /sys/fs/cgroup/<ns>.<priority> under v2.
 */
function freezeGroups(namespace: string): string[] {
  const root = "/sys/fs/cgroup";
  const list = (dir: string) => {
    try {
      return readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory());
    } catch {
      return [];
    }
  };
  const ours = (name: string) => name.startsWith(`${namespace}.`);
  return list(root).flatMap((e) =>
    ours(e.name)
      ? [`${root}/${e.name}`]
      : list(`${root}/${e.name}`)
          .filter((c) => ours(c.name))
          .map((c) => `${root}/${e.name}/${c.name}`),
  );
}

/** Thaws the groups (a run that failed may have left one frozen; killing its containers would wait on it) or removes them. */
function releaseFreezeGroups(namespace: string, how: "thaw" | "remove") {
  for (const dir of freezeGroups(namespace)) {
    try {
      if (how === "remove") rmdirSync(dir);
      else if (existsSync(`${dir}/freezer.state`)) writeFileSync(`${dir}/freezer.state`, "THAWED");
      else if (existsSync(`${dir}/cgroup.freeze`)) writeFileSync(`${dir}/cgroup.freeze`, "0");
    } catch {}
  }
}

/** Detaches the loop devices whose backing file lives under `dir` (volumes a run made). */
async function detachLoops(dir: string): Promise<void> {
  const list = Bun.spawnSync(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"], { stderr: "ignore" });
  if (list.exitCode !== 0) return;
  const parsed = JSON.parse(list.stdout.toString() || "{}") as { loopdevices?: Array<{ name: string; "back-file": string | null }> };
  for (const device of parsed.loopdevices ?? []) {
    if (device["back-file"]?.startsWith(`${dir}/`)) Bun.spawnSync(["losetup", "-d", device.name], { stderr: "ignore" });
  }
}
