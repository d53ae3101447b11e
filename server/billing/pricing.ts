import type { Config } from "../config";
import { HOUR_MS } from "./periods";

/**
 * Prices and rounding, in one place, as pure functions over integers. The
 * rules (docs/billing.md):
 *
 * - Billable time is time `running` or `paused` (a paused container keeps its
 *   memory and its place on the host), counted in exact milliseconds.
 * - Compute = billable hours × the plan's hourly price, rounded half up to a
 *   whole minor unit once per instance per period, and never more than the
 *   plan's monthly price.
 * - Interruptible instances get `interruptibleDiscountPercent` off compute:
 *   a discount line, rounded half up.
 * - Time paused by a power emergency is credited at the hourly price less the
 *   discount, rounded half up, never more than the instance's compute after
 *   discount (so a capped instance still gets it back).
 * - Egress (bytes sent by the container) costs `egressPricePerGbMinor` per
 *   10^9 bytes, rounded half up per instance.
 * - Tax = (subtotal − discounts − credits) × rate, rounded half up once per
 *   invoice. Total = that base + tax.
 *
 * Half up means 0.5 rounds away from zero; all inputs are non-negative.
 * BigInt keeps products like ms × price × 100 exact beyond 2^53.
 */
export type PricingRules = {
  currency: string;
  taxRateBps: number;
  interruptibleDiscountPercent: number;
  egressPricePerGbMinor: number;
};

export function pricingRules(config: Config): PricingRules {
  const { currency, taxRateBps, interruptibleDiscountPercent, egressPricePerGbMinor } = config.billing;
  return { currency, taxRateBps, interruptibleDiscountPercent, egressPricePerGbMinor };
}

/** The billing month of a volume's price: 730 hours (365 × 24 / 12). */
export const STORAGE_MONTH_MS = 730 * HOUR_MS;

/** A volume's charge for `mbMs` (MiB × milliseconds) at its price per GiB-month. */
export function storageCharge(mbMs: number, priceGbMonthMinor: number): number {
  return divideRoundHalfUp(BigInt(Math.round(mbMs)) * BigInt(priceGbMonthMinor), BigInt(STORAGE_MONTH_MS) * 1024n);
}

export function storageLine(volume: { id: string; name: string; sizeMb: number; priceGbMonthMinor: number }, mbMs: number): LineDraft {
  return {
    instanceId: null,
    volumeId: volume.id,
    kind: "storage",
    description: `volume ${volume.name} (${volume.sizeMb} MiB)`,
    quantity: round6(mbMs / (1024 * STORAGE_MONTH_MS)),
    unit: "GiB-month",
    unitPriceMinor: volume.priceGbMonthMinor,
    amountMinor: storageCharge(mbMs, volume.priceGbMonthMinor),
    details: { volumeId: volume.id, sizeMb: volume.sizeMb, gibHours: round6(mbMs / (1024 * HOUR_MS)) },
  };
}

/** round(numerator / denominator), halves away from zero, for non-negative integers. */
export function divideRoundHalfUp(numerator: bigint | number, denominator: bigint | number): number {
  const n = BigInt(numerator);
  const d = BigInt(denominator);
  if (n < 0n || d <= 0n) throw new RangeError("divideRoundHalfUp takes a non-negative numerator and a positive denominator");
  return Number((n * 2n + d) / (d * 2n));
}

export const GB = 1_000_000_000;

export type InstanceUsage = {
  runningMs: number;
  pausedMs: number;
  emergencyPausedMs: number;
  txBytes: number;
};

export type InstancePrice = {
  priceHourlyMinor: number;
  priceMonthlyMinor: number;
  priority: "critical" | "standard" | "interruptible";
};

export type InstanceCharge = {
  billableMs: number;
  /** Hourly price × billable time before the monthly cap. */
  uncappedMinor: number;
  computeMinor: number;
  capped: boolean;
  capMinor: number;
  discountPercent: number;
  discountMinor: number;
  creditMinor: number;
  egressMinor: number;
};

/** `capMinor`: the segment's share of the monthly price when the plan changed within the period (default: the whole monthly price). */
export function chargeInstance(usage: InstanceUsage, price: InstancePrice, rules: PricingRules, capMinor: number = price.priceMonthlyMinor): InstanceCharge {
  const billableMs = usage.runningMs + usage.pausedMs + usage.emergencyPausedMs;
  const uncappedMinor = divideRoundHalfUp(BigInt(billableMs) * BigInt(price.priceHourlyMinor), HOUR_MS);
  const computeMinor = Math.min(uncappedMinor, capMinor);
  const discountPercent = price.priority === "interruptible" ? rules.interruptibleDiscountPercent : 0;
  const discountMinor = divideRoundHalfUp(BigInt(computeMinor) * BigInt(discountPercent), 100);
  const creditAtRate = divideRoundHalfUp(BigInt(usage.emergencyPausedMs) * BigInt(price.priceHourlyMinor) * BigInt(100 - discountPercent), BigInt(HOUR_MS) * 100n);
  const creditMinor = Math.min(creditAtRate, computeMinor - discountMinor);
  const egressMinor = divideRoundHalfUp(BigInt(usage.txBytes) * BigInt(rules.egressPricePerGbMinor), GB);
  return { billableMs, uncappedMinor, computeMinor, capped: uncappedMinor > capMinor, capMinor, discountPercent, discountMinor, creditMinor, egressMinor };
}

