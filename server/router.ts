import { authRouter } from "./auth/router";
import { router } from "./trpc";

export const appRouter = router({
  auth: authRouter,
});

/** The type typed clients import: `createTRPCClient<AppRouter>(...)`. */
export type AppRouter = typeof appRouter;
