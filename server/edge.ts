import type { Context as HonoContext, MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import { routePath } from "hono/route";
import type { Config } from "./config";
import type { Logger } from "./log";
import type { callerIds } from "./auth/actor";
import type { Metrics } from "./metrics/registry";

type EdgeEnv = { Variables: { requestId: string; caller?: ReturnType<typeof callerIds> } };

/** A caller's request id is kept only if it is short and plain, so logs stay clean. */
const PLAIN_ID = /^[\w\-=]{1,64}$/;
const CORS_ALLOW_HEADERS = ["content-type", "authorization", "x-request-id", "trpc-accept"];
const CORS_ALLOW_METHODS = ["GET", "POST", "OPTIONS"];

/**
 * What every request gets on its way in and out: a request id, CORS headers
 * for the configured origins, the HTTP metrics and the request log line.
 *
 * One middleware that writes its headers on the final response, because the
 * stock `requestId` and `cors` middleware set headers before the handler has
 * answered: Hono then keeps a placeholder response and rebuilds the handler's
 * response to merge them, which cost more than the rest of this together
 * (docs/performance.md). Preflight requests still go to Hono's `cors`.
 */
export function edge(config: Config, log: Logger, metrics: Metrics): MiddlewareHandler<EdgeEnv> {
  const origins = new Set(config.http.corsOrigins);
  const preflight = cors({
    origin: (origin) => (origins.has(origin) ? origin : null),
    credentials: true,
    allowHeaders: CORS_ALLOW_HEADERS,
    allowMethods: CORS_ALLOW_METHODS,
    maxAge: 600,
  });
  const counters = new Map<string, { inc(): void }>();
  const timers = new Map<string, { observe(seconds: number): void }>();

  function measure(c: HonoContext, started: number, requestId: string) {
    const seconds = (performance.now() - started) / 1000;
    const method = c.req.method;
    const route = routePath(c) || "unmatched";
    const status = c.res.status;
    // Label children looked up once per combination: prom-client hashes label objects on every call.
    const countKey = `${method} ${route} ${status}`;
    let counter = counters.get(countKey);
    if (!counter) {
      counter = metrics.httpRequests.labels(method, route, String(status));
      counters.set(countKey, counter);
    }
    counter.inc();
    const timeKey = `${method} ${route}`;
    let timer = timers.get(timeKey);
    if (!timer) {
      timer = metrics.httpDuration.labels(method, route);
      timers.set(timeKey, timer);
    }
    timer.observe(seconds);
    const quiet = route === "/health" || route === "/metrics";
    log[quiet ? "debug" : "info"]("request", { requestId, ...c.get("caller"), method, path: c.req.path, status, durationMs: Math.round(seconds * 100_000) / 100 });
  }

  return async (c, next) => {
    const started = performance.now();
    const given = c.req.header("x-request-id");
    const requestId = given && PLAIN_ID.test(given) ? given : crypto.randomUUID();
    c.set("requestId", requestId);

    if (c.req.method === "OPTIONS") {
      const answered = await preflight(c, next);
      if (answered) c.res = answered;
    } else {
      await next();
      const headers = c.res.headers;
      // Only a configured origin is told anything (the ingress edge's pages and everything else stay bare).
      const origin = c.req.header("origin");
      if (origin && origins.has(origin)) {
        headers.set("Access-Control-Allow-Origin", origin);
        headers.set("Access-Control-Allow-Credentials", "true");
      }
      headers.append("Vary", "Origin");
    }
    c.res.headers.set("X-Request-Id", requestId);
    measure(c, started, requestId);
  };
}
