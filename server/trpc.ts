import { initTRPC, type TRPCError, type TRPCProcedureType } from "@trpc/server";
import { anonymous, type AuthenticatedActor, type Actor, type Scope } from "./auth/actor";
import { cookieMutationProblem } from "./auth/csrf";
import { resolveActor } from "./auth/resolve";
import { AppError, appCodeForTrpcError, validationIssues } from "./errors";
import { MAX_REPORTED_ISSUES, rawInputProblem } from "./input";
import { budgetExceeded, chargeCaller, DEFAULT_COST, type Charge } from "./limits/budgets";
import type { Services } from "./services";

export type RequestInfo = { requestId: string; ip: string | null; userAgent: string | null };

/** Told the outcome of every procedure call made over HTTP (metrics). */
export type ProcedureObserver = (call: { path: string; type: TRPCProcedureType; seconds: number; error: TRPCError | null }) => void;

/** What every procedure receives: the process's services, the caller and the request. */
export type Context = Services & {
  actor: Actor;
  request: RequestInfo;
  /** Headers to add to the HTTP response (cookies). Procedures append, never set. */
  resHeaders: Headers;
  /** The HTTP request's headers; absent for in-process callers. */
  headers?: Headers;
  /**
   * Why the caller could not be identified (the credential lookup failed).
   * Every procedure then fails with it: raised here rather than from
   * createContext, the answer carries the request id like any other.
   */
  contextError?: unknown;
  /** This HTTP request's charge against the caller's budgets (absent for in-process callers). */
  budget?: Charge;
  /** Told each procedure call's outcome (metrics); absent for in-process callers. */
  observe?: ProcedureObserver;
};

/** Who may call a procedure; each builder below sets it, so the API reference can say. */
export type Access = "public" | "user" | "verified" | "operator" | "admin";

/** Per-procedure declarations read by the builders (and by the OpenAPI document). */
export type Meta = {
  /** The API-key scope this procedure needs. Without one, API keys are refused. */
  scope?: Scope;
  /** Points a call spends from the caller's budgets (default 1); Docker- and provider-backed work costs more. */
  cost?: number;
  /**
   * The call records work for a worker and enqueues its job: refused with 503
   * at once while the queue's Redis connection is down, before anything is
   * written (stack-pitfalls B-9). An enqueue lost after the check is recovered
   * by the sweep that re-enqueues recorded work.
   */
  enqueues?: boolean;
  access?: Access;
  /** The API reference's one-line summary of the procedure. */
  summary?: string;
  /** An example input for the API reference, where the one derived from the schema would read badly. */
  example?: unknown;
};

/** What a call costs, from its procedure's meta (an unknown procedure costs the default). */
export function costOf(meta: Meta | undefined): number {
  return meta?.cost ?? DEFAULT_COST;
}

/**
 * The context of one HTTP request: who is calling, and the request's charge
 * against their budgets (`cost`, the sum over the calls of a batch: one Redis
 * round trip per request, server/limits/budgets.ts).
 */
export async function createContext(services: Services, input: { headers: Headers; resHeaders: Headers; request: RequestInfo; cost: number; observe?: ProcedureObserver }): Promise<Context> {
  const base = { ...services, request: input.request, resHeaders: input.resHeaders, headers: input.headers, observe: input.observe };
  try {
    const { actor, setCookie } = await resolveActor(services, input.headers);
    if (setCookie) input.resHeaders.append("Set-Cookie", setCookie);
    const spender = actor.kind === "user" || actor.kind === "apiKey" ? { userId: actor.user.id, apiKeyId: actor.kind === "apiKey" ? actor.apiKeyId : null } : null;
    return { ...base, actor, budget: await chargeCaller(services.limits, spender, input.cost) };
  } catch (error) {
    return { ...base, actor: anonymous, contextError: error };
  }
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
      const validation = validationIssues(error.cause, MAX_REPORTED_ISSUES);
      return {
        message: appCode === "INTERNAL" ? "Internal server error" : error.message,
        code: shape.code,
        data: {
          code: shape.data.code,
          httpStatus: shape.data.httpStatus,
          path: shape.data.path,
          appCode,
          requestId: ctx?.request.requestId ?? null,
          issues: validation?.issues,
          issuesOmitted: validation?.omitted || undefined,
          details: error instanceof AppError ? error.details : undefined,
        },
      };
    },
  });

export const router = t.router;
export const createCallerFactory = t.createCallerFactory;

