import { describe, expect, test } from "bun:test";
import { previousPeriod, parsePeriod, periodOf } from "../../server/billing/periods";
import { chargeInstance, divideRoundHalfUp, GB, instanceLines, invoiceTotals, type PricingRules } from "../../server/billing/pricing";
import { formatMoney } from "../../server/billing/pdf";
import { canMoveInvoice } from "../../server/billing/invoices";
import { paymentMoves } from "../../server/billing/payments";

const rules: PricingRules = { currency: "USD", taxRateBps: 2000, interruptibleDiscountPercent: 40, egressPricePerGbMinor: 1 };
const HOUR = 3_600_000;
const nano = { priceHourlyMinor: 1, priceMonthlyMinor: 400, priority: "standard" as const };
const idle = { runningMs: 0, pausedMs: 0, emergencyPausedMs: 0, txBytes: 0 };

describe("rounding", () => {
  test("halves round away from zero, everything else to the nearest unit", () => {
    expect(divideRoundHalfUp(5, 10)).toBe(1);
    expect(divideRoundHalfUp(4, 10)).toBe(0);
    expect(divideRoundHalfUp(15, 10)).toBe(2);
    expect(divideRoundHalfUp(25, 10)).toBe(3);
    expect(divideRoundHalfUp(14_999, 10_000)).toBe(1);
    expect(divideRoundHalfUp(0, 7)).toBe(0);
  });

  test("stays exact beyond 2^53", () => {
    expect(divideRoundHalfUp(10n ** 20n + 5n, 10n)).toBe(Number(10n ** 19n + 1n));
  });

  test("refuses negative numerators and non-positive denominators", () => {
    expect(() => divideRoundHalfUp(-1, 2)).toThrow(RangeError);
    expect(() => divideRoundHalfUp(1, 0)).toThrow(RangeError);
  });
});

describe("what an instance costs", () => {
  test("billable time is running plus paused, priced per millisecond and rounded once", () => {
    // 90 minutes at 3 cents an hour = 4.5 cents → 5.
    const charge = chargeInstance({ ...idle, runningMs: HOUR, pausedMs: HOUR / 2 }, { ...nano, priceHourlyMinor: 3 }, rules);
    expect(charge).toMatchObject({ billableMs: 1.5 * HOUR, uncappedMinor: 5, computeMinor: 5, capped: false, discountMinor: 0, creditMinor: 0 });
    // 29 minutes 59 seconds at 1 cent an hour is under half a cent: nothing.
    expect(chargeInstance({ ...idle, runningMs: 29 * 60_000 + 59_000 }, nano, rules).computeMinor).toBe(0);
    expect(chargeInstance({ ...idle, runningMs: 30 * 60_000 }, nano, rules).computeMinor).toBe(1);
  });

  test("never more than the monthly price", () => {
    const month = 31 * 24 * HOUR;
    const charge = chargeInstance({ ...idle, runningMs: month }, nano, rules);
    expect(charge).toMatchObject({ uncappedMinor: 744, computeMinor: 400, capped: true });
  });

  test("interruptible instances get the configured discount on compute", () => {
    const charge = chargeInstance({ ...idle, runningMs: 10 * HOUR }, { ...nano, priceHourlyMinor: 25, priority: "interruptible" }, rules);
    // 250 × 40 % = 100.
    expect(charge).toMatchObject({ computeMinor: 250, discountPercent: 40, discountMinor: 100 });
    const odd = chargeInstance({ ...idle, runningMs: HOUR }, { ...nano, priceHourlyMinor: 3, priority: "interruptible" }, rules);
    // 3 × 40 % = 1.2 → 1.
    expect(odd.discountMinor).toBe(1);
  });

  test("time paused by a power emergency is credited at the (discounted) hourly price", () => {
    const usage = { ...idle, runningMs: 10 * HOUR, emergencyPausedMs: 2 * HOUR };
    expect(chargeInstance(usage, { ...nano, priceHourlyMinor: 10 }, rules)).toMatchObject({ computeMinor: 120, creditMinor: 20 });
    expect(chargeInstance(usage, { ...nano, priceHourlyMinor: 10, priority: "interruptible" }, rules)).toMatchObject({ computeMinor: 120, discountMinor: 48, creditMinor: 12 });
  });

  test("a capped instance still gets its credit, and a credit never exceeds what was charged", () => {
    const month = 30 * 24 * HOUR;
    const capped = chargeInstance({ ...idle, runningMs: month - 10 * HOUR, emergencyPausedMs: 10 * HOUR }, nano, rules);
    expect(capped).toMatchObject({ computeMinor: 400, capped: true, creditMinor: 10 });
    const allPaused = chargeInstance({ ...idle, emergencyPausedMs: 1000 * HOUR }, nano, rules);
    expect(allPaused.creditMinor).toBe(allPaused.computeMinor - allPaused.discountMinor);
  });

  test("egress is priced per 10^9 bytes sent, rounded half up", () => {
    expect(chargeInstance({ ...idle, txBytes: 2.5 * GB }, nano, { ...rules, egressPricePerGbMinor: 3 }).egressMinor).toBe(8);
    expect(chargeInstance({ ...idle, txBytes: GB / 2 - 1 }, nano, rules).egressMinor).toBe(0);
  });
});

