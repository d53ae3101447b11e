import { adminRouter } from "./admin/router";
import { authRouter } from "./auth/router";
import { billingRouter } from "./billing/router";
import { computeRouter } from "./compute/router";
import { energyRouter } from "./energy/router";
import { notificationsRouter } from "./notifications/router";
import { router } from "./trpc";
import { webhooksRouter } from "./webhooks/router";

export const appRouter = router({
  auth: authRouter,
  compute: computeRouter,
  energy: energyRouter,
  billing: billingRouter,
  admin: adminRouter,
  notifications: notificationsRouter,
  webhooks: webhooksRouter,
});

/** The type typed clients import: `createTRPCClient<AppRouter>(...)`. */
export type AppRouter = typeof appRouter;
