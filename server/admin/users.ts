import { and, asc, count, desc, eq, gt, ilike, isNull, or } from "drizzle-orm";
import type { Database } from "../../db/client";
import { apiKeys, instances, sessions, type userRole, users, type userStatus } from "../../db/schema";
import type { AuthenticatedActor } from "../auth/actor";
import { recordAudit } from "../audit";
import { AppError } from "../errors";
import { INSTANCE_STATES } from "../compute/states";
import type { Services } from "../services";
import type { RequestInfo } from "../trpc";
import { after, cursorTime, decodeCursor, page } from "../pagination";
import { enforceSuspension, type SuspensionOutcome } from "./suspension";

export type UserRole = (typeof userRole.enumValues)[number];
export type UserStatus = (typeof userStatus.enumValues)[number];
export type User = typeof users.$inferSelect;

export type AdminDeps = Pick<Services, "db" | "queues" | "config" | "log" | "sessions">;
/** The admin acting (from the context, never input) and the request, for the audit row. */
export type AdminCaller = { actor: AuthenticatedActor; request: RequestInfo | null };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function userView(user: User) {
  return {
    id: user.id,
    email: user.email,
    name: user.name,
    role: user.role,
    status: user.status,
    emailVerifiedAt: user.emailVerifiedAt?.toISOString() ?? null,
    createdAt: user.createdAt.toISOString(),
    updatedAt: user.updatedAt.toISOString(),
  };
}

/** `%`, `_` and `\` are LIKE syntax; a search for them means the characters. */
const likePattern = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

/**
 * Users, newest first, a page at a time. `query` matches the id exactly when
 * it is a UUID, otherwise any part of the email or name (case-insensitive).
 */
export async function listUsers(db: Database, opts: { query?: string | undefined; role?: UserRole | undefined; status?: UserStatus | undefined; cursor?: string | undefined; limit: number }) {
  const cursor = opts.cursor ? decodeCursor(opts.cursor) : null;
  const query = opts.query?.trim();
  const search = query ? (UUID.test(query) ? eq(users.id, query) : or(ilike(users.email, likePattern(query)), ilike(users.name, likePattern(query)))) : undefined;
  const rows = await db
    .select({ user: users, id: users.id, cursorAt: cursorTime(users.createdAt) })
    .from(users)
    .where(and(search, opts.role ? eq(users.role, opts.role) : undefined, opts.status ? eq(users.status, opts.status) : undefined, cursor ? after(users.createdAt, users.id, cursor) : undefined))
    .orderBy(desc(users.createdAt), desc(users.id))
    .limit(opts.limit + 1);
  return page(rows, opts.limit, (row) => userView(row.user));
}

/** One user with what an operator needs at a glance: live sessions, active API keys, instances by state. */
export async function getUser(db: Database, id: string) {
  const [user] = await db.select().from(users).where(eq(users.id, id));
  if (!user) throw new AppError("NOT_FOUND", "No such user", { details: { userId: id } });
  const [[liveSessions], [activeKeys], byState] = await Promise.all([
    db
      .select({ n: count() })
      .from(sessions)
      .where(and(eq(sessions.userId, id), gt(sessions.expiresAt, new Date()), gt(sessions.absoluteExpiresAt, new Date()))),
    db
      .select({ n: count() })
      .from(apiKeys)
      .where(and(eq(apiKeys.userId, id), isNull(apiKeys.revokedAt))),
    db.select({ state: instances.state, n: count() }).from(instances).where(eq(instances.userId, id)).groupBy(instances.state),
  ]);
  const instancesByState = Object.fromEntries(INSTANCE_STATES.map((state) => [state, byState.find((row) => row.state === state)?.n ?? 0]));
  return { ...userView(user), sessions: liveSessions?.n ?? 0, apiKeys: activeKeys?.n ?? 0, instances: instancesByState };
}

/**
 * Locks every active admin's row, in id order, and returns their ids. Every
 * change that could take away an active admin takes these locks first, so two
 * such changes run one after the other and the second sees the first's
 * result: two admins demoting each other at once cannot leave none. (Under
 * READ COMMITTED a row that stopped matching while we waited is skipped.)
 */
