import { watchEngineEvents } from "../server/compute/events";
import { syncHosts } from "../server/compute/hosts";
import { executeAction } from "../server/compute/lifecycle";
import { reconcileAll, reconcileInstance, recordOomKill } from "../server/compute/reconcile";
import { runVolumeJob } from "../server/compute/volumes/worker";
import { startProxyReconciler } from "../server/ingress/reconciler";
import { startTrafficListener } from "../server/ingress/traffic-log";
import { defineProcessor, isFinalAttempt } from "./base";
import { jobId } from "./queues";

/**
 * The container lifecycle: carries out instance actions against Docker,
 * reconciles drift periodically and on Docker events (followed by every worker
 * process; the event-derived job id makes the processes' enqueues one job).
 * The ingress proxy in front of the containers is kept equal to the database
 * here too, and its access log counted as each instance's traffic.
 */
export const lifecycleProcessor = defineProcessor({
  queue: "lifecycle",
  concurrency: (config) => config.workers.lifecycleConcurrency,
  schedules: (config) => [{ id: "lifecycle-reconcile", every: config.compute.reconcileIntervalMs, name: "reconcile", data: {} }],
  handlers: {
    run: ({ actionId }, ctx) => executeAction(ctx, actionId, { finalAttempt: isFinalAttempt(ctx.job) }),
    reconcile: (_payload, ctx) => reconcileAll(ctx),
    reconcileInstance: async ({ instanceId }, ctx) => ({ movedTo: await reconcileInstance(ctx, instanceId) }),
    recordOom: ({ instanceId, at }, ctx) => recordOomKill(ctx, instanceId, new Date(at)),
    volume: ({ volumeId }, ctx) => runVolumeJob(ctx, volumeId, { finalAttempt: isFinalAttempt(ctx.job) }),
  },
  background: [
    {
      name: "docker-events",
      async start(services) {
        // Placement needs the hosts' capacity: learn it now rather than at the first periodic pass,
        // without holding up the start when an engine is slow to answer.
        syncHosts(services).catch((error) => services.log.warn("host sync failed", { error: (error as Error).message }));
        const watchers = services.config.compute.hosts.map((host) =>
          watchEngineEvents(services, host, async (event) => {
            if (event.action === "oom") {
              const at = new Date(Number(BigInt(event.timeNano) / 1_000_000n)).toISOString();
              await services.queues.enqueue("lifecycle", "recordOom", { instanceId: event.instanceId, at }, { jobId: jobId("oom", event.instanceId, event.timeNano) });
            }
            await services.queues.enqueue("lifecycle", "reconcileInstance", { instanceId: event.instanceId }, { jobId: jobId("event", event.instanceId, event.timeNano) });
          }),
        );
        return { stop: async () => void (await Promise.all(watchers.map((w) => w.stop()))) };
      },
    },
    {
      name: "ingress-proxy",
      start: async (services) => startProxyReconciler({ settings: services.config.ingress, sync: services.ingress.routes, admin: services.ingress.admin, log: services.log }),
    },
    {
      name: "ingress-traffic",
      start: (services) => startTrafficListener({ db: services.db, settings: services.config.ingress, log: services.log }),
    },
  ],
});
