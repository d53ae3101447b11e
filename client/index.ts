/**
 * The typed-client entry point: types only, no runtime. `npm run build:client`
 * emits declarations for it (client/dist), so a TypeScript project imports the
 * router's types without Bun's types and without type-checking the server's
 * sources or dependencies. Use it with @trpc/client:
 *
 *   const api = createTRPCClient<AppRouter>({ links: [httpBatchLink({ url })] });
 */
import type { inferRouterInputs, inferRouterOutputs } from "@trpc/server";
import type { AppRouter } from "../server/router";

export type { AppRouter };
/** The closed list of `error.data.appCode` values (server/errors.ts). */
export type { AppErrorCode } from "../server/errors";
/** What an API key may be allowed to do. */
export type { Scope } from "../server/auth/actor";
/** Every procedure's input, e.g. `RouterInputs["compute"]["instances"]["create"]`. */
export type RouterInputs = inferRouterInputs<AppRouter>;
/** Every procedure's result, e.g. `RouterOutputs["compute"]["instances"]["get"]`. */
export type RouterOutputs = inferRouterOutputs<AppRouter>;
