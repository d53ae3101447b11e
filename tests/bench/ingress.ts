/**
 * Ingress benchmark (not a test). One run, real Caddy 2.6.2, real containers,
 * real PostgreSQL and Redis, the API and workers in this process:
 *
 *  1. throughput (wrk, `connections` connections) and latency p50/p99 (wrk, one
 *     connection: the hop's own cost, not queueing), for a running busybox instance
 *     on the `medium` plan (2 vCPUs: the `nano` plan's quarter core makes the
 *     container the bottleneck at ~60 requests/s): straight to the
 *     container's bridge address, to the port the engine publishes for the
 *     proxy (docker-proxy), and through the proxy by the instance's host name
 *     (access logging on, as in production). BusyBox httpd forks a process
 *     per connection and closes it, so the same comparison is repeated for a
 *     keep-alive upstream (a Bun server in its own process on loopback, that
 *     an instance's route is pointed at), which shows the proxy's own cost. Plain HTTP
 *     (INGRESS_TLS=off): wrk takes the TLS server name from the URL and
 *     nothing resolves instance names here; TLS termination is Caddy's own
 *     cost, not the routing's.
 *  2. route live: for several creates, the time from the instance reaching
 *     `running` (its stateChangedAt, stamped just before that commit) to the
 *     first 200 through the proxy, with a client polling from the create on;
 *     over plain HTTP, then over HTTPS with the local CA (INGRESS_TLS=internal,
 *     so the first request of a new host also waits for its on-demand
 *     certificate).
 *
 * Run: npm run bench:ingress -- [samples=10] [seconds=10] [connections=16]
 *
 * Figures are provisional on a shared 2-core machine: wrk, Caddy, docker-proxy,
 * the container and the platform compete for the same cores.
 */
import { syncHosts } from "../../server/compute/hosts";
import { setUserQuota } from "../../server/compute/quotas";
import { createApp } from "../../server/app";
import { loadConfig } from "../../server/config";
import { createLogger } from "../../server/log";
import { createServices, type Services } from "../../server/services";
import { processors } from "../../workers/processors";
import { startWorkers, type WorkerRunner } from "../../workers/runner";
import { freePort } from "../harness/process";
import { startTestProxy } from "../harness/proxy";
import { defineSandbox } from "../harness/sandbox";
import { createUserWithSession } from "../harness/users";
import { createTRPCClient, httpLink } from "@trpc/client";
import { eq } from "drizzle-orm";
import { instances } from "../../db/schema";
import type { AppRouter } from "../../server/router";

const [samples = 10, seconds = 10, connections = 16] = process.argv.slice(2).map(Number);
if (!Bun.which("wrk")) throw new Error("the ingress benchmark needs wrk: apt-get install wrk");
const sandbox = defineSandbox("bench");
await sandbox.create();
const apiPort = await freePort();
const proxy = await startTestProxy({ apiPort, tls: "off", dir: `${sandbox.dataDir}/proxy` });

