import type { Config } from "../config";
import { requeueOverdueDeliveries } from "../events/deliveries";
import { interruptibleSleep } from "../waits";
import { relayBatch, type FanOutDeps } from "./fanout";

export type RelayDeps = FanOutDeps & { config: Config };

/** Events per claim: one transaction's worth of fan-out. */
export const RELAY_BATCH = 200;
/** A sweep relays at most this many batches; the background loops do the steady work. */
const SWEEP_MAX_BATCHES = 50;

/**
 * The relay's loop, run beside the workers in every worker process: fan out a
 * batch, go again at once while batches come back full, otherwise wait
 * NOTIFY_POLL_MS. Polling is the mechanism, not a backstop: it works the same
 * on embedded PGlite (one connection, no LISTEN) and on PostgreSQL, and costs
 * one indexed query per interval per process when idle. Errors (a database
 * restart) back off up to 30 s and never end the loop.
 */
export function startRelay(deps: RelayDeps): { stop(): Promise<void> } {
  const log = deps.log.child({ component: "event-relay" });
  let stopped = false;
  const { sleep, wake } = interruptibleSleep();

  const loop = async () => {
    let failures = 0;
    while (!stopped) {
      try {
        const { events } = await relayBatch(deps, RELAY_BATCH);
        failures = 0;
        if (events === RELAY_BATCH) continue;
      } catch (error) {
        if (stopped) break;
        failures += 1;
        log.warn("event relay failed; retrying", { error: (error as Error).message, failures });
      }
      await sleep(failures ? Math.min(30_000, deps.config.notify.pollMs * 2 ** Math.min(failures, 5)) : deps.config.notify.pollMs);
    }
  };
  const running = loop();
  return {
    async stop() {
      stopped = true;
      wake();
      await running;
    },
  };
}

/**
 * The periodic safety net (every NOTIFY_SWEEP_INTERVAL_MS, on whichever worker
 * takes the job): fans out what no relay loop has (none running), and
 * re-enqueues deliveries that have been due for a whole interval with no job.
 */
export async function sweepEvents(deps: RelayDeps) {
  let relayed = 0;
  for (let i = 0; i < SWEEP_MAX_BATCHES; i++) {
    const { events } = await relayBatch(deps, RELAY_BATCH);
    relayed += events;
    if (events < RELAY_BATCH) break;
  }
  const requeued = await requeueOverdueDeliveries(deps, deps.config.notify.sweepIntervalMs);
  return { relayed, ...requeued };
}
