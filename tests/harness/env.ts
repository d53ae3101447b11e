import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { loadConfig, type Config } from "../../server/config";

/**
 * The identity of one `bun test` run: its own database, Redis key prefix,
 * Docker namespace and data folder, so runs never see each other's state.
 * Service locations can be overridden with TEST_* variables.
 */
const runId = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

export const testRun = {
  id: runId,
  databaseName: `sahary_test_${runId}`,
  adminDatabaseUrl: process.env.TEST_DATABASE_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres",
  redisUrl: process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379",
  redisPrefix: `sahary-test-${runId}`,
  dockerSocket: process.env.TEST_DOCKER_SOCKET ?? "/var/run/docker.sock",
  dockerNamespace: `sahary-t${runId}`,
  dataDir: resolve(import.meta.dir, "..", ".artifacts", runId),
  logLevel: process.env.TEST_LOG_LEVEL ?? "error",
};

export function testDatabaseUrl(): string {
  const url = new URL(testRun.adminDatabaseUrl);
  url.pathname = `/${testRun.databaseName}`;
  return url.toString();
}

/** A configuration for this run; `overrides` are environment variables. */
export function testConfig(overrides: Record<string, string> = {}): Config {
  mkdirSync(testRun.dataDir, { recursive: true });
  return loadConfig({
    NODE_ENV: "test",
    HOST: "127.0.0.1",
    PORT: "0",
    LOG_LEVEL: testRun.logLevel,
    DATABASE_URL: testDatabaseUrl(),
    DATABASE_POOL_MAX: "5",
    REDIS_URL: testRun.redisUrl,
    REDIS_PREFIX: testRun.redisPrefix,
    DOCKER_SOCKET: testRun.dockerSocket,
    DOCKER_NAMESPACE: testRun.dockerNamespace,
    DATA_DIR: testRun.dataDir,
    SHUTDOWN_TIMEOUT_MS: "5000",
    ...overrides,
  });
}
