import { resolve } from "node:path";
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { HonoAdapter } from "@bull-board/hono";
import { Hono, type Context } from "hono";
import { serveStatic } from "hono/bun";
import { QUEUE_NAMES, type Queues } from "../../workers/queues";
import type { AppEnv } from "../app";
import { callerIds, type Actor } from "../auth/actor";
import { resolveActor } from "../auth/resolve";
import { recordAudit } from "../audit";
import { boardUi } from "./queue-board-ui";
import { AppError, errorBody, httpStatusOf, isAppError, type AppErrorCode } from "../errors";
import type { Services } from "../services";
import type { RequestInfo } from "../trpc";

/** Where the queue dashboard (bull-board) is served. */
export const QUEUE_BOARD_PATH = "/admin/queues";

/**
 * What an admin may change from the dashboard: repairs (retry, promote,
 * clean, pause, resume, run a schedule now). Authoring or rewriting work
 * (adding jobs, editing their data, emptying or obliterating a queue,
 * changing concurrency or rate limits, removing schedules) would bypass the
 * queue contract and the records jobs stand for, so it is refused.
 */
const ALLOWED_CHANGES: Array<{ pattern: RegExp; action: string }> = [
  { pattern: /^\/api\/queues\/(?<op>pause|resume)$/, action: "all_$op" },
  { pattern: /^\/api\/queues\/(?<queue>[^/]+)\/(?<op>pause|resume|promote)$/, action: "$op" },
  { pattern: /^\/api\/queues\/(?<queue>[^/]+)\/(?<op>retry|clean)\/(?<status>[a-z-]+)$/, action: "$op_all" },
  { pattern: /^\/api\/queues\/(?<queue>[^/]+)\/job-schedulers\/(?<scheduler>[^/]+)\/run$/, action: "scheduler_run" },
  // A limit a worker set on itself runs out anyway; releasing it early is a repair.
  { pattern: /^\/api\/queues\/(?<queue>[^/]+)\/rate-limit\/release$/, action: "rate_limit_release" },
  { pattern: /^\/api\/queues\/(?<queue>[^/]+)\/(?<job>[^/]+)\/(?<op>retry|clean|promote)$/, action: "job_$op" },
];

type Change = { action: string; queue: string | null; details: Record<string, string> };

function allowedChange(method: string, path: string): Change | null {
  if (method !== "PUT") return null;
  for (const { pattern, action } of ALLOWED_CHANGES) {
    const groups = pattern.exec(path)?.groups;
    if (!groups) continue;
    const { op, queue, ...details } = Object.fromEntries(Object.entries(groups).map(([k, val]) => [k, decodeURIComponent(val)]));
    return { action: action.replace("$op", op ?? ""), queue: queue ?? null, details };
  }
  return null;
}

type Role = "admin" | "operator";

/** The same rule as `operatorProcedure`: a signed-in person (not an API key) of an active account with an operator or admin role. */
function dashboardRole(actor: Actor): Role {
  if (actor.kind === "apiKey") throw new AppError("INSUFFICIENT_SCOPE", "The queue dashboard cannot be used with an API key", { details: { requiredScope: null } });
  if (actor.kind !== "user") throw new AppError("UNAUTHENTICATED", "Authentication required");
  if (actor.user.status === "suspended") throw new AppError("ACCOUNT_SUSPENDED", "This account is suspended");
  if (actor.user.status !== "active") throw new AppError("EMAIL_NOT_VERIFIED", "Verify your email address first");
  if (actor.user.role !== "admin" && actor.user.role !== "operator") throw new AppError("FORBIDDEN", "Operator or admin role required");
  return actor.user.role;
}

type BoardEnv = { Bindings: { requestId: string | null } };

/**
 * A refusal in the API's error envelope that bull-board's UI can also show:
 * it reads `error.key` (a translation key) as the title and `message` as the
 * text, so an operator sees why instead of an empty red notice.
 */
function refusal(appCode: AppErrorCode, message: string, requestId: string | null) {
  const body = errorBody(appCode, message, requestId);
  return { ...body, error: { ...body.error, key: appCode === "INTERNAL" ? "ERRORS.INTERNAL_SERVER_ERROR" : "ERRORS.FORBIDDEN" }, message, code: appCode };
}

