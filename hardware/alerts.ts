import type { Alignment } from "../server/energy/alignment";
import type { NewEnergyEvent } from "../server/energy/events";
import type { LinkSnapshot, LinkState } from "./link";

/**
 * The operator alerts the monitor raises, as energy events: the link's state
 * changes (telemetry lost, link degraded, restored) and a policy that sits
 * below the controller's cut-offs. Message wording lives here so the monitor
 * keeps to the flow.
 */

export type LinkContext = {
  at: Date;
  timeoutMs: number;
  baud: number;
  protocol: string;
  lastReadingAt: string | null;
  snapshot: LinkSnapshot;
  details: Record<string, unknown>;
};

export function linkAlert(change: { from: LinkState; to: LinkState }, c: LinkContext): NewEnergyEvent | null {
  const details = { from: change.from, lastReadingAt: c.lastReadingAt, recent: c.snapshot.recent, ...c.details };
  if (change.to === "lost") {
    const since = c.lastReadingAt === null ? "since the monitor started" : `since ${c.lastReadingAt}`;
    return { at: c.at, kind: "telemetry_lost", severity: "critical", message: `No valid data from the charge controller ${since} (timeout ${c.timeoutMs} ms): nothing arrives on the line`, details };
  }
  if (change.to === "degraded") {
    const r = c.snapshot.recent;
    return {
      at: c.at,
      kind: "link_degraded",
      severity: "warning",
      message: `Bytes arrive from the charge controller but no valid reading for ${c.timeoutMs} ms (${r.bytes} bytes, ${r.frames} frames decoded, ${r.accepted} accepted): check the baud rate (SERIAL_BAUD=${c.baud}), the cable and interference`,
      details,
    };
  }
  if (change.to === "ok" && change.from !== "waiting") {
    return {
      at: c.at,
      kind: "telemetry_restored",
      severity: "info",
      message: `Telemetry from the charge controller is back (it was ${change.from})`,
      details: { protocol: c.protocol, from: change.from },
    };
  }
  return null;
}

export function misalignmentAlert(alignment: Alignment, at: Date): NewEnergyEvent | null {
  if (alignment.ok || !alignment.cutoffs) return null;
  const { shutdown: s, critical: c, cutoffs } = alignment;
  const problems = [
    s && !s.ok ? `shutdown at ${s.soc} % (${s.restingVolts} V at rest) is below the controller's disconnect ${cutoffs.lvd} V + margin = ${s.requiredVolts} V (needs ≥ ${s.minimumSoc} %)` : null,
    c && !c.ok ? `critical at ${c.soc} % (${c.restingVolts} V) is below its under-voltage warning ${cutoffs.uvWarning} V + sag = ${c.requiredVolts} V (needs ≥ ${c.minimumSoc} %)` : null,
  ].filter(Boolean);
  return { at, kind: "policy_misaligned", severity: s && !s.ok ? "critical" : "warning", message: `Power policy vs the charge controller: ${problems.join("; ")}`, details: { alignment } };
}
