/**
 * Runs once before any test file: proves every real service answers (failing
 * loudly, by name, when one does not), creates and migrates this run's
 * database, and registers the clean-up that removes the run's sandbox.
 */
import { afterAll } from "bun:test";
import Docker from "dockerode";
import { Redis } from "ioredis";
import postgres from "postgres";
import { testRun } from "./env";

class MissingServiceError extends Error {
  override name = "MissingServiceError";
}

async function requireService(name: string, where: string, check: () => Promise<unknown>): Promise<void> {
  try {
    await check();
  } catch (error) {
    throw new MissingServiceError(
      `${name} is required by the test suite and is not answering at ${where}: ${(error as Error).message}. Run \`npm test\` (it provisions what is missing) or start the service.`,
    );
  }
}

await requireService("PostgreSQL", testRun.adminDatabaseUrl, async () => {
  const admin = postgres(testRun.adminDatabaseUrl, { max: 1, onnotice: () => {}, connect_timeout: 5 });
  try {
    await admin`select 1`;
  } finally {
    await admin.end({ timeout: 5 });
  }
});
await requireService("Redis", testRun.redisUrl, async () => {
  const redis = new Redis(testRun.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false });
  redis.on("error", () => {});
  try {
    await redis.connect();
    await redis.ping();
  } finally {
    redis.disconnect();
  }
});
await requireService("Docker engine", testRun.dockerSocket, () => new Docker({ socketPath: testRun.dockerSocket }).ping());

await testRun.create();
afterAll(() => testRun.destroy());
