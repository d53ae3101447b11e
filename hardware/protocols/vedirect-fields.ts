import { emptyReading, round, type ChargeState, type Reading } from "./reading";

/**
 * What VE.Direct text fields mean: each label's value grammar (the decoder
 * drops a block whose values do not fit their label) and the normalisation of
 * a frame into the common reading. Units per the protocol document (VE.Direct
 * Protocol 3.33, shared/reference/charge-controllers.md §A.5).
 */

type ValueKind = "int" | "hex" | "onoff";

/** Labels whose values are signed decimal integers (or `---`, unknown). */
const INTEGER_LABELS = [
  "V",
  "V2",
  "V3",
  "VS",
  "VM",
  "DM",
  "VPV",
  "PPV",
  "I",
  "I2",
  "I3",
  "IL",
  "P",
  "CE",
  "SOC",
  "TTG",
  "T",
  "CS",
  "MPPT",
  "ERR",
  "AR",
  "MON",
  "HSDS",
  "MODE",
  "WARN",
  "AC_OUT_V",
  "AC_OUT_I",
  "AC_OUT_S",
  ...Array.from({ length: 23 }, (_, i) => `H${i + 1}`),
];
const KINDS = new Map<string, ValueKind>([...INTEGER_LABELS.map((label) => [label, "int"] as const), ["PID", "hex"], ["OR", "hex"], ["LOAD", "onoff"], ["RELAY", "onoff"], ["ALARM", "onoff"]]);

/** Label bytes the protocol uses: letters, digits, `#` (SER#) and `_` (a table: the decoder asks per byte). */
export const LABEL_BYTES = (() => {
  const table = new Uint8Array(256);
  for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789#_") table[c.charCodeAt(0)] = 1;
  return table;
})();

/** `-?` and 1–10 decimal digits, without a regular expression: the common case, checked per field. */
function isInteger(value: string): boolean {
  const start = value.charCodeAt(0) === 0x2d ? 1 : 0;
  const digits = value.length - start;
  if (digits < 1 || digits > 10) return false;
  for (let i = start; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/**
 * Whether a value fits its label's grammar. `---` (unknown) fits every
 * numeric label; unknown labels take any printable text. A value that does
 * not fit means the bytes were damaged in a way the checksum missed (two
 * errors cancelling out), so the whole block is dropped rather than read as
 * unknown.
 */
export function valueFits(label: string, value: string): boolean {
  switch (KINDS.get(label)) {
    case "int":
      return isInteger(value) || value === "---";
    case "hex":
      return isHex(value) || value === "---";
    case "onoff":
      return value === "ON" || value === "OFF";
    default:
      // Any text: the decoder has already refused bytes that are not printable ASCII.
      return true;
  }
}

/** `0x` and 1–8 hex digits. */
function isHex(value: string): boolean {
  if (value.length < 3 || value.length > 10 || value.charCodeAt(0) !== 0x30 || (value.charCodeAt(1) | 0x20) !== 0x78) return false;
  for (let i = 2; i < value.length; i++) {
    const c = value.charCodeAt(i) | 0x20;
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return false;
  }
  return true;
}

const CHARGE_STATES: Record<number, ChargeState> = {
  0: "off",
  1: "other",
  2: "fault",
  3: "bulk",
  4: "absorption",
  5: "float",
  6: "storage",
  7: "equalize",
  245: "starting",
  246: "absorption",
  247: "equalize",
  248: "other",
  252: "other",
};

const ERRORS: Record<number, string> = {
  2: "battery voltage too high",
  17: "charger temperature too high",
  18: "charger over-current",
  19: "charger current reversed",
  20: "bulk time limit exceeded",
  21: "current sensor issue",
  26: "terminals overheated",
  28: "converter issue",
  33: "input voltage too high",
  34: "input current too high",
  38: "input shutdown (battery voltage)",
  39: "input shutdown (current flow in off mode)",
  65: "lost communication with a device",
  66: "synchronised charging configuration issue",
  67: "BMS connection lost",
  68: "network misconfigured",
  116: "calibration data lost",
  117: "incompatible firmware",
  119: "settings data invalid",
};

const ALARM_REASONS: Array<[number, string]> = [
  [1, "low voltage"],
  [2, "high voltage"],
  [4, "low SOC"],
  [8, "low starter voltage"],
  [16, "high starter voltage"],
  [32, "low temperature"],
  [64, "high temperature"],
  [128, "mid-point voltage"],
];

function int(fields: Record<string, string | null>, label: string): number | null {
  const raw = fields[label];
  if (raw === undefined || raw === null || !/^-?\d+$/.test(raw.trim())) return null;
  return Number(raw.trim());
}

/**
 * Normalises a frame into the common reading shape. Units per the protocol:
 * V, VPV, IL in mV/mA; I in mA (signed); PPV in W; SOC in ‰; H20 in 0.01 kWh;
 * T in °C. An MPPT reports no PV current (derived from PPV/VPV) and no SOC.
 */
export function readingFromVeDirect(fields: Record<string, string | null>): Reading {
  const r = emptyReading();
  const mV = int(fields, "V");
  const mA = int(fields, "I");
  const vpv = int(fields, "VPV");
  const ppv = int(fields, "PPV");
  const il = int(fields, "IL");
  r.batteryVoltage = mV === null ? null : mV / 1000;
  r.batteryCurrent = mA === null ? null : mA / 1000;
  r.pvVoltage = vpv === null ? null : vpv / 1000;
  r.pvPower = ppv;
  if (ppv === 0) r.pvCurrent = 0;
  else if (ppv !== null && vpv !== null && vpv > 500) r.pvCurrent = round(ppv / (vpv / 1000), 3);
  if (il !== null) {
    r.loadCurrent = il / 1000;
    r.loadVoltage = r.batteryVoltage;
    r.loadPower = r.batteryVoltage === null ? null : round(r.batteryVoltage * r.loadCurrent, 2);
  }
  const soc = int(fields, "SOC");
  if (soc !== null) {
    r.soc = soc / 10;
    r.socSource = "controller";
  }
  r.batteryTemperature = int(fields, "T");
  const cs = int(fields, "CS");
  r.chargeState = cs === null ? null : (CHARGE_STATES[cs] ?? "other");
  const h20 = int(fields, "H20");
  r.yieldTodayKwh = h20 === null ? null : h20 / 100;

  const err = int(fields, "ERR");
  const ar = int(fields, "AR");
  if (err !== null && err !== 0) {
    r.fault = `${ERRORS[err] ?? "charger error"} (VE.Direct ERR ${err})`;
  } else if (ar !== null && ar !== 0) {
    const reasons = ALARM_REASONS.filter(([bit]) => (ar & bit) !== 0).map(([, name]) => name);
    r.fault = `alarm: ${reasons.join(", ") || "unknown"} (VE.Direct AR ${ar})`;
  }
  return r;
}
