import { and, eq, notInArray } from "drizzle-orm";
import type { Database } from "../../db/client";
import { instances, users } from "../../db/schema";
import { jobId } from "../../workers/queues";
import { systemActor, type Actor } from "../auth/actor";
import { stopInstance, type ComputeDeps } from "../compute/instances";
import { ACTION_RULES, type InstanceState } from "../compute/states";
import { isAppError } from "../errors";
import type { RequestInfo } from "../trpc";

/** The reason recorded on the stop actions and in the instances' state history. */
export const SUSPENSION_REASON = "account_suspended";

/** Where a suspended account's instances must end up. */
const SETTLED: InstanceState[] = ["stopped", "deleted"];
const STOPPABLE: readonly InstanceState[] = ACTION_RULES.stop.from;

/** Retries of the follow-up job: 2 s doubling, about 34 minutes in all. */
const FOLLOW_UP = { attempts: 10, backoff: { type: "exponential", delay: 2000 }, delay: 2000 } as const;

export type SuspensionPass = {
  /** Instances a stop was requested for now. */
  stopRequested: string[];
  /** Instances with another action in flight (or between states): stopped by the follow-up job once it finishes. */
  waiting: string[];
  /** Instances whose stop request failed for another reason (logged); the follow-up job tries again. */
  failed: string[];
  /** How many were not yet stopped or deleted when the pass began. */
  unsettled: number;
};

export type SuspensionOutcome = SuspensionPass & { followUp: "scheduled" | "not_needed" | "enqueue_failed" };

/**
 * Requests a stop for every instance of the user that can be stopped now.
 * One instance's refusal never stops the pass: an instance busy with another
 * action (INVALID_TRANSITION) is left for the follow-up, any other failure is
 * logged and counted.
 */
export async function stopUserInstances(deps: ComputeDeps, who: { actor: Actor; request?: RequestInfo | null }, userId: string): Promise<SuspensionPass> {
  const live = await unsettledInstances(deps.db, userId);
  const pass: SuspensionPass = { stopRequested: [], waiting: [], failed: [], unsettled: live.length };
  for (const instance of live) {
    if (!STOPPABLE.includes(instance.state)) {
      pass.waiting.push(instance.id);
      continue;
    }
    try {
      await stopInstance(deps, instance.id, { reason: SUSPENSION_REASON, actor: who.actor, request: who.request ?? null });
      pass.stopRequested.push(instance.id);
    } catch (error) {
      if (isAppError(error, "INVALID_TRANSITION")) {
        pass.waiting.push(instance.id);
      } else {
        deps.log.warn("stopping a suspended account's instance failed; the follow-up retries", { userId, instanceId: instance.id, error: (error as Error).message });
        pass.failed.push(instance.id);
      }
    }
  }
  return pass;
}

async function unsettledInstances(db: Database, userId: string) {
  return db
    .select({ id: instances.id, state: instances.state })
    .from(instances)
    .where(and(eq(instances.userId, userId), notInArray(instances.state, SETTLED)));
}

/**
 * Stops what it can at once, then hands the rest to the `enforceSuspension`
 * job, which repeats the pass (as the platform) until every instance is
 * stopped or deleted — an instance still being created or started when the
 * account was suspended is stopped when that action ends.
 */
export async function enforceSuspension(deps: ComputeDeps, who: { actor: Actor; request?: RequestInfo | null }, user: { id: string }): Promise<SuspensionOutcome> {
  const requestedAt = Date.now();
  const pass = await stopUserInstances(deps, who, user.id);
  if (pass.unsettled === 0) return { ...pass, followUp: "not_needed" };
  try {
    // One follow-up per request: suspending again schedules a fresh one even when an earlier one gave up.
    await deps.queues.enqueue("admin", "enforceSuspension", { userId: user.id }, { jobId: jobId("suspension", user.id, requestedAt), ...FOLLOW_UP });
    return { ...pass, followUp: "scheduled" };
  } catch (error) {
    deps.log.error("could not schedule the suspension follow-up; suspend again to retry", { userId: user.id, error: (error as Error).message });
    return { ...pass, followUp: "enqueue_failed" };
  }
}

/**
 * The follow-up job's pass, as the platform. Throws while anything is left to
 * stop so the job is retried (with backoff); nothing to do once the account
 * is active again.
 */
export async function followUpSuspension(deps: ComputeDeps, userId: string) {
  const [user] = await deps.db.select({ status: users.status }).from(users).where(eq(users.id, userId));
  if (user?.status !== "suspended") return { skipped: "not_suspended" as const };
  const pass = await stopUserInstances(deps, { actor: systemActor("account-suspension") }, userId);
  if (pass.unsettled > 0) throw new Error(`${pass.unsettled} instance(s) of suspended user ${userId} not stopped yet`);
  return pass;
}
