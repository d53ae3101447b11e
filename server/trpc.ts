import { initTRPC } from "@trpc/server";
import type { AuthenticatedActor, Actor, Scope } from "./auth/actor";
import { resolveActor } from "./auth/resolve";
import { AppError, appCodeForTrpcError, validationIssues } from "./errors";
import type { Services } from "./services";

export type RequestInfo = { requestId: string; ip: string | null; userAgent: string | null };

/** What every procedure receives: the process's services, the caller and the request. */
export type Context = Services & {
  actor: Actor;
  request: RequestInfo;
  /** Headers to add to the HTTP response (cookies). Procedures append, never set. */
  resHeaders: Headers;
};

/** Per-procedure declarations read by the builders. */
export type Meta = {
  /** The API-key scope this procedure needs. Without one, API keys are refused. */
  scope?: Scope;
};

export async function createContext(services: Services, input: { headers: Headers; resHeaders: Headers; request: RequestInfo }): Promise<Context> {
  const { actor, setCookie } = await resolveActor(services, input.headers);
  if (setCookie) input.resHeaders.append("Set-Cookie", setCookie);
  return { ...services, actor, request: input.request, resHeaders: input.resHeaders };
}

const t = initTRPC
  .context<Context>()
  .meta<Meta>()
  .create({
    // Never derive this from NODE_ENV: a non-production env would send stacks (stack-pitfalls T-4).
    isDev: false,
    // Subscriptions over SSE: a comment every 5 s keeps a quiet stream alive (Bun closes a connection idle for 10 s).
    sse: { ping: { enabled: true, intervalMs: 5000 } },
    errorFormatter({ shape, error, ctx }) {
      const appCode = appCodeForTrpcError(error);
      return {
        message: appCode === "INTERNAL" ? "Internal server error" : error.message,
        code: shape.code,
        data: {
          code: shape.data.code,
          httpStatus: shape.data.httpStatus,
          path: shape.data.path,
          appCode,
          requestId: ctx?.request.requestId ?? null,
          issues: validationIssues(error.cause),
          details: error instanceof AppError ? error.details : undefined,
        },
      };
    },
  });

export const router = t.router;
export const createCallerFactory = t.createCallerFactory;

/**
 * A dependency that stops answering is the platform's problem, not the
 * caller's: it surfaces as 503 DEPENDENCY_UNAVAILABLE rather than a 500.
 */
const dependencyErrors = t.middleware(async ({ next }) => {
  const result = await next();
  if (!result.ok && !(result.error instanceof AppError) && isDependencyFailure(result.error.cause)) {
    return { ...result, error: new AppError("DEPENDENCY_UNAVAILABLE", "A platform dependency is unavailable; retry shortly", { cause: result.error.cause }) };
  }
  return result;
});

export const publicProcedure = t.procedure.use(dependencyErrors);

/** A signed-in user or API key whose account is not suspended (and whose key holds the scope). */
export const authedProcedure = publicProcedure.use(({ ctx, meta, next }) => {
  const actor = ctx.actor;
  if (actor.kind !== "user" && actor.kind !== "apiKey") throw new AppError("UNAUTHENTICATED", "Authentication required");
  if (actor.user.status === "suspended") throw new AppError("ACCOUNT_SUSPENDED", "This account is suspended");
  if (actor.kind === "apiKey" && (!meta?.scope || !actor.scopes.includes(meta.scope))) {
    throw new AppError("INSUFFICIENT_SCOPE", meta?.scope ? `This API key lacks the ${meta.scope} scope` : "This procedure cannot be called with an API key", {
      details: { requiredScope: meta?.scope ?? null },
    });
  }
  return next({ ctx: { actor: actor as AuthenticatedActor, user: actor.user } });
});

/** As `authedProcedure`, and the email address has been verified. */
export const verifiedProcedure = authedProcedure.use(({ ctx, next }) => {
  if (ctx.user.status !== "active") throw new AppError("EMAIL_NOT_VERIFIED", "Verify your email address first");
  return next();
});

/** Operators and admins: read access to platform-wide data. */
export const operatorProcedure = verifiedProcedure.use(({ ctx, next }) => {
  if (ctx.user.role !== "operator" && ctx.user.role !== "admin") throw new AppError("FORBIDDEN", "Operator or admin role required");
  return next();
});

/** Admins only: anything that changes other users, money or the platform. */
export const adminProcedure = verifiedProcedure.use(({ ctx, next }) => {
  if (ctx.user.role !== "admin") throw new AppError("FORBIDDEN", "Admin role required");
  return next();
});

const DEPENDENCY_ERROR_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "CONNECT_TIMEOUT", "CONNECTION_CLOSED", "CONNECTION_ENDED", "CONNECTION_DESTROYED", "57P01", "57P03", "53300"]);

function isDependencyFailure(error: unknown): boolean {
  for (let e = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && DEPENDENCY_ERROR_CODES.has(code)) return true;
    const message = (e as { message?: unknown }).message;
    // ioredis without an offline queue, and BullMQ when its connection is gone.
    if (typeof message === "string" && (/Stream isn't writeable/.test(message) || /Connection is closed/.test(message))) return true;
  }
  return false;
}