type Platform = { services: Services; workers: WorkerRunner; server: ReturnType<typeof Bun.serve>; api: ReturnType<typeof createTRPCClient<AppRouter>> };
async function startPlatform(tls: "off" | "internal"): Promise<Platform> {
  const config = loadConfig({ LOG_LEVEL: "error", ...sandbox.env, ...proxy.env, INGRESS_TLS: tls, DATABASE_POOL_MAX: "10", INGRESS_TRAFFIC_FLUSH_MS: "1000" });
  const services = await createServices(config, { log: createLogger({ level: "error" }) });
  const server = Bun.serve({ hostname: "127.0.0.1", port: apiPort, fetch: createApp(services).fetch });
  const workers = await startWorkers(services, processors);
  await syncHosts(services);
  const { user, token } = await createUserWithSession(services);
  await setUserQuota(services.db, user.id, { maxInstances: 1000, maxCpuMillis: 100_000, maxMemoryMb: 100_000 });
  const api = createTRPCClient<AppRouter>({ links: [httpLink({ url: `http://127.0.0.1:${apiPort}/trpc`, headers: { authorization: `Bearer ${token}` } })] });
  return { services, workers, server, api };
}
async function stopPlatform(p: Platform, made: string[]) {
  for (const id of made) {
    const { actionId } = await p.api.compute.instances.delete.mutate({ id });
    await settle(p, actionId);
  }
  await p.workers.close();
  await p.server.stop(true);
  await p.services.close();
}
async function settle(p: Platform, actionId: string) {
  for (;;) {
    const action = await p.api.compute.actions.get.query({ id: actionId });
    if (action.status === "succeeded") return;
    if (action.status === "failed") throw new Error(`action failed: ${action.error}`);
    await Bun.sleep(10);
  }
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
const summary = (ms: number[]) => {
  const sorted = [...ms].sort((a, b) => a - b);
  return { n: sorted.length, p50: round(percentile(sorted, 50)), max: round(sorted.at(-1)!) };
};
const round = (n: number) => Math.round(n * 100) / 100;

/** One wrk run. Spawned, not run synchronously: servers in this process must keep answering. */
async function wrkRun(url: string, headers: Record<string, string>, conns: number) {
  const args = ["wrk", "-t1", `-c${conns}`, `-d${seconds}s`, "--latency", ...Object.entries(headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]), url];
  const child = Bun.spawn(args, { stdout: "pipe" });
  const out = await new Response(child.stdout).text();
  await child.exited;
  const ms = (label: string) => {
    const m = new RegExp(`^\\s*${label}\\s+([\\d.]+)(us|ms|s)\\s*$`, "m").exec(out);
    if (!m) throw new Error(`no ${label} in wrk output:\n${out}`);
    return round(Number(m[1]) * (m[2] === "us" ? 0.001 : m[2] === "s" ? 1000 : 1));
  };
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const errors = /Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)/.exec(out)?.[0] ?? null;
  return { rps: Math.round(rps), p50Ms: ms("50%"), p99Ms: ms("99%"), errors };
}

/** Throughput with `connections` connections; latency with one (the hop's cost without queueing). */
async function wrk(url: string, headers: Record<string, string> = {}) {
  const load = await wrkRun(url, headers, connections);
  const single = await wrkRun(url, headers, 1);
  return { requestsPerSecond: load.rps, p50Ms: single.p50Ms, p99Ms: single.p99Ms, loadedP50Ms: load.p50Ms, errors: load.errors ?? single.errors };
}

/** Creates an instance while polling its URL; returns ms from `running` to the first 200. */
async function routeLive(p: Platform, name: string, visit: (url: string) => Promise<number>, planId = "nano"): Promise<{ ms: number; id: string }> {
  const { instance, actionId } = await p.api.compute.instances.create.mutate({ name, planId, imageId: "busybox" });
  let firstOk = 0;
  const poller = (async () => {
    while (!firstOk) {
      if ((await visit(instance.url!).catch(() => 0)) === 200) firstOk = Date.now();
      else await Bun.sleep(2);
    }
  })();
  await settle(p, actionId);
  await poller;
  const running = Date.parse((await p.api.compute.instances.get.query({ id: instance.id })).stateChangedAt);
  return { ms: firstOk - running, id: instance.id };
}

