import { mkdirSync } from "node:fs";
import { loadConfig, type Config } from "../../server/config";
import { defineSandbox } from "./sandbox";

/**
 * This `bun test` run's sandbox (its database, Redis prefix, Docker namespace
 * and data folder), created by the preload and destroyed when the run ends.
 */
export const testRun = { ...defineSandbox("test"), logLevel: process.env.TEST_LOG_LEVEL ?? "error" };

/** A configuration for this run; `overrides` are environment variables. */
export function testConfig(overrides: Record<string, string> = {}): Config {
  mkdirSync(testRun.dataDir, { recursive: true });
  return loadConfig({
    ...testRun.env,
    HOST: "127.0.0.1",
    PORT: "0",
    LOG_LEVEL: testRun.logLevel,
    DATABASE_POOL_MAX: "5",
    SHUTDOWN_TIMEOUT_MS: "5000",
    ...overrides,
  });
}
