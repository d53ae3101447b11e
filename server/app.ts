import { trpcServer } from "@hono/trpc-server";
import type { TRPCError } from "@trpc/server";
import { Hono, type Context as HonoContext } from "hono";
import { bodyLimit } from "hono/body-limit";
import { getConnInfo } from "hono/bun";
import { HTTPException } from "hono/http-exception";
import { secureHeaders } from "hono/secure-headers";
import { queueBoardRoutes } from "./admin/queue-board";
import { callerIds } from "./auth/actor";
import { billingRoutes } from "./billing/http";
import { clientAddress } from "./client-ip";
import type { Config } from "./config";
import { AppError, appCodeForTrpcError, errorBody, httpStatusOf, type AppErrorCode } from "./errors";
import { edgeRoutes } from "./ingress/edge";
import { serializeError } from "./log";
import { edge } from "./edge";
import { fastQueries } from "./fast-query";
import { registerPlatformMetrics } from "./metrics/platform";
import { createMetrics } from "./metrics/registry";
import { metricsRoute } from "./metrics/route";
import { openApiRoutes } from "./openapi/routes";
import { accountPageRoutes } from "./pages/account-pages";
import { listProcedures } from "./procedures";
import { checkReadiness } from "./readiness";
import { appRouter } from "./router";
import type { Services } from "./services";
import { costOf, createContext, type Context, type Meta, type RequestInfo } from "./trpc";
import { statusRoutes } from "./status/http";
import { stripeWebhook } from "./webhooks/stripe";

export type AppEnv = { Variables: { requestId: string; caller?: ReturnType<typeof callerIds> } };

/**
 * The HTTP surface: middleware, tRPC at /trpc, health, readiness and metrics.
 * Webhooks and file routes mount here too, outside /trpc so they own their body.
 */
export function createApp(services: Services) {
  const { config, log } = services;
  const metrics = createMetrics(listProcedures(appRouter));
  registerPlatformMetrics(metrics.registry, services, config.metrics.cacheMs);
  const app = new Hono<AppEnv>();

  app.use(edge(config, log, metrics));

  // Every request gets an answer within REQUEST_TIMEOUT_MS: the error envelope with 504 rather than a
  // dropped connection. The work itself is bounded below (statement_timeout, Docker and Stripe timeouts).
  app.use(async (c, next) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<true>((resolve) => (timer = setTimeout(() => resolve(true), config.http.requestTimeoutMs)));
    const timedOut = await Promise.race([next().then(() => false), expired]);
    clearTimeout(timer);
    if (!timedOut) return;
    log.warn("request deadline exceeded", { requestId: c.get("requestId"), method: c.req.method, path: c.req.path, timeoutMs: config.http.requestTimeoutMs });
    return fail(c, "DEADLINE_EXCEEDED", `No answer within ${config.http.requestTimeoutMs} ms; the work may still complete, check before retrying`);
  });

  app.use(secureHeaders({ crossOriginResourcePolicy: "same-site", strictTransportSecurity: config.production ? "max-age=31536000; includeSubDomains" : false }));

  // The ingress proxy's edge answers: for instances' visitors, not API clients, and before the body
  // limit, since they never read a visitor's body.
  app.route("/", edgeRoutes(services));

  app.use(
    bodyLimit({
      maxSize: config.http.bodyLimitBytes,
      onError: (c) => fail(c, "PAYLOAD_TOO_LARGE", `Request body exceeds ${config.http.bodyLimitBytes} bytes`),
    }),
  );

  app.get("/health", (c) => c.json({ status: "ok" }));

  app.get("/ready", async (c) => {
    const readiness = await checkReadiness(services);
    return c.json(readiness, readiness.status === "ready" ? 200 : 503);
  });

  app.route("/", metricsRoute(metrics, config.metrics.token));
  app.route("/", openApiRoutes({ router: appRouter, publicUrl: config.publicUrl, log }).routes);
  app.route("/", accountPageRoutes());

  // Outside /trpc: these routes own their request body (the webhook's signature is over the raw bytes);
  // the queue dashboard is a web UI of its own.
  app.route("/", stripeWebhook(services));
  app.route("/", billingRoutes(services));
  app.route("/", statusRoutes(services));
  app.route(
    "/",
    queueBoardRoutes(services, (c) => requestInfo(c, config.http.trustedProxyHops)),
  );

  // A change made through the API (to sessions, users or API keys; to instances) applies to the very next request
  // in every API process: its answer waits until they all confirm they have dropped what they cached.
  services.changes.start();
  app.post("/trpc/*", async (c, next) => {
    await next();
    if (c.res.status < 300 && changesCachedState(c.req.path)) await services.changes.settle();
  });

  const trpc = {
    endpoint: "/trpc",
    router: appRouter,
    // One charge against the caller's budgets for all the calls the request carries (a batch).
    createContext: async (opts: { req: Request; resHeaders: Headers; info: { calls: ReadonlyArray<{ procedure: { _def: { meta?: unknown } } | null }> } }, c: HonoContext) => {
      const ctx = await createContext(services, {
        headers: opts.req.headers,
        resHeaders: opts.resHeaders,
        request: requestInfo(c as HonoContext<AppEnv>, config.http.trustedProxyHops),
        cost: opts.info.calls.reduce((sum, call) => sum + costOf(call.procedure?._def.meta as Meta | undefined), 0),
        observe: metrics.procedures.observe,
      });
      c.set("caller", callerIds(ctx.actor));
      return ctx;
    },
    // A refusal that says when to come back says it in the standard header too.
    responseMeta: ({ errors }: { errors: readonly TRPCError[] }) => {
      const waits = errors.flatMap((error) => (error instanceof AppError && typeof error.details?.retryAfterSeconds === "number" ? [error.details.retryAfterSeconds] : []));
      return waits.length ? { headers: new Headers({ "Retry-After": String(Math.max(...waits)) }) } : {};
    },
    onError: ({ error, path, type, ctx }: { error: TRPCError; path?: string | undefined; type: "query" | "mutation" | "subscription" | "unknown"; ctx?: Context | undefined }) => {
      metrics.procedures.onError(path, type, error);
      if (appCodeForTrpcError(error) === "INTERNAL") {
        log.error("procedure failed", { path, requestId: ctx?.request.requestId, error: serializeError(error.cause ?? error) });
      }
    },
  };
  app.get("/trpc/*", fastQueries(trpc));
  app.use("/trpc/*", trpcServer({ ...trpc, allowMethodOverride: false }));

  app.notFound((c) => fail(c, "NOT_FOUND", `No route for ${c.req.method} ${c.req.path}`));

  app.onError((error, c) => {
    if (error instanceof HTTPException && error.status < 500) {
      const code: AppErrorCode = error.status === 413 ? "PAYLOAD_TOO_LARGE" : error.status === 404 ? "NOT_FOUND" : "MALFORMED_REQUEST";
      return fail(c, code, error.message || "Bad request");
    }
    log.error("unhandled error", { requestId: c.get("requestId"), path: c.req.path, error: serializeError(error) });
    return fail(c, "INTERNAL", "Internal server error");
  });

  return app;
}