async function lockActiveAdmins(tx: Database, caller: AdminCaller): Promise<Set<string>> {
  const rows = await tx
    .select({ id: users.id })
    .from(users)
    .where(and(eq(users.role, "admin"), eq(users.status, "active")))
    .orderBy(asc(users.id))
    .for("update");
  const admins = new Set(rows.map((row) => row.id));
  // The role was checked when the request began; another admin may have changed it since.
  if (!admins.has(caller.actor.user.id)) throw new AppError("FORBIDDEN", "Admin role required");
  return admins;
}

async function lockUser(tx: Database, id: string): Promise<User> {
  const [user] = await tx.select().from(users).where(eq(users.id, id)).for("update");
  if (!user) throw new AppError("NOT_FOUND", "No such user", { details: { userId: id } });
  return user;
}

const isActiveAdmin = (user: User) => user.role === "admin" && user.status === "active";

function assertAdminRemains(admins: Set<string>, target: User) {
  if (isActiveAdmin(target) && admins.size <= 1) {
    throw new AppError("LAST_ADMIN", "This is the last active admin; make another admin first", { details: { userId: target.id } });
  }
}

/**
 * Suspends or (re)activates an account. Suspension ends every session at once
 * (API keys are refused from the next request: every request re-reads the
 * owner's status) and stops the account's instances through the lifecycle
 * queue. Activation starts nothing and lets an account in whose email was
 * never verified (the admin vouches for it). Repeating a suspension changes
 * nothing but runs the instance stops again.
 */
export async function setUserStatus(deps: AdminDeps, caller: AdminCaller, input: { id: string; status: "active" | "suspended"; reason: string }) {
  const { db } = deps;
  const outcome = await db.transaction(async (tx) => {
    const admins = await lockActiveAdmins(tx, caller);
    const target = await lockUser(tx, input.id);
    if (target.status === input.status) return { user: target, changed: false, sessionsEnded: 0 };
    if (input.status === "suspended") assertAdminRemains(admins, target);
    const [updated] = await tx.update(users).set({ status: input.status }).where(eq(users.id, target.id)).returning();
    const sessionsEnded = input.status === "suspended" ? await deps.sessions.invalidateAll(target.id, { tx }) : 0;
    await recordAudit(tx, caller, {
      action: input.status === "suspended" ? "admin.user.suspended" : "admin.user.activated",
      targetType: "user",
      targetId: target.id,
      reason: input.reason,
      metadata: { from: target.status, to: input.status, sessionsEnded },
    });
    return { user: updated!, changed: true, sessionsEnded };
  });
  let instancesOutcome: SuspensionOutcome | null = null;
  if (outcome.user.status === "suspended") instancesOutcome = await enforceSuspension(deps, caller, outcome.user);
  return { user: userView(outcome.user), changed: outcome.changed, sessionsEnded: outcome.sessionsEnded, instances: instancesOutcome };
}

/** Changes a user's role; it applies from their next request. The last active admin cannot be demoted. */
export async function setUserRole(deps: AdminDeps, caller: AdminCaller, input: { id: string; role: UserRole; reason?: string | undefined }) {
  const outcome = await deps.db.transaction(async (tx) => {
    const admins = await lockActiveAdmins(tx, caller);
    const target = await lockUser(tx, input.id);
    if (target.role === input.role) return { user: target, changed: false };
    if (input.role !== "admin") assertAdminRemains(admins, target);
    const [updated] = await tx.update(users).set({ role: input.role }).where(eq(users.id, target.id)).returning();
    await recordAudit(tx, caller, {
      action: "admin.user.role_changed",
      targetType: "user",
      targetId: target.id,
      ...(input.reason ? { reason: input.reason } : {}),
      metadata: { from: target.role, to: input.role },
    });
    return { user: updated!, changed: true };
  });
  return { user: userView(outcome.user), changed: outcome.changed };
}