/**
 * Every procedure's checks around the call, in one middleware (each tRPC
 * middleware level copies the call's options twice; these used to be three):
 * - the credential lookup failed in createContext: every call fails with it;
 * - rules on the raw input, whatever the procedure's schema: no NUL byte in
 *   any string or key (PostgreSQL refuses it in text), bounded nesting;
 * - a dependency that stops answering is the platform's problem, not the
 *   caller's: it surfaces as 503 DEPENDENCY_UNAVAILABLE rather than a 500.
 */
const guarded = t.middleware(async ({ ctx, getRawInput, next }) => {
  const failed = ctx.contextError;
  if (failed !== undefined) throw failed instanceof AppError || !isDependencyFailure(failed) ? failed : dependencyUnavailable(failed);
  const problem = rawInputProblem(await getRawInput());
  if (problem) {
    throw new AppError("VALIDATION_FAILED", `Invalid input: ${problem.path || "the input"} ${problem.message}`, {
      cause: { issues: [{ path: problem.path ? problem.path.split(".") : [], message: problem.message }] },
    });
  }
  const result = await next();
  if (!result.ok && !(result.error instanceof AppError) && isDependencyFailure(result.error.cause)) return { ...result, error: dependencyUnavailable(result.error.cause) };
  return result;
});

const dependencyUnavailable = (cause: unknown) => new AppError("DEPENDENCY_UNAVAILABLE", "A platform dependency is unavailable; retry shortly", { cause });

/** Outermost, so it sees the error the caller gets (after the mapping above) and the whole duration. */
const observed = t.middleware(async ({ ctx, path, type, next }) => {
  const started = performance.now();
  const result = await next();
  ctx.observe?.({ path, type, seconds: (performance.now() - started) / 1000, error: result.ok ? null : result.error });
  return result;
});

export const publicProcedure = t.procedure.use(observed).use(guarded).meta({ access: "public" });

/** A signed-in user or API key whose account is not suspended (and whose key holds the scope). */
export const authedProcedure = publicProcedure
  .use(({ ctx, meta, type, next }) => {
    const actor = ctx.actor;
    if (actor.kind !== "user" && actor.kind !== "apiKey") throw new AppError("UNAUTHENTICATED", "Authentication required");
    if (ctx.budget && !ctx.budget.ok) throw budgetExceeded(ctx.budget);
    if (actor.kind === "user" && actor.via === "cookie" && type === "mutation" && ctx.headers) {
      const problem = cookieMutationProblem(ctx.headers, ctx.config);
      if (problem) throw new AppError("CROSS_SITE_REQUEST", problem);
    }
    if (actor.user.status === "suspended") throw new AppError("ACCOUNT_SUSPENDED", "This account is suspended");
    if (actor.kind === "apiKey" && (!meta?.scope || !actor.scopes.includes(meta.scope))) {
      throw new AppError("INSUFFICIENT_SCOPE", meta?.scope ? `This API key lacks the ${meta.scope} scope` : "This procedure cannot be called with an API key", {
        details: { requiredScope: meta?.scope ?? null },
      });
    }
    // The connection's own state: no round trip, and no waiting for a reconnect.
    if (meta?.enqueues && ctx.redis.status !== "ready") throw new AppError("DEPENDENCY_UNAVAILABLE", "The job queue is unavailable; nothing was changed, retry shortly");
    return next({ ctx: { actor: actor as AuthenticatedActor, user: actor.user } });
  })
  .meta({ access: "user" });

/** As `authedProcedure`, and the email address has been verified. */
export const verifiedProcedure = authedProcedure
  .use(({ ctx, next }) => {
    if (ctx.user.status !== "active") throw new AppError("EMAIL_NOT_VERIFIED", "Verify your email address first");
    return next();
  })
  .meta({ access: "verified" });

/** Operators and admins: read access to platform-wide data. */
export const operatorProcedure = verifiedProcedure
  .use(({ ctx, next }) => {
    if (ctx.user.role !== "operator" && ctx.user.role !== "admin") throw new AppError("FORBIDDEN", "Operator or admin role required");
    return next();
  })
  .meta({ access: "operator" });

/** Admins only: anything that changes other users, money or the platform. */
export const adminProcedure = verifiedProcedure
  .use(({ ctx, next }) => {
    if (ctx.user.role !== "admin") throw new AppError("FORBIDDEN", "Admin role required");
    return next();
  })
  .meta({ access: "admin" });

const DEPENDENCY_ERROR_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "57P01",
  "57P03",
  "53300",
]);

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
