import type { Job } from "bullmq";
import { QUEUE_NAMES, type Queues } from "../../workers/queues";

/**
 * How long ready work may sit with nothing active before a queue counts as
 * stalled. A worker that stopped consuming after a Redis outage still looks
 * alive (stack-pitfalls B-5); what gives it away is waiting (or overdue
 * delayed) jobs and nothing active, for longer than any job normally waits.
 */
export const STALL_AFTER_MS = 60_000;

/** When a job became ready to run: its creation, or the end of its delay (a retry's backoff counts from its last attempt). */
function readySince(job: Job): number {
  return Math.max(job.timestamp, job.processedOn ?? 0) + (job.delay ?? 0);
}

/**
 * Per queue: job counts, whether it is paused, how many workers are
 * connected, how long the oldest ready job has waited, and whether it looks
 * stalled. Delayed jobs are promoted by workers, so with none running an
 * overdue delayed job waits just like a waiting one.
 */
export async function queueHealth(queues: Queues, now = Date.now()) {
  const reports = await Promise.all(
    QUEUE_NAMES.map(async (name) => {
      const queue = queues.queue(name);
      const [counts, paused, workers, [oldestWaiting], [nextDelayed]] = await Promise.all([
        queue.getJobCounts("waiting", "prioritized", "active", "delayed", "failed", "completed"),
        queue.isPaused(),
        queue.getWorkersCount(),
        queue.getWaiting(0, 0),
        queue.getDelayed(0, 0),
      ]);
      const waiting = (counts.waiting ?? 0) + (counts.prioritized ?? 0);
      const active = counts.active ?? 0;
      const oldestWaitingMs = oldestWaiting ? Math.max(0, now - readySince(oldestWaiting)) : null;
      const overdueDelayedMs = nextDelayed && now > readySince(nextDelayed) ? now - readySince(nextDelayed) : null;
      const longestReadyMs = Math.max(oldestWaitingMs ?? 0, overdueDelayedMs ?? 0);
      return {
        name,
        waiting,
        active,
        delayed: counts.delayed ?? 0,
        failed: counts.failed ?? 0,
        completed: counts.completed ?? 0,
        paused,
        workers,
        oldestWaitingMs,
        overdueDelayedMs,
        stalled: !paused && active === 0 && longestReadyMs >= STALL_AFTER_MS,
      };
    }),
  );
  return { checkedAt: new Date(now).toISOString(), stallAfterMs: STALL_AFTER_MS, healthy: reports.every((q) => !q.stalled), queues: reports };
}