export type InvoiceTotals = { subtotalMinor: number; discountMinor: number; creditMinor: number; taxRateBps: number; taxMinor: number; totalMinor: number };

/** `storageMinor`: the volumes' charges, added to the subtotal. */
export function invoiceTotals(charges: InstanceCharge[], taxRateBps: number, storageMinor: number[] = []): InvoiceTotals {
  let subtotalMinor = storageMinor.reduce((a, b) => a + b, 0);
  let discountMinor = 0;
  let creditMinor = 0;
  for (const charge of charges) {
    subtotalMinor += charge.computeMinor + charge.egressMinor;
    discountMinor += charge.discountMinor;
    creditMinor += charge.creditMinor;
  }
  const taxable = subtotalMinor - discountMinor - creditMinor;
  const taxMinor = divideRoundHalfUp(BigInt(taxable) * BigInt(taxRateBps), 10_000);
  return { subtotalMinor, discountMinor, creditMinor, taxRateBps, taxMinor, totalMinor: taxable + taxMinor };
}

export type LineDraft = {
  instanceId: string | null;
  volumeId?: string;
  kind: "compute" | "egress" | "discount" | "credit" | "carried_forward" | "energy" | "storage";
  description: string;
  quantity: number;
  unit: string;
  unitPriceMinor: number;
  amountMinor: number;
  details: Record<string, unknown>;
};

const round6 = (n: number) => Math.round(n * 1e6) / 1e6;
const hours = (ms: number) => round6(ms / HOUR_MS);

/**
 * The invoice lines of one instance (or of one plan segment of it, named by
 * `plan` when the instance was resized in the period): compute, then egress,
 * discount and credit when they are not zero.
 */
export function instanceLines(instance: { id: string; name: string; plan?: string } & InstancePrice, usage: InstanceUsage, charge: InstanceCharge, rules: PricingRules): LineDraft[] {
  const label = instance.plan ? `${instance.name} (${instance.plan})` : instance.name;
  const lines: LineDraft[] = [
    {
      instanceId: instance.id,
      kind: "compute",
      description: `${label}: compute${charge.capped ? " (monthly cap)" : ""}`,
      quantity: hours(charge.billableMs),
      unit: "hour",
      unitPriceMinor: instance.priceHourlyMinor,
      amountMinor: charge.computeMinor,
      details: {
        runningSeconds: usage.runningMs / 1000,
        pausedSeconds: usage.pausedMs / 1000,
        emergencyPausedSeconds: usage.emergencyPausedMs / 1000,
        capped: charge.capped,
        monthlyCapMinor: charge.capMinor,
        priority: instance.priority,
        ...(instance.plan ? { plan: instance.plan } : {}),
      },
    },
  ];
  if (charge.egressMinor > 0) {
    lines.push({
      instanceId: instance.id,
      kind: "egress",
      description: `${label}: outbound traffic`,
      quantity: round6(usage.txBytes / GB),
      unit: "GB",
      unitPriceMinor: rules.egressPricePerGbMinor,
      amountMinor: charge.egressMinor,
      details: { txBytes: usage.txBytes },
    });
  }
  if (charge.discountMinor > 0) {
    lines.push({
      instanceId: instance.id,
      kind: "discount",
      description: `${label}: interruptible discount ${charge.discountPercent}%`,
      quantity: 1,
      unit: "discount",
      unitPriceMinor: -charge.discountMinor,
      amountMinor: -charge.discountMinor,
      details: { percent: charge.discountPercent },
    });
  }
  if (charge.creditMinor > 0) {
    lines.push({
      instanceId: instance.id,
      kind: "credit",
      description: `${label}: credit for time paused by a power emergency`,
      quantity: hours(usage.emergencyPausedMs),
      unit: "hour",
      unitPriceMinor: -divideRoundHalfUp(BigInt(instance.priceHourlyMinor) * BigInt(100 - charge.discountPercent), 100),
      amountMinor: -charge.creditMinor,
      details: { emergencyPausedSeconds: usage.emergencyPausedMs / 1000 },
    });
  }
  return lines;
}
