import { mkdirSync, rmSync } from "node:fs";
import { createCaddyAdmin } from "../../server/ingress/caddy-admin";
import { testRun } from "./env";
import { freePort } from "./process";

let counter = 0;

type ProxyEnv = Record<
  | "INGRESS_ADMIN"
  | "INGRESS_DOMAIN"
  | "INGRESS_TLS"
  | "INGRESS_HTTP_PORT"
  | "INGRESS_HTTPS_PORT"
  | "INGRESS_EDGE_UPSTREAM"
  | "INGRESS_LOG_ADDRESS"
  | "INGRESS_TRAFFIC_FLUSH_MS"
  | "INGRESS_RECONCILE_INTERVAL_MS",
  string
>;

export type TestProxy = {
  dir: string;
  httpPort: number;
  httpsPort: number;
  /** INGRESS_* variables pointing the platform at this proxy. */
  env: ProxyEnv;
  pid(): number;
  /** The local CA's root certificate (after the first configuration with TLS was loaded). */
  rootCertificate(): Promise<string>;
  /**
   * Requests `url` (an instance URL) through the proxy over HTTPS, trusting
   * its local CA. `sni` overrides the TLS server name (default: the URL's
   * host); `headers.host` overrides the Host header.
   */
  visit(url: string, init?: { headers?: Record<string, string>; sni?: string; method?: string; body?: string }): Promise<Response>;
  /** SIGKILL, as a crash would. */
  kill(): Promise<void>;
  /** Starts Caddy again on the same folder and admin socket, with the bootstrap configuration only. */
  restart(): Promise<void>;
  stop(): Promise<void>;
};

/**
 * A real Caddy for one test file: its own folder (XDG dirs: certificates and
 * local CA), admin API on a unix socket there, free HTTP/HTTPS ports. It is
 * started with a bootstrap configuration that sets only the admin address;
 * the platform under test loads everything else.
 */
export async function startTestProxy(opts: { apiPort: number; domain?: string; tls?: "internal" | "off"; dir?: string }): Promise<TestProxy> {
  counter += 1;
  const dir = opts.dir ?? `${testRun.dataDir}/proxy-${counter}`;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const socket = `${dir}/admin.sock`;
  const bootstrap = `${dir}/bootstrap.json`;
  await Bun.write(bootstrap, JSON.stringify({ admin: { listen: `unix/${socket}`, config: { persist: false } } }));
  const [httpPort, httpsPort, logPort] = [await freePort(), await freePort(), await freeUdpPort()];
  const env: ProxyEnv = {
    INGRESS_ADMIN: `unix://${socket}`,
    INGRESS_DOMAIN: opts.domain ?? "apps.sahary.test",
    INGRESS_TLS: opts.tls ?? "internal",
    INGRESS_HTTP_PORT: String(httpPort),
    INGRESS_HTTPS_PORT: String(httpsPort),
    INGRESS_EDGE_UPSTREAM: `127.0.0.1:${opts.apiPort}`,
    INGRESS_LOG_ADDRESS: `127.0.0.1:${logPort}`,
    INGRESS_TRAFFIC_FLUSH_MS: "200",
    INGRESS_RECONCILE_INTERVAL_MS: "500",
  };
  const admin = createCaddyAdmin({ admin: env.INGRESS_ADMIN, adminTimeoutMs: 5000 });
  let child: ReturnType<typeof Bun.spawn>;
  const start = async () => {
    child = Bun.spawn(["caddy", "run", "--config", bootstrap], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir },
      stdout: "ignore",
      stderr: Bun.file(`${dir}/caddy.log`),
    });
    for (let waited = 0; ; waited += 50) {
      try {
        await admin.ping();
        return;
      } catch (error) {
        if (child.exitCode !== null || waited > 15_000) throw new Error(`caddy did not start (exit ${child.exitCode}): ${(error as Error).message}; see ${dir}/caddy.log`);
        await Bun.sleep(50);
      }
    }
  };
  await start();
  let ca: string | undefined;
  return {
    dir,
    httpPort,
    httpsPort,
    env,
    pid: () => child.pid,
    rootCertificate: () => admin.rootCertificate(),
    async visit(url, init = {}) {
      ca ??= await admin.rootCertificate();
      const target = new URL(url);
      const port = target.protocol === "https:" ? httpsPort : httpPort;
      return fetch(`${target.protocol}//127.0.0.1:${port}${target.pathname}${target.search}`, {
        method: init.method ?? "GET",
        body: init.body,
        headers: { host: target.host, ...init.headers },
        redirect: "manual",
        tls: { ca, serverName: init.sni ?? target.hostname },
      } as RequestInit);
    },
    async kill() {
      child.kill("SIGKILL");
      await child.exited;
    },
    restart: start,
    async stop() {
      child.kill("SIGTERM");
      await child.exited;
    },
  };
}

/** A UDP port that was free a moment ago. */
export async function freeUdpPort(): Promise<number> {
  const socket = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0 });
  const port = socket.port;
  socket.close();
  return port;
}
