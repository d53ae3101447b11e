import type { Database } from "../../db/client";
import { listPlans } from "../compute/catalogue";
import type { Config } from "../config";
import { divideRoundHalfUp, pricingRules } from "./pricing";

/** `billing.pricing`: the plans' prices and every rule that turns usage into money. */
export async function pricingSheet(deps: { db: Database; config: Config }) {
  const rules = pricingRules(deps.config);
  const plans = (await listPlans(deps.db)).filter((plan) => plan.currency === rules.currency);
  return {
    currency: rules.currency,
    taxRatePercent: rules.taxRateBps / 100,
    interruptibleDiscountPercent: rules.interruptibleDiscountPercent,
    egressPricePerGbMinor: rules.egressPricePerGbMinor,
    billableStates: ["running", "paused"],
    plans: plans.map((plan) => ({
      id: plan.id,
      slug: plan.slug,
      name: plan.name,
      vcpus: plan.vcpus,
      memoryMb: plan.memoryMb,
      diskGb: plan.diskGb,
      priceHourlyMinor: plan.priceHourlyMinor,
      priceMonthlyMinor: plan.priceMonthlyMinor,
      // What an interruptible instance of the plan costs per hour after its discount (for display; invoices discount the total).
      interruptibleHourlyMinor: divideRoundHalfUp(plan.priceHourlyMinor * (100 - rules.interruptibleDiscountPercent), 100),
    })),
    rounding:
      "Billable time (running or paused) is counted in milliseconds; per instance and period, compute = hours × hourly price rounded half up to a minor unit, capped at the monthly price. " +
      "Discounts, power-emergency credits and egress are each rounded half up per instance; tax is rounded half up once per invoice.",
  };
}
