import { resolve } from "node:path";
import { createTRPCClient, httpLink } from "@trpc/client";
import type { AppRouter } from "../../server/router";
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

export type ApiProcess = {
  url: string;
  pid: number;
  /** A typed tRPC client for this process (one call per HTTP request); `token` is sent as a bearer credential. */
  client(opts?: { token?: string; headers?: Record<string, string> }): ReturnType<typeof createTRPCClient<AppRouter>>;
  stop(): Promise<void>;
};

/** `bun server/api.ts` as a real OS process on a free port of this run's sandbox, once it answers /health. */
export async function startApiProcess(env: Record<string, string> = {}): Promise<ApiProcess> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = Bun.spawn([process.execPath, "server/api.ts"], { cwd: projectRoot, env: processEnv({ LOG_LEVEL: "warn", PORT: String(port), ...env }), stdout: "inherit", stderr: "inherit" });
  const deadline = Date.now() + 30_000;
  while (
    (await fetch(`${url}/health`).then(
      (r) => r.status,
      () => 0,
    )) !== 200
  ) {
    if (child.exitCode !== null) throw new Error(`the API process exited with ${child.exitCode} before answering`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`the API process did not answer /health on port ${port}`);
    }
    await Bun.sleep(100);
  }
  return {
    url,
    pid: child.pid,
    client({ token, headers } = {}) {
      const allHeaders = { ...headers, ...(token ? { authorization: `Bearer ${token}` } : {}) };
      return createTRPCClient<AppRouter>({ links: [httpLink({ url: `${url}/trpc`, headers: () => allHeaders })] });
    },
    async stop() {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await child.exited;
      clearTimeout(timer);
    },
  };
}
