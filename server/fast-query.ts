import { getTRPCErrorFromUnknown, getTRPCErrorShape, transformTRPCResponse, type AnyTRPCRouter, type TRPCError } from "@trpc/server";
import { getHTTPStatusCode } from "@trpc/server/http";
import type { Context as HonoContext, MiddlewareHandler } from "hono";

/**
 * The short way through tRPC for the requests clients poll: a GET of one
 * query (`/trpc/<path>?input=<json>`, no batch). It calls the procedure
 * itself — with its whole middleware chain: authentication, scopes, rate
 * limits, input validation, error mapping — and writes the answer exactly as
 * tRPC's fetch adapter does (same body, status, `vary` and `content-type`
 * headers, context cookies, error shape and `onError`), using tRPC's public
 * helpers. It skips what a single query does not need: URL re-parsing,
 * content-type negotiation, abort-signal plumbing and batch bookkeeping,
 * which cost about as much as the rest of the request (docs/performance.md).
 *
 * Anything else — batches, mutations, subscriptions, streaming (`trpc-accept`),
 * an unknown path, input that is not JSON — goes on to the full handler
 * unchanged; tests/integration/fast-query.test.ts holds the two to the same
 * answers.
 */

type Options<Ctx> = {
  router: AnyTRPCRouter;
  endpoint: string;
  /** As the full handler's, with the one call this request carries in `info.calls`. */
  createContext(opts: { req: Request; resHeaders: Headers; info: { calls: ReadonlyArray<{ procedure: { _def: { meta?: unknown } } | null }> } }, c: HonoContext): Promise<Ctx>;
  /** As the full handler's: headers to add to the answer, given its errors. */
  responseMeta?(opts: { errors: readonly TRPCError[] }): { headers?: Headers };
  onError(opts: { error: TRPCError; path: string; input: unknown; ctx: Ctx | undefined; type: "query"; req: Request }): void;
};

export function fastQueries<Ctx>(opts: Options<Ctx>): MiddlewareHandler {
  const { router } = opts;
  const config = router._def._config;
  const prefix = `${opts.endpoint}/`;

  return async (c, next) => {
    const req = c.req.raw;
    const url = req.url;
    const pathStart = url.indexOf(prefix, url.indexOf("//") + 2);
    const queryStart = url.indexOf("?");
    const rawPath = url.slice(pathStart + prefix.length, queryStart === -1 ? undefined : queryStart);
    const procedure = pathStart === -1 || rawPath.includes(",") || rawPath.includes("%") ? undefined : router._def.procedures[rawPath];
    if (procedure?._def.type !== "query" || req.headers.has("trpc-accept")) return next();

    let input: unknown;
    if (queryStart !== -1) {
      const params = new URLSearchParams(url.slice(queryStart + 1));
      if (params.has("batch")) return next();
      const raw = params.get("input");
      try {
        input = raw === null ? undefined : config.transformer.input.deserialize(JSON.parse(raw));
      } catch {
        return next();
      }
    }

    const resHeaders = new Headers();
    let ctx: Ctx | undefined;
    let body: unknown;
    let status = 200;
    const errors: TRPCError[] = [];
    try {
      ctx = await opts.createContext({ req, resHeaders, info: { calls: [{ procedure }] } }, c);
      const data = await procedure({ path: rawPath, getRawInput: async () => input, ctx, type: "query", signal: req.signal, batchIndex: 0 });
      body = { result: { data } };
    } catch (cause) {
      const error = getTRPCErrorFromUnknown(cause);
      errors.push(error);
      opts.onError({ error, path: rawPath, input, ctx, type: "query", req });
      const response = { error: getTRPCErrorShape({ config, ctx, error, input, path: rawPath, type: "query" }) };
      status = getHTTPStatusCode(response, [error]);
      body = response;
    }
    const headers = new Headers([
      ["vary", "trpc-accept, accept"],
      ["content-type", "application/json"],
    ]);
    for (const [key, value] of resHeaders) headers.append(key, value);
    for (const [key, value] of opts.responseMeta?.({ errors }).headers ?? []) headers.set(key, value);
    return new Response(JSON.stringify(transformTRPCResponse(config, body as never)), { status, headers });
  };
}