/** One bull-board over every queue of the contract; operators get it read-only. */
function createBoard(queues: Queues, readOnly: boolean) {
  // bull-board hands serveStatic a root relative to the working directory; fix it now so a later chdir cannot move it.
  const adapter = new HonoAdapter(((opts: Parameters<typeof serveStatic>[0]) => serveStatic({ ...opts, root: resolve(opts?.root ?? ".") })) as typeof serveStatic);
  adapter.setBasePath(QUEUE_BOARD_PATH);
  createBullBoard({
    queues: QUEUE_NAMES.map((name) => new BullMQAdapter(queues.queue(name), { readOnlyMode: readOnly })),
    serverAdapter: adapter,
    options: { uiConfig: { boardTitle: readOnly ? "Sahary queues (read-only)" : "Sahary queues" } },
  });
  const board = new Hono<BoardEnv>().basePath(QUEUE_BOARD_PATH);
  board.route("/", adapter.registerPlugin());
  board.notFound((c) => c.json(refusal("NOT_FOUND", `No route for ${c.req.method} ${c.req.path}`, c.env.requestId), 404));
  return board;
}

/**
 * The queue dashboard at /admin/queues (HTML, its static files and its JSON
 * API), behind the same session as the API: the cookie (honoured only from
 * the platform's own origins, which is the CSRF defence) or a bearer session
 * token. Admins get the board with the repairs above, each written to the
 * audit log; operators get it read-only; everyone else the standard error.
 * The UI's scripts come from queue-board-ui.ts, without the controls this
 * policy refuses.
 */
export function queueBoardRoutes(services: Services, requestInfo: (c: Context<AppEnv>) => RequestInfo) {
  // Built on first use: most processes never serve the dashboard.
  let boards: Record<Role, ReturnType<typeof createBoard>> | undefined;
  const boardFor = (role: Role) => {
    if (!boards) {
      const ui = boardUi();
      if (!ui.complete) services.log.warn("queue dashboard: the UI could not be limited to the allowed repairs, so admins get it read-only", { problems: ui.problems });
      boards = { admin: createBoard(services.queues, !ui.complete), operator: createBoard(services.queues, true) };
    }
    return boards[role];
  };
  const routes = new Hono<AppEnv>();

  const serve = async (c: Context<AppEnv>) => {
    const requestId = c.get("requestId") ?? null;
    let setCookie: string | undefined;
    try {
      const resolved = await resolveActor(services, c.req.raw.headers);
      setCookie = resolved.setCookie;
      c.set("caller", callerIds(resolved.actor));
      const role = dashboardRole(resolved.actor);
      const method = c.req.method;
      const path = c.req.path.slice(QUEUE_BOARD_PATH.length);
      let change: Change | null = null;
      if (method !== "GET" && method !== "HEAD") {
        // As for tRPC mutations (server/auth/csrf.ts): a change made with the cookie must say where it comes from.
        if (resolved.actor.kind === "user" && resolved.actor.via === "cookie" && !c.req.header("origin")) {
          throw new AppError("CROSS_SITE_REQUEST", "A change authenticated by the session cookie needs an Origin header");
        }
        if (role !== "admin") throw new AppError("FORBIDDEN", "The queue dashboard is read-only for operators");
        change = allowedChange(method, path);
        if (!change) throw new AppError("FORBIDDEN", "This dashboard action is disabled: it would bypass the queue contract", { details: { method, path } });
      }
      const script = method === "GET" && path.startsWith("/static/js/") ? boardUi().scripts.get(path.slice("/static/".length)) : undefined;
      if (script !== undefined) {
        return c.body(script, 200, { "content-type": "text/javascript; charset=utf-8", "cache-control": "private, max-age=86400", ...(setCookie ? { "set-cookie": setCookie } : {}) });
      }
      let response = await boardFor(role).fetch(c.req.raw, { requestId });
      if (response.headers.get("content-type")?.startsWith("text/html")) {
        // The page asks Google for its fonts; the dashboard must work offline and leak nothing, so it uses the system's.
        const html = (await response.text()).replace(/<link[^>]*fonts\.(?:googleapis|gstatic)\.com[^>]*>\s*/g, "");
        response = new Response(html, { status: response.status, headers: response.headers });
        response.headers.delete("content-length");
      }
      if (!path.startsWith("/static/")) response.headers.set("cache-control", "private, no-store");
      if (setCookie) response.headers.append("Set-Cookie", setCookie);
      if (change && response.ok) {
        await recordAudit(
          services.db,
          { actor: resolved.actor, request: requestInfo(c) },
          { action: `admin.queue.${change.action}`, targetType: "queue", targetId: change.queue ?? "*", metadata: { method, path, ...change.details } },
        );
      }
      return response;
    } catch (error) {
      if (!isAppError(error)) throw error;
      const response = c.json(refusal(error.appCode, error.message, requestId), httpStatusOf(error.appCode) as 400);
      if (setCookie) response.headers.append("Set-Cookie", setCookie);
      return response;
    }
  };

  routes.all(QUEUE_BOARD_PATH, serve);
  routes.all(`${QUEUE_BOARD_PATH}/*`, serve);
  return routes;
}
