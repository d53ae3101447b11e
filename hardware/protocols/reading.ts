/**
 * The one reading shape both protocol drivers produce. SI units throughout:
 * volts, amperes (battery current signed, + = charging), watts, °C, kWh, and
 * state of charge in percent. `null` means the controller does not report the
 * value (or reported "unknown"), never zero.
 */
export const CHARGE_STATES = ["off", "bulk", "absorption", "float", "storage", "equalize", "starting", "fault", "other"] as const;
export type ChargeState = (typeof CHARGE_STATES)[number];

export type SocSource = "controller" | "voltage";

export type Reading = {
  pvVoltage: number | null;
  pvCurrent: number | null;
  pvPower: number | null;
  batteryVoltage: number | null;
  batteryCurrent: number | null;
  soc: number | null;
  socSource: SocSource | null;
  loadVoltage: number | null;
  loadCurrent: number | null;
  loadPower: number | null;
  batteryTemperature: number | null;
  controllerTemperature: number | null;
  chargeState: ChargeState | null;
  /** A controller-reported fault, as a short sentence naming the protocol code; null when none. */
  fault: string | null;
  yieldTodayKwh: number | null;
};

export function emptyReading(): Reading {
  return {
    pvVoltage: null,
    pvCurrent: null,
    pvPower: null,
    batteryVoltage: null,
    batteryCurrent: null,
    soc: null,
    socSource: null,
    loadVoltage: null,
    loadCurrent: null,
    loadPower: null,
    batteryTemperature: null,
    controllerTemperature: null,
    chargeState: null,
    fault: null,
    yieldTodayKwh: null,
  };
}

/** Battery power in watts, + = charging; null when voltage or current is unknown. */
export function batteryPower(reading: Pick<Reading, "batteryVoltage" | "batteryCurrent">): number | null {
  return reading.batteryVoltage === null || reading.batteryCurrent === null ? null : reading.batteryVoltage * reading.batteryCurrent;
}

/** Rounds to a fixed number of decimals so stored and returned numbers stay tidy. */
export function round(value: number, decimals: number): number {
  const f = 10 ** decimals;
  return Math.round(value * f) / f;
}