const results: Record<string, unknown> = {
  machine: { cpus: navigator.hardwareConcurrency, caddy: Bun.spawnSync(["caddy", "version"]).stdout.toString().trim().split(" ")[0], wrk: { threads: 1, connections, seconds } },
};
try {
  // Phase 1: plain HTTP.
  const plain = await startPlatform("off");
  const made: string[] = [];
  const httpVisit = async (url: string) => {
    const r = await fetch(`http://127.0.0.1:${proxy.httpPort}/`, { headers: { host: new URL(url).host } });
    await r.arrayBuffer();
    return r.status;
  };
  const live: number[] = [];
  for (let i = 0; i < samples; i++) {
    const r = await routeLive(plain, `live-${i}`, httpVisit);
    live.push(r.ms);
    made.push(r.id);
  }
  results.routeLiveAfterRunningHttp = summary(live);

  const sized = await routeLive(plain, "sized", httpVisit, "medium");
  made.push(sized.id);
  const target = await plain.api.compute.instances.get.query({ id: sized.id });
  const info = await plain.services.docker.getContainer(`${sandbox.dockerNamespace}-${target.id}`).inspect();
  const bridge = `${Object.values(info.NetworkSettings.Networks)[0]!.IPAddress}:8080`;
  const direct = await wrk(`http://${bridge}/`);
  const binding = info.NetworkSettings.Ports["8080/tcp"]![0]!;
  const published = await wrk(`http://${binding.HostIp}:${binding.HostPort}/`);
  const proxied = await wrk(`http://127.0.0.1:${proxy.httpPort}/`, { Host: new URL(target.url!).host });
  type Wrk = Awaited<ReturnType<typeof wrk>>;
  const versus = (via: Wrk, base: Wrk) => ({
    throughputRatio: Math.round((via.requestsPerSecond / base.requestsPerSecond) * 100) / 100,
    addedP50Ms: round(via.p50Ms - base.p50Ms),
    addedP99Ms: round(via.p99Ms - base.p99Ms),
  });
  results.busyboxInstance = { directToContainer: direct, publishedPort: published, throughProxy: proxied, proxyVsDirect: versus(proxied, direct) };

  // The same route pointed at a keep-alive server in its own process: what the proxy itself adds.
  const keepAlivePort = await freePort();
  const keepAlive = Bun.spawn([process.execPath, "-e", `Bun.serve({ hostname: "127.0.0.1", port: ${keepAlivePort}, fetch: () => new Response("<h1>Sahary</h1>\\n") })`]);
  await Bun.sleep(500);
  const routed = await plain.api.compute.instances.get.query({ id: made[1]! });
  await plain.services.db
    .update(instances)
    .set({ upstream: `127.0.0.1:${keepAlivePort}` })
    .where(eq(instances.id, routed.id));
  await plain.services.ingress.routes.changed(routed.id);
  const bare = await wrk(`http://127.0.0.1:${keepAlivePort}/`);
  const viaProxy = await wrk(`http://127.0.0.1:${proxy.httpPort}/`, { Host: new URL(routed.url!).host });
  results.keepAliveUpstream = { direct: bare, throughProxy: viaProxy, proxyVsDirect: versus(viaProxy, bare) };
  keepAlive.kill();
  await keepAlive.exited;
  await stopPlatform(plain, made);

  // Phase 2: HTTPS with the local CA (the development default); the same proxy, reloaded by the new platform.
  const secure = await startPlatform("internal");
  const madeTls: string[] = [];
  let ca: string | undefined;
  const httpsVisit = async (url: string) => {
    ca ??= await secure.services.ingress.admin.rootCertificate();
    const host = new URL(url).hostname;
    const r = await fetch(`https://127.0.0.1:${proxy.httpsPort}/`, { headers: { host: new URL(url).host }, tls: { ca, serverName: host } } as RequestInit);
    await r.arrayBuffer();
    return r.status;
  };
  const liveTls: number[] = [];
  for (let i = 0; i < samples; i++) {
    const r = await routeLive(secure, `tls-${i}`, httpsVisit);
    liveTls.push(r.ms);
    madeTls.push(r.id);
  }
  results.routeLiveAfterRunningHttps = summary(liveTls);
  await stopPlatform(secure, madeTls);
} finally {
  await proxy.stop().catch(() => {});
  await sandbox.destroy();
}

console.log(JSON.stringify(results, null, 2));
process.exit(0);
