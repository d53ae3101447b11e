import { spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { IngressConfig } from "../config";
import type { Logger } from "../log";
import type { CaddyAdmin } from "./caddy-admin";

/**
 * INGRESS_PROXY=managed (the development default): when the proxy's admin
 * endpoint does not answer, start Caddy as its own process, detached, so it
 * keeps serving visitors while the platform restarts. Its bootstrap
 * configuration sets only the admin address; the reconciler loads the rest.
 * Certificates and the local CA live in the proxy directory (DATA_DIR/caddy),
 * beside its pid (caddy.pid), output (caddy.log) and admin socket.
 */
export async function startManagedProxy(settings: Pick<IngressConfig, "proxyDir" | "caddyBin">, admin: CaddyAdmin, log: Logger): Promise<void> {
  const dir = settings.proxyDir;
  mkdirSync(dir, { recursive: true });
  const pidFile = `${dir}/caddy.pid`;
  const running = readPid(pidFile);
  if (running !== null && alive(running)) {
    // Ours is alive but not answering (hung, or still starting): starting another would fight it for the ports.
    log.warn("the managed proxy is running but its admin endpoint does not answer", { proxyPid: running });
    return;
  }
  const bootstrap = `${dir}/bootstrap.json`;
  writeFileSync(bootstrap, `${JSON.stringify({ admin: { listen: admin.listen, config: { persist: false } } })}\n`);
  const out = openSync(`${dir}/caddy.log`, "a");
  let pid: number | undefined;
  try {
    const child = spawn(settings.caddyBin, ["run", "--config", bootstrap], {
      detached: true,
      stdio: ["ignore", out, out],
      // Caddy keeps its state under $XDG_DATA_HOME/caddy and $XDG_CONFIG_HOME/caddy: the proxy directory (DATA_DIR/caddy).
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir, XDG_DATA_HOME: dirname(dir), XDG_CONFIG_HOME: dirname(dir) },
    });
    pid = await new Promise<number>((resolve, reject) => {
      child.once("error", reject);
      child.once("spawn", () => resolve(child.pid!));
    });
    child.unref();
  } catch (error) {
    log.error("could not start the proxy: is Caddy installed? (apt-get install caddy, or set INGRESS_CADDY_BIN)", { bin: settings.caddyBin, error: (error as Error).message });
    return;
  } finally {
    closeSync(out);
  }
  writeFileSync(pidFile, `${pid}\n`);
  for (let waited = 0; waited < 10_000; waited += 100) {
    try {
      await admin.ping();
      log.info("started the proxy", { proxyPid: pid, log: `${dir}/caddy.log` });
      return;
    } catch {
      await Bun.sleep(100);
    }
  }
  log.error("the proxy was started but its admin endpoint does not answer; see its log", { proxyPid: pid, log: `${dir}/caddy.log` });
}

function readPid(file: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(file, "utf8"), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** Whether `pid` is a live Caddy (a pid file can outlive its process, and the number be reused). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as { code?: string }).code !== "EPERM") return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("caddy");
  } catch {
    return true;
  }
}