describe("invoice totals", () => {
  test("tax applies after discounts and credits and is rounded once per invoice", () => {
    const a = chargeInstance({ ...idle, runningMs: 10 * HOUR, emergencyPausedMs: 2 * HOUR }, { ...nano, priceHourlyMinor: 10 }, rules);
    const b = chargeInstance({ ...idle, runningMs: 5 * HOUR, txBytes: 3 * GB }, { ...nano, priceHourlyMinor: 7, priority: "interruptible" }, rules);
    const totals = invoiceTotals([a, b], 2000);
    // subtotal 120 + 35 + 3 = 158; discount 14; credit 20; taxable 124; tax 24.8 → 25.
    expect(totals).toEqual({ subtotalMinor: 158, discountMinor: 14, creditMinor: 20, taxRateBps: 2000, taxMinor: 25, totalMinor: 149 });
  });

  test("a fractional rate rounds half up", () => {
    const charge = chargeInstance({ ...idle, runningMs: 2 * HOUR }, { ...nano, priceHourlyMinor: 100 }, rules);
    // 200 × 7.25 % = 14.5 → 15.
    expect(invoiceTotals([charge], 725)).toMatchObject({ taxMinor: 15, totalMinor: 215 });
  });

  test("lines: compute always, egress, discount and credit only when not zero; signs match the totals", () => {
    const usage = { runningMs: 10 * HOUR, pausedMs: 0, emergencyPausedMs: 2 * HOUR, txBytes: 2 * GB };
    const price = { ...nano, priceHourlyMinor: 10, priority: "interruptible" as const };
    const charge = chargeInstance(usage, price, rules);
    const lines = instanceLines({ id: "i-1", name: "web", ...price }, usage, charge, rules);
    expect(lines.map((l) => [l.kind, l.quantity, l.amountMinor])).toEqual([
      ["compute", 12, 120],
      ["egress", 2, 2],
      ["discount", 1, -48],
      ["credit", 2, -12],
    ]);
    const totals = invoiceTotals([charge], 0);
    expect(lines.reduce((sum, l) => sum + l.amountMinor, 0)).toBe(totals.totalMinor);
    expect(instanceLines({ id: "i-2", name: "idle", ...nano }, idle, chargeInstance(idle, nano, rules), rules).map((l) => l.kind)).toEqual(["compute"]);
  });

  test("money is printed with two decimals and the currency", () => {
    expect(formatMoney(12345, "USD")).toBe("USD 123.45");
    expect(formatMoney(-5, "USD")).toBe("-USD 0.05");
    expect(formatMoney(0, "EUR")).toBe("EUR 0.00");
  });
});

describe("periods", () => {
  test("are UTC calendar months, half-open", () => {
    expect(parsePeriod("2024-02")).toEqual({ name: "2024-02", start: new Date("2024-02-01T00:00:00Z"), end: new Date("2024-03-01T00:00:00Z") });
    expect(parsePeriod("2024-12").end).toEqual(new Date("2025-01-01T00:00:00Z"));
    expect(periodOf(new Date("2024-03-01T00:00:00Z")).name).toBe("2024-03");
    expect(periodOf(new Date("2024-02-29T23:59:59.999Z")).name).toBe("2024-02");
    expect(previousPeriod(new Date("2024-01-01T00:00:00.010Z")).name).toBe("2023-12");
  });

  test("malformed names are validation errors", () => {
    for (const bad of ["2024-13", "2024-1", "24-01", "2024-01-01", ""]) expect(() => parsePeriod(bad)).toThrow(/YYYY-MM/);
  });
});

describe("states only move forward", () => {
  test("invoices: draft → open → paid | void | uncollectible; paid and void are final", () => {
    expect(canMoveInvoice("draft", "open")).toBe(true);
    expect(canMoveInvoice("open", "paid")).toBe(true);
    expect(canMoveInvoice("open", "uncollectible")).toBe(true);
    expect(canMoveInvoice("uncollectible", "paid")).toBe(true);
    expect(canMoveInvoice("paid", "open")).toBe(false);
    expect(canMoveInvoice("paid", "void")).toBe(false);
    expect(canMoveInvoice("void", "open")).toBe(false);
    expect(canMoveInvoice("open", "draft")).toBe(false);
  });

  test("payments: pending → failed → succeeded → partially refunded → refunded", () => {
    expect(paymentMoves("pending", "succeeded")).toBe(true);
    expect(paymentMoves("failed", "succeeded")).toBe(true);
    expect(paymentMoves("succeeded", "failed")).toBe(false);
    expect(paymentMoves("refunded", "succeeded")).toBe(false);
    expect(paymentMoves("pending", "refunded")).toBe(true);
    expect(paymentMoves("succeeded", "succeeded")).toBe(false);
  });
});
