import { trpcServer } from "@hono/trpc-server";
import type { TRPCError } from "@trpc/server";
import { Hono, type Context as HonoContext } from "hono";
import { bodyLimit } from "hono/body-limit";
import { getConnInfo } from "hono/bun";
import { HTTPException } from "hono/http-exception";
import { secureHeaders } from "hono/secure-headers";
import { queueBoardRoutes } from "./admin/queue-board";
import { billingRoutes } from "./billing/http";
import { appCodeForTrpcError, errorBody, httpStatusOf, type AppErrorCode } from "./errors";
import { serializeError } from "./log";
import { edge } from "./edge";
import { fastQueries } from "./fast-query";
import { createMetrics } from "./metrics";
import { checkReadiness } from "./readiness";
import { appRouter } from "./router";
import type { Services } from "./services";
import { createContext, type Context, type RequestInfo } from "./trpc";
import { stripeWebhook } from "./webhooks/stripe";

export type AppEnv = { Variables: { requestId: string } };

/**
 * The HTTP surface: middleware, tRPC at /trpc, health, readiness and metrics.
 * Webhooks and file routes mount here too, outside /trpc so they own their body.
 */
export function createApp(services: Services) {
  const { config, log } = services;
  const metrics = createMetrics();
  const app = new Hono<AppEnv>();

  app.use(secureHeaders({ crossOriginResourcePolicy: "same-site", strictTransportSecurity: config.production ? "max-age=31536000; includeSubDomains" : false }));
  app.use(edge(config, log, metrics));

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

  app.get("/metrics", async (c) => c.text(await metrics.registry.metrics(), 200, { "content-type": metrics.registry.contentType }));

  // Outside /trpc: these routes own their request body (the webhook's signature is over the raw bytes);
  // the queue dashboard is a web UI of its own.
  app.route("/", stripeWebhook(services));
  app.route("/", billingRoutes(services));
  app.route("/", queueBoardRoutes(services, (c) => requestInfo(c, config.http.trustProxy)));

  // A change to sessions, users or API keys made through the API applies to the very next request in
  // every API process: its answer waits until they all confirm they have dropped what they cached.
  services.authCache.start();
  app.post("/trpc/*", async (c, next) => {
    await next();
    if (c.res.status < 300 && changesCredentials(c.req.path)) await services.authCache.settle();
  });

  const trpc = {
    endpoint: "/trpc",
    router: appRouter,
    createContext: (opts: { req: Request; resHeaders: Headers }, c: HonoContext) =>
      createContext(services, { headers: opts.req.headers, resHeaders: opts.resHeaders, request: requestInfo(c as HonoContext<AppEnv>, config.http.trustProxy) }),
    onError: ({ error, path, ctx }: { error: TRPCError; path?: string | undefined; ctx?: Context | undefined }) => {
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

/** Mutations under `auth.` and `admin.` are the ones that end sessions, revoke keys or change users. */
function changesCredentials(path: string): boolean {
  return path
    .slice("/trpc/".length)
    .split(",")
    .some((procedure) => procedure.startsWith("auth.") || procedure.startsWith("admin."));
}

function requestInfo(c: HonoContext<AppEnv>, trustProxy: boolean): RequestInfo {
  return { requestId: c.get("requestId"), ip: clientIp(c, trustProxy), userAgent: c.req.header("user-agent")?.slice(0, 512) ?? null };
}

/** The peer address, or the first X-Forwarded-For hop when behind a trusted proxy. */
export function clientIp(c: HonoContext, trustProxy: boolean): string | null {
  if (trustProxy) {
    const forwarded = c.req.header("x-forwarded-for")?.split(",")[0]?.trim();
    if (forwarded) return forwarded;
  }
  try {
    return getConnInfo(c).remote.address ?? null;
  } catch {
    return null;
  }
}