export type App = ReturnType<typeof createApp>;

function fail(c: HonoContext<AppEnv>, code: AppErrorCode, message: string) {
  return c.json(errorBody(code, message, c.get("requestId") ?? null), httpStatusOf(code) as 400);
}

/**
 * Mutations under `auth.` and `admin.` are the ones that end sessions, revoke keys or change users (and
 * admins act on instances); under `compute.` they change instances.
 */
function changesCachedState(path: string): boolean {
  return path
    .slice("/trpc/".length)
    .split(",")
    .some((procedure) => procedure.startsWith("auth.") || procedure.startsWith("admin.") || procedure.startsWith("compute."));
}

function requestInfo(c: HonoContext<AppEnv>, trustedProxyHops: number): RequestInfo {
  return { requestId: c.get("requestId"), ip: clientIp(c, trustedProxyHops), userAgent: c.req.header("user-agent")?.slice(0, 512) ?? null };
}

/** The client address (server/client-ip.ts): the peer, or what the trusted proxies appended to X-Forwarded-For. */
export function clientIp(c: HonoContext, trustedProxyHops: number): string | null {
  let peer: string | null = null;
  try {
    peer = getConnInfo(c).remote.address ?? null;
  } catch {
    // No socket behind this request (an in-process fetch).
  }
  return clientAddress(peer, c.req.header("x-forwarded-for"), trustedProxyHops);
}

/**
 * Bun.serve settings that follow the configuration: a connection may stay
 * silent for longer than a request may take (Bun's default, 10 s, dropped slow
 * requests without an answer), and Bun's own body cap is the backstop behind
 * Hono's bodyLimit, which answers first with a 413 body.
 */
export function serveOptions(config: Config) {
  return {
    idleTimeout: Math.min(255, Math.ceil(config.http.requestTimeoutMs / 1000) + 10),
    maxRequestBodySize: config.http.bodyLimitBytes * 2,
  };
}
