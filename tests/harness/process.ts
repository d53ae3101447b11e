import { resolve } from "node:path";
import { testDatabaseUrl, testRun } from "./env";

/** For tests that start the platform's entry points as real OS processes. */
export const projectRoot = resolve(import.meta.dir, "../..");

/** The environment of a child process bound to this run's database, Redis prefix and Docker namespace. */
export function processEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/root",
    NODE_ENV: "test",
    LOG_LEVEL: "info",
    DATABASE_URL: testDatabaseUrl(),
    REDIS_URL: testRun.redisUrl,
    REDIS_PREFIX: testRun.redisPrefix,
    DOCKER_NAMESPACE: testRun.dockerNamespace,
    DATA_DIR: testRun.dataDir,
    ...extra,
  };
}

/** A TCP port that was free a moment ago (the child binds it). */
export async function freePort(): Promise<number> {
  const probe = Bun.serve({ port: 0, fetch: () => new Response() });
  const port = probe.port!;
  await probe.stop(true);
  return port;
}
