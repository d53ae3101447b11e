import { METERING_SETTLE_MS, meterUsage } from "../server/billing/metering";
import { runInvoicing } from "../server/billing/invoicing";
import { parsePeriod, previousPeriod } from "../server/billing/periods";
import { defineProcessor } from "./base";

/**
 * Metering on a fixed interval, invoicing at each month's boundary (UTC).
 * Both are idempotent (cursor versions, one invoice per customer and period),
 * so overlapping ticks, retries and an admin's on-demand run are harmless.
 */
export const billingProcessor = defineProcessor({
  queue: "billing",
  // A slow tick must not hold up the month's invoicing, nor need more than one at a time.
  concurrency: 2,
  schedules: (config) => [
    { id: "billing-meter", every: config.billing.meteringIntervalMs, name: "meter", data: {} },
    { id: "billing-invoice-monthly", pattern: "0 0 1 * *", name: "invoice", data: {} },
  ],
  handlers: {
    meter: (_payload, ctx) => meterUsage(ctx),
    async invoice({ period }, ctx) {
      const target = period ? parsePeriod(period) : previousPeriod(new Date());
      // Fired at the boundary itself: let the period's last state changes settle before closing it.
      const wait = target.end.getTime() + METERING_SETTLE_MS - Date.now();
      if (wait > 0 && wait <= METERING_SETTLE_MS) await Bun.sleep(wait);
      return runInvoicing(ctx, { period: target.name });
    },
  },
});
