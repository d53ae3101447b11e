import * as v from "valibot";
import { EmailSchema } from "./email";
import { AppError } from "../errors";
import { authedProcedure, publicProcedure, router, verifiedProcedure, type RequestInfo } from "../trpc";
import { SCOPES, type Actor, type AuthenticatedActor } from "./actor";
import { publicUser, register, resendVerification, updateProfile, verifyEmail } from "./accounts";
import { createApiKey, listApiKeys, revokeApiKey } from "./api-keys";
import { login, logout, logoutAll } from "./login";
import { MAX_PASSWORD_LENGTH } from "./password";
import { changePassword, requestPasswordReset, resetPassword } from "./password-flows";

/**
 * API keys reach only `me` and `apiKeys.list` (scope `account:read`). Every
 * other account procedure needs a signed-in person: a key cannot mint keys,
 * revoke them, change the password or sign sessions out.
 */

const email = EmailSchema;
// Strength is checked by the service (WEAK_PASSWORD); the schema only bounds the size before hashing.
const password = v.pipe(v.string(), v.minLength(1, "is required"), v.maxLength(MAX_PASSWORD_LENGTH, `must be at most ${MAX_PASSWORD_LENGTH} characters`));
const displayName = v.pipe(
  v.string(),
  v.trim(),
  v.minLength(1, "is required"),
  v.maxLength(100, "must be at most 100 characters"),
  v.regex(/^[^\p{Cc}\p{Cf}]*$/u, "must not contain control characters"),
);
// Malformed tokens are TOKEN_INVALID (the service checks the shape); this only bounds the size.
const emailToken = v.pipe(v.string(), v.minLength(1, "is required"), v.maxLength(128, "must be at most 128 characters"));

/**
 * Session-only procedures. The builders already refuse API keys on procedures
 * without a scope; this narrows the actor's type (and holds if a scope is ever
 * added by mistake).
 */
function sessionActor(actor: AuthenticatedActor): Extract<AuthenticatedActor, { kind: "user" }> {
  if (actor.kind !== "user") throw new AppError("INSUFFICIENT_SCOPE", "This procedure cannot be called with an API key");
  return actor;
}
const sessionProcedure = authedProcedure.use(({ ctx, next }) => next({ ctx: { actor: sessionActor(ctx.actor) } }));
const verifiedSessionProcedure = verifiedProcedure.use(({ ctx, next }) => next({ ctx: { actor: sessionActor(ctx.actor) } }));

/** Attribution for services: who (from the context, never input) and from where. */
const caller = <A extends Actor>(ctx: { actor: A; request: RequestInfo }) => ({ actor: ctx.actor, request: ctx.request });

const apiKeysRouter = router({
  /** Creates a key and returns it once. Requires a verified account and a session. */
  create: verifiedSessionProcedure
    .input(
      v.strictObject({
        name: displayName,
        scopes: v.pipe(
          v.array(v.picklist(SCOPES, `must be one of ${SCOPES.join(", ")}`)),
          v.minLength(1, "name at least one scope"),
          v.maxLength(SCOPES.length, `must list at most ${SCOPES.length} scopes`),
          v.check((scopes) => new Set(scopes).size === scopes.length, "lists a scope twice"),
        ),
      }),
    )
    .mutation(({ ctx, input }) => createApiKey(ctx.db, ctx.config.secret, caller(ctx), input)),

  list: authedProcedure.meta({ scope: "account:read" }).query(({ ctx }) => listApiKeys(ctx.db, caller(ctx))),

  revoke: sessionProcedure.input(v.strictObject({ id: v.pipe(v.string(), v.uuid("must be an API key id")) })).mutation(({ ctx, input }) => revokeApiKey(ctx.db, caller(ctx), input.id)),
});

export const authRouter = router({
  /** Always answers alike, whether or not the address already has an account (docs/api.md, "Auth"). */
  register: publicProcedure.input(v.strictObject({ email, password, name: displayName })).mutation(({ ctx, input }) => register(ctx, caller(ctx), input)),

  /** Sets the session cookie and returns the token for `Authorization: Bearer` clients. */
  login: publicProcedure.input(v.strictObject({ email, password })).mutation(async ({ ctx, input }) => {
    const { cookie, ...session } = await login(ctx, caller(ctx), input);
    ctx.resHeaders.append("Set-Cookie", cookie);
    return session;
  }),

  logout: sessionProcedure.mutation(async ({ ctx }) => {
    const result = await logout(ctx, caller(ctx));
    ctx.resHeaders.append("Set-Cookie", ctx.sessions.blankCookie());
    return result;
  }),

  logoutAll: sessionProcedure.mutation(({ ctx }) => logoutAll(ctx, caller(ctx))),

  /** The signed-in user, as the platform sees them. */
  me: authedProcedure.meta({ scope: "account:read" }).query(({ ctx }) => publicUser(ctx.user)),

  verifyEmail: publicProcedure.input(v.strictObject({ token: emailToken })).mutation(({ ctx, input }) => verifyEmail(ctx, caller(ctx), input.token)),

  resendVerification: sessionProcedure.mutation(({ ctx }) => resendVerification(ctx, caller(ctx))),

  requestPasswordReset: publicProcedure.input(v.strictObject({ email })).mutation(({ ctx, input }) => requestPasswordReset(ctx, caller(ctx), input)),

  resetPassword: publicProcedure.input(v.strictObject({ token: emailToken, password })).mutation(({ ctx, input }) => resetPassword(ctx, caller(ctx), input)),

  changePassword: sessionProcedure
    .input(
      v.strictObject({
        currentPassword: password,
        newPassword: password,
        /** Keep the account's API keys working (by default a change revokes them, as a reset always does). */
        keepApiKeys: v.optional(v.boolean()),
      }),
    )
    .mutation(({ ctx, input }) => changePassword(ctx, caller(ctx), input)),

  updateProfile: sessionProcedure.input(v.strictObject({ name: displayName })).mutation(({ ctx, input }) => updateProfile(ctx, caller(ctx), input)),

  apiKeys: apiKeysRouter,
});
