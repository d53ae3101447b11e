import { energyView, type Sources } from "../energy/attribution";
import type { LineDraft } from "./pricing";

/**
 * The informational line on an invoice: the customer's share of the measured
 * load energy in the period (per-tenant solar accounting), how much of it was
 * sunlight, and the CO2 that avoided. Energy is not priced: the line's amount
 * is 0 and the invoice's totals are computed from the charges, never from
 * lines, so it cannot change what is owed. Null when nothing was attributed.
 */
export function energyLine(energy: Sources | undefined, gridCo2GramsPerKwh: number): LineDraft | null {
  if (!energy || energy.loadWh <= 0) return null;
  const view = energyView(energy, gridCo2GramsPerKwh);
  const percent = Math.round((view.sunlightShare ?? 0) * 100);
  return {
    instanceId: null,
    kind: "energy",
    description: `Energy: ${view.kwh} kWh, ${percent} % sunlight (panels ${view.solarKwh} kWh, battery ${view.batteryKwh} kWh, backup ${view.backupKwh} kWh); CO2 avoided ${view.co2AvoidedKg} kg`,
    quantity: view.kwh,
    unit: "kWh",
    unitPriceMinor: 0,
    amountMinor: 0,
    details: { ...view, gridCo2GramsPerKwh },
  };
}
