import { DelayedError } from "bullmq";
import { runDunning } from "../server/billing/dunning";
import { performDelivery } from "../server/notifications/deliver";
import { startRelay, sweepEvents } from "../server/notifications/relay";
import { defineProcessor } from "./base";

/**
 * Customer events: the relay fans the outbox out (a loop beside the workers,
 * and a periodic sweep), and each email or webhook delivery is one job. A
 * delivery that must be tried again later moves its own job to `delayed` for
 * the wait its schedule (or the receiver's Retry-After) asks for, so one job
 * owns all attempts of a delivery generation and no id is ever re-added.
 */
export const notifyProcessor = defineProcessor({
  queue: "notify",
  concurrency: (config) => config.notify.concurrency,
  schedules: (config) => [
    { id: "notify-sweep", every: config.notify.sweepIntervalMs, name: "sweep", data: {} },
    { id: "notify-dunning", every: config.dunning.checkIntervalMs, name: "dunning", data: {} },
  ],
  handlers: {
    async deliver({ deliveryId, generation }, ctx) {
      const outcome = await performDelivery(ctx, deliveryId, generation);
      if (outcome.status !== "retry") return outcome;
      await ctx.job.moveToDelayed(Date.now() + outcome.delayMs, ctx.token);
      throw new DelayedError();
    },
    sweep: (_payload, ctx) => sweepEvents(ctx),
    dunning: (_payload, ctx) => runDunning(ctx),
  },
  background: [
    {
      name: "event-relay",
      start: async (services) => startRelay(services),
    },
  ],
});
