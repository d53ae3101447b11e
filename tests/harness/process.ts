import { resolve } from "node:path";
import { testRun } from "./env";

/** For tests that start the platform's entry points as real OS processes. */
export const projectRoot = resolve(import.meta.dir, "../..");

/** The environment of a child process bound to this run's sandbox. */
export function processEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/root",
    ...testRun.env,
    LOG_LEVEL: "info",
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
