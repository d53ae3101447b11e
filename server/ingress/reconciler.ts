import type { IngressConfig } from "../config";
import type { Logger } from "../log";
import { ProxyUnreachable, type CaddyAdmin } from "./caddy-admin";
import { startManagedProxy } from "./proxy-process";
import type { RouteSync } from "./sync";

/** How long to leave a managed proxy that was just started before starting another. */
const RESPAWN_AFTER_MS = 5_000;

/**
 * Makes the proxy's configuration equal to the database's, now and every
 * INGRESS_RECONCILE_INTERVAL_MS: a cheap check (does the proxy hold an object
 * with the marker of the configuration rendered now?) and a full load when
 * not — after the proxy restarted empty, after a load another process made
 * from an older read, after anyone edited it. With INGRESS_PROXY=managed a
 * proxy that does not answer is started. Runs in every worker process.
 */
export function startProxyReconciler(deps: { settings: IngressConfig; sync: RouteSync; admin: CaddyAdmin; log: Logger }): { stop(): Promise<void> } {
  const { settings, sync, admin } = deps;
  const log = deps.log.child({ component: "ingress" });
  let stopped = false;
  let wake: (() => void) | undefined;
  let lastSpawn = 0;

  const loop = async () => {
    // A managed proxy that is not running yet is started before the first load, rather than after it fails.
    if (
      settings.proxy === "managed" &&
      !(await admin.ping().then(
        () => true,
        () => false,
      ))
    ) {
      lastSpawn = Date.now();
      await startManagedProxy(settings, admin, log);
    }
    while (!stopped) {
      try {
        const outcome = await sync.reconcile();
        if (outcome === "loaded") log.info("proxy configuration loaded from the database");
      } catch (error) {
        if (error instanceof ProxyUnreachable && settings.proxy === "managed" && Date.now() - lastSpawn > RESPAWN_AFTER_MS) {
          lastSpawn = Date.now();
          await startManagedProxy(settings, admin, log);
          continue;
        }
        // sync already logged the first failure of a streak.
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, settings.reconcileIntervalMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  };
  const running = loop();
  return {
    async stop() {
      stopped = true;
      wake?.();
      await running;
    },
  };
}
