/**
 * Runs once before any test file: proves every real service answers (failing
 * loudly, by name, when one does not), creates and migrates this run's
 * database, and registers the clean-up that drops it, deletes the run's Redis
 * keys and removes the run's Docker containers and networks.
 */
import { afterAll } from "bun:test";
import { rmSync } from "node:fs";
import Docker from "dockerode";
import { Redis } from "ioredis";
import postgres from "postgres";
import { openDatabase } from "../../db/client";
import { migrateDatabase } from "../../db/migrate";
import { testDatabaseUrl, testRun } from "./env";

class MissingServiceError extends Error {
  override name = "MissingServiceError";
}

async function requireService<T>(name: string, where: string, check: () => Promise<T>): Promise<T> {
  try {
    return await check();
  } catch (error) {
    throw new MissingServiceError(
      `${name} is required by the test suite and is not answering at ${where}: ${(error as Error).message}. ` +
        "Run `npm test` (it provisions what is missing) or start the service.",
    );
  }
}

const admin = postgres(testRun.adminDatabaseUrl, { max: 1, onnotice: () => {}, connect_timeout: 5 });
await requireService("PostgreSQL", testRun.adminDatabaseUrl, () => admin`select 1`);

const redis = new Redis(testRun.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false });
redis.on("error", () => {});
await requireService("Redis", testRun.redisUrl, async () => {
  await redis.connect();
  await redis.ping();
});

const docker = new Docker({ socketPath: testRun.dockerSocket });
await requireService("Docker engine", testRun.dockerSocket, () => docker.ping());

await admin.unsafe(`create database "${testRun.databaseName}"`);
const handle = await openDatabase({ url: testDatabaseUrl(), dataDir: testRun.dataDir, poolMax: 1 });
await migrateDatabase(handle, testDatabaseUrl());
await handle.close();

afterAll(async () => {
  const namespaceFilter = { label: [`sahary.namespace=${testRun.dockerNamespace}`] };
  const containers = await docker.listContainers({ all: true, filters: namespaceFilter });
  await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => {})));
  const networks = await docker.listNetworks({ filters: namespaceFilter });
  await Promise.all(networks.map((n) => docker.getNetwork(n.Id).remove().catch(() => {})));

  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${testRun.redisPrefix}*`, "COUNT", 1000);
    if (keys.length) await redis.unlink(...keys);
    cursor = next;
  } while (cursor !== "0");
  redis.disconnect();

  await admin.unsafe(`drop database if exists "${testRun.databaseName}" with (force)`);
  await admin.end({ timeout: 5 });
  rmSync(testRun.dataDir, { recursive: true, force: true });
});
