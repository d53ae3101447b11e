import { authedProcedure, router } from "../trpc";

export const authRouter = router({
  /** The signed-in user, as the platform sees them. */
  me: authedProcedure.meta({ scope: "account:read" }).query(({ ctx }) => {
    const { id, email, name, role, status, emailVerifiedAt } = ctx.user;
    return { id, email, name, role, status, emailVerifiedAt: emailVerifiedAt?.toISOString() ?? null };
  }),
});
