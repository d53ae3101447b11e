import type { Database } from "../../db/client";
import type { IngressConfig } from "../config";
import type { Logger } from "../log";
import { ProxyUnreachable, type CaddyAdmin } from "./caddy-admin";
import { desiredRoutes } from "./desired";
import type { EdgeTokens } from "./edge-token";
import { renderProxyConfig, type RenderedConfig } from "./render";

/** What compute calls after it changes an instance: "its route may differ now". */
export type RouteNotifier = {
  /**
   * Brings the proxy in line with the database, in a load that starts after
   * this call (so it sees every change committed before it). Resolves when
   * that load is done, failed, or `waitMs` passed; never rejects: the proxy
   * being down must not fail an instance action (the reconciler catches up).
   */
  changed(instanceId: string, opts?: { waitMs?: number }): Promise<void>;
};

export type RouteSync = RouteNotifier & {
  /** Renders from the database and loads only if the proxy does not hold that configuration; returns whether it loaded. */
  reconcile(): Promise<"current" | "loaded">;
  /** The configuration the database calls for now. */
  render(): Promise<RenderedConfig>;
  /** False after a load or check failed, until one succeeds. */
  readonly healthy: boolean;
};

type Job = { mode: "load" | "check"; promise: Promise<"current" | "loaded">; resolve: (value: "current" | "loaded") => void; reject: (error: unknown) => void };

/**
 * Every change re-provisions Caddy's whole configuration (2.6: all routes,
 * and every proxied WebSocket is dropped), and a full load costs no more than
 * a one-route edit (measured: ~20 ms at 100 routes, ~100–175 ms at 1,000, for
 * either). So each sync renders everything from the database and loads it
 * whole, and syncs are single-flight: changes that arrive while a load is in
 * progress share the next one, so a burst of N changes costs two loads.
 */
export function createRouteSync(deps: { db: Database; settings: IngressConfig; admin: CaddyAdmin; tokens: EdgeTokens; log: Logger }): RouteSync {
  const { db, settings, admin, tokens, log } = deps;
  let inFlight: Promise<unknown> | null = null;
  let next: Job | null = null;
  let healthy = true;

  const render = async () => renderProxyConfig(settings, admin.listen, tokens.token, await desiredRoutes(db));

  async function run(mode: "load" | "check"): Promise<"current" | "loaded"> {
    const { config, marker } = await render();
    if (mode === "check" && (await admin.has(marker))) return "current";
    await admin.load(config);
    return "loaded";
  }

  function schedule(mode: "load" | "check"): Promise<"current" | "loaded"> {
    if (next) {
      // A queued check becomes a load if anyone asks for one: a load always converges.
      if (mode === "load") next.mode = "load";
      return next.promise;
    }
    let resolve!: Job["resolve"];
    let reject!: Job["reject"];
    const promise = new Promise<"current" | "loaded">((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const job: Job = { mode, promise, resolve, reject };
    next = job;
    const previous = inFlight ?? Promise.resolve();
    const started = previous
      .catch(() => undefined)
      .then(async () => {
        // From here on a new request needs a new load: its commit may come after this render reads.
        next = null;
        try {
          const outcome = await run(job.mode);
          if (!healthy) log.info("proxy configuration restored", { outcome });
          healthy = true;
          job.resolve(outcome);
        } catch (error) {
          if (healthy) log.warn("proxy configuration could not be applied; retrying from the reconciler", { error: (error as Error).message });
          healthy = false;
          job.reject(error);
        }
      });
    inFlight = started;
    void started.finally(() => {
      if (inFlight === started) inFlight = null;
    });
    return promise;
  }

  return {
    get healthy() {
      return healthy;
    },
    render,
    reconcile: () => schedule("check"),
    async changed(instanceId, opts = {}) {
      // A proxy known to be down would only make every lifecycle job wait out a timeout; the reconciler reloads it when it is back.
      if (!healthy) return;
      const done = schedule("load").then(
        () => undefined,
        (error) => {
          if (!(error instanceof ProxyUnreachable)) log.warn("route update failed", { instanceId, error: (error as Error).message });
        },
      );
      if (opts.waitMs === undefined) return done;
      let timer: Timer | undefined;
      await Promise.race([done, new Promise<void>((resolve) => (timer = setTimeout(resolve, opts.waitMs)))]);
      clearTimeout(timer);
    },
  };
}
