import { createTRPCClient, httpBatchLink, httpLink } from "@trpc/client";
import { createApp, serveOptions } from "../../server/app";
import { createLogger, type Logger } from "../../server/log";
import type { AppRouter } from "../../server/router";
import { createServices, type Services } from "../../server/services";
import { startWorkers, type WorkerRunner } from "../../workers/runner";
import { processors as allProcessors } from "../../workers/processors";
import type { AnyProcessor } from "../../workers/base";
import { testConfig } from "./env";

/** Services for this run's database, Redis prefix and Docker namespace (`log`: a logger of the test's own, e.g. capturing lines). */
export async function startTestServices(env: Record<string, string> = {}, log?: Logger): Promise<Services> {
  const config = testConfig(env);
  return createServices(config, { log: log ?? createLogger({ level: config.logLevel, base: { service: "test" } }) });
}

export type TestServer = {
  url: string;
  services: Services;
  workers: WorkerRunner | undefined;
  /** A typed tRPC client; `token` is sent as a bearer credential. */
  client(opts?: { token?: string; headers?: Record<string, string>; batch?: boolean }): ReturnType<typeof createTRPCClient<AppRouter>>;
  close(): Promise<void>;
};

/**
 * The real app on an ephemeral port (and optionally the real workers), driven
 * through the real `@trpc/client` over HTTP.
 */
export async function startTestServer(opts: { env?: Record<string, string>; workers?: boolean | AnyProcessor[]; port?: number; log?: Logger } = {}): Promise<TestServer> {
  const services = await startTestServices(opts.env, opts.log);
  const server = Bun.serve({ hostname: "127.0.0.1", port: opts.port ?? 0, fetch: createApp(services).fetch, ...serveOptions(services.config) });
  const url = `http://127.0.0.1:${server.port}`;
  const workers = opts.workers ? await startWorkers(services, opts.workers === true ? allProcessors : opts.workers) : undefined;
  return {
    url,
    services,
    workers,
    client({ token, headers, batch = true } = {}) {
      const allHeaders = { ...headers, ...(token ? { authorization: `Bearer ${token}` } : {}) };
      const link = (batch ? httpBatchLink : httpLink)({ url: `${url}/trpc`, headers: () => allHeaders });
      return createTRPCClient<AppRouter>({ links: [link] });
    },
    async close() {
      await server.stop(true);
      await workers?.close();
      await services.close();
    },
  };
}

/** Polls `read` until `done` holds or the time runs out (then throws with the last value). */
export async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean, opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  let last: T;
  for (;;) {
    last = await read();
    if (done(last)) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${opts.what ?? "condition"}; last value: ${JSON.stringify(last)}`);
    await Bun.sleep(opts.intervalMs ?? 50);
  }
}
