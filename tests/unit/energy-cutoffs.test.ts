import { describe, expect, test } from "bun:test";
import { DEFAULT_POLICY, type PowerPolicy } from "../../hardware/policy";
import { cutoffsFromEpever, defaultEpeverSettings, EPEVER_SETTINGS_READ } from "../../hardware/protocols/epever-settings";
import { parseResponse, READ_HOLDING, readRequest } from "../../hardware/protocols/modbus";
import { EpeverResponder } from "../../hardware/simulator/devices";
import { voltageForSoc } from "../../hardware/soc";
import { margins, policyAlignment, type AlignmentOptions } from "../../server/energy/alignment";

// The 12 V example of the reference (events-and-energy.md §4.2): LVR 12.60, warning recover 12.20, warning 12.00, LVD 11.10, limit 10.60.
const TRACER_12V = [1, 200, 300, 1600, 1500, 1500, 1460, 1440, 1380, 1320, 1260, 1220, 1200, 1110, 1060];
const LEAD_12V: AlignmentOptions = { bank: { chemistry: "lead-acid", cells: 6, nominalVoltage: 12 }, minTemperatureC: 10, sagVolts: 0.2 };

describe("an EPEver's battery settings (holding registers 0x9000–0x900E)", () => {
  test("are decoded in volts: disconnect, reconnect, warning, temperature compensation", () => {
    expect(cutoffsFromEpever(TRACER_12V, 12)).toEqual({
      source: "epever",
      batteryType: 1,
      capacityAh: 200,
      tempCompMvPerCell: 3,
      lvr: 12.6,
      uvWarningRecover: 12.2,
      uvWarning: 12,
      lvd: 11.1,
      dischargeLimit: 10.6,
      scaled: false,
    });
  });

  test("a 24 V unit holding 12 V values is scaled; pack volts are taken as they are", () => {
    expect(cutoffsFromEpever(TRACER_12V, 24)).toMatchObject({ lvd: 22.2, lvr: 25.2, uvWarning: 24, scaled: true });
    expect(cutoffsFromEpever(defaultEpeverSettings(24), 24)).toMatchObject({ lvd: 22.2, scaled: false });
  });

  test("values that break the controller's own ordering rules were not read right and are refused", () => {
    const swapped = [...TRACER_12V];
    [swapped[0x0a], swapped[0x0d]] = [swapped[0x0d]!, swapped[0x0a]!];
    expect(cutoffsFromEpever(swapped, 12)).toBeNull();
    expect(cutoffsFromEpever(TRACER_12V.slice(0, 10), 12)).toBeNull();
  });

  test("the simulated controller answers function 0x03 for the block, and 02 beyond it", () => {
    const device = new EpeverResponder(1, () => new Map(), defaultEpeverSettings(12, { lvd: 11.4 }));
    const [reply] = device.feed(readRequest(1, READ_HOLDING, EPEVER_SETTINGS_READ.start, EPEVER_SETTINGS_READ.count));
    const parsed = parseResponse(reply!, { unit: 1, fn: READ_HOLDING, count: EPEVER_SETTINGS_READ.count });
    expect(parsed.kind).toBe("registers");
    expect(cutoffsFromEpever((parsed as { registers: number[] }).registers, 12)).toMatchObject({ lvd: 11.4, lvr: 12.6, uvWarning: 12 });
    const [refused] = device.feed(readRequest(1, READ_HOLDING, 0x9010, 4));
    expect(parseResponse(refused!, { unit: 1, fn: READ_HOLDING, count: 4 })).toMatchObject({ kind: "exception", code: 2 });
  });
});

describe("the policy against the controller's cut-offs", () => {
  const tracer = cutoffsFromEpever(TRACER_12V, 12)!;
  const policy = (shutdown: number, critical = 30, conserve = 50): PowerPolicy => ({ ...DEFAULT_POLICY, thresholds: { conserve, critical, shutdown } });

  test("the margin is the temperature term plus the load sag", () => {
    // 3 mV/°C per 2 V cell × 6 cells × (25 − 10) °C.
    expect(margins(tracer, LEAD_12V)).toEqual({ temperatureVolts: 0.27, sagVolts: 0.2 });
    expect(margins(tracer, { ...LEAD_12V, minTemperatureC: 0 }).temperatureVolts).toBe(0.45);
    expect(margins(tracer, { ...LEAD_12V, minTemperatureC: 30 }).temperatureVolts).toBe(0);
    // LiFePO4 without a coefficient from the controller: none.
    expect(margins({ ...tracer, tempCompMvPerCell: null }, { ...LEAD_12V, bank: { chemistry: "lifepo4", cells: 4, nominalVoltage: 12 } }).temperatureVolts).toBe(0);
  });

  test("shutdown must rest above LVD + margin; the minimum SOC is named", () => {
    // 11.10 + 0.27 + 0.20 = 11.57 V, which a 12 V lead-acid bank shows at rest at 14.0 %.
    const ok = policyAlignment(policy(15), tracer, LEAD_12V);
    expect(ok.shutdown).toMatchObject({ soc: 15, requiredVolts: 11.57, minimumSoc: 14.1, ok: true });
    expect(ok.cutoffSoc).toBe(14);
    const low = policyAlignment(policy(10), tracer, LEAD_12V);
    expect(low.ok).toBe(false);
    expect(low.shutdown).toMatchObject({ soc: 10, restingVolts: 11.51, ok: false });
    // The minimum itself passes.
    expect(policyAlignment(policy(low.shutdown!.minimumSoc), tracer, LEAD_12V).shutdown!.ok).toBe(true);
    expect(voltageForSoc({ chemistry: "lead-acid", cells: 6 }, low.shutdown!.minimumSoc)).toBeGreaterThanOrEqual(11.57);
  });

  test("critical (where pausing starts) is checked against the under-voltage warning plus sag", () => {
    // 12.00 + 0.20 V rests at 57.1 %: the default 30 % pauses below the controller's own warning.
    const alignment = policyAlignment(DEFAULT_POLICY, tracer, LEAD_12V);
    expect(alignment.critical).toMatchObject({ soc: 30, requiredVolts: 12.2, minimumSoc: 57.2, ok: false });
    expect(alignment.shutdown!.ok).toBe(true);
    expect(policyAlignment(policy(20, 58, 70), tracer, LEAD_12V).ok).toBe(true);
  });

  test("unknown cut-offs judge nothing", () => {
    expect(policyAlignment(policy(1), null, LEAD_12V)).toMatchObject({ known: false, ok: true, cutoffSoc: null });
  });
});
