import type { PowerPolicy } from "../../hardware/policy";
import { POWER_LEVELS, type PowerLevel } from "../../server/energy/levels";

/** What Docker said about the three containers at one instant (energy clock, ms). */
export type Sample = { at: number; critical: string; standard: string; interruptible: string; throttled: boolean; disconnected: boolean };

export type ReplayRecord = {
  simStart: number;
  simEnd: number;
  realSeconds: number;
  speed: number;
  policy: PowerPolicy;
  samples: Sample[];
  levels: Array<{ at: number; to: PowerLevel; cause: string }>;
  warnings: Array<{ at: number; level: PowerLevel; earliestAt: number }>;
  battery: { lowestSoc: number; lowestVolts: number; disconnects: number; disconnectedSeconds: number; lvd: number };
  link: { framesDecoded: number; framesDropped: number; readingsRejected: number };
  /** The power emergency's requests to compute, with their times on the energy clock and the engine's real duration. */
  actions: Array<{ priority: string; kind: string; reason: string; at: number; engineSeconds: number | null }>;
  minimum: { interruptibleOffHours: number; standardOffHours: number; lowestSoc: number };
};

const HOUR = 3_600_000;
const hours = (ms: number) => Math.round((ms / HOUR) * 100) / 100;

type Span = { from: number; to: number };

/** Runs of samples where `test` holds, as time spans (each sample lasts until the next). */
function spans(samples: Sample[], end: number, test: (s: Sample) => boolean): Span[] {
  const out: Span[] = [];
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i]!;
    const to = samples[i + 1]?.at ?? end;
    if (!test(s)) continue;
    const last = out.at(-1);
    if (last && last.to === s.at) last.to = to;
    else out.push({ from: s.at, to });
  }
  return out;
}

const total = (xs: Span[]) => xs.reduce((a, s) => a + (s.to - s.from), 0);

export function analyse(r: ReplayRecord) {
  const levelAt = (at: number): PowerLevel => {
    let level: PowerLevel = "normal";
    for (const c of r.levels) if (c.at <= at) level = c.to;
    return level;
  };
  const timeIn = Object.fromEntries(POWER_LEVELS.map((l) => [l, 0])) as Record<PowerLevel, number>;
  let level: PowerLevel = "normal";
  let since = r.simStart;
  for (const c of [...r.levels, { at: r.simEnd, to: "normal" as PowerLevel, cause: "" }]) {
    timeIn[level] += Math.max(0, Math.min(c.at, r.simEnd) - since);
    level = c.to;
    since = c.at;
  }

  const criticalDown = spans(r.samples, r.simEnd, (s) => s.critical !== "running" || s.disconnected);
  const standardDown = spans(r.samples, r.simEnd, (s) => s.standard !== "running");
  const paused = spans(r.samples, r.simEnd, (s) => s.interruptible === "paused");
  const interruptibleOff = spans(r.samples, r.simEnd, (s) => s.interruptible !== "running");
  const throttled = spans(r.samples, r.simEnd, (s) => s.interruptible === "running" && s.throttled);

  // Each stop of the standard instance, and the level the platform was at when it began.
  const standardStops = standardDown.map((s) => ({ at: s.from, level: levelAt(s.from), hours: hours(s.to - s.from) }));
  const inShutdownBand = total(standardDown.flatMap((s) => clip(s, r.levels, r.simEnd, (l) => l === "shutdown" || l === "critical")));

  /**
   * Each step down into one of `into` from a level above them (what triggers a pause, or a stop), and the
   * first forecast warning for such a level given since the previous step up out of them: its lead time.
   */
  const notice = (into: PowerLevel[]) => {
    const out: Array<{ at: string; to: PowerLevel; noticeMinutes: number | null }> = [];
    let prev: PowerLevel = "normal";
    let approachFrom = r.simStart;
    for (const c of r.levels) {
      if (into.includes(c.to) && !into.includes(prev)) {
        const warning = r.warnings.find((w) => into.includes(w.level) && w.at > approachFrom && w.at <= c.at);
        out.push({ at: new Date(c.at).toISOString(), to: c.to, noticeMinutes: warning ? Math.round((c.at - warning.at) / 60_000) : null });
      }
      if (!into.includes(c.to) && into.includes(prev)) approachFrom = c.at;
      prev = c.to;
    }
    return out;
  };
  const pauses = notice(["critical", "shutdown"]);
  const stops = notice(["shutdown"]);

  /**
   * The platform's decisions for one priority: each shed and restore request, the level it was made
   * at, and the time between them (held). Docker's own start and stop times do not speed up with the
   * simulation, so the containers' downtime runs longer than the decisions by that latency × speed.
   */
  const decisions = (priority: string) => {
    const own = r.actions.filter((a) => a.priority === priority && (a.reason === "power_emergency" || a.reason === "power_restored") && a.kind !== "throttle");
    const held: Span[] = [];
    let from: number | null = null;
    for (const a of own) {
      if (a.reason === "power_emergency" && from === null) from = a.at;
      if (a.reason === "power_restored" && from !== null) {
        held.push({ from, to: a.at });
        from = null;
      }
    }
    if (from !== null) held.push({ from, to: r.simEnd });
    return {
      requests: own.map((a) => ({ at: new Date(a.at).toISOString(), action: a.kind, level: levelAt(a.at), engineSeconds: a.engineSeconds })),
      held,
    };
  };
  const standardDecisions = decisions("standard");
  /** When the level last came to admit standard instances again (conserve or normal) before `at`. */
  const admittedSince = (at: number) => {
    let since = r.simStart;
    let admitted = true;
    for (const c of r.levels) {
      if (c.at > at) break;
      const now = c.to === "normal" || c.to === "conserve";
      if (now && !admitted) since = c.at;
      admitted = now;
    }
    return since;
  };
  // How long after the level admitted it again the platform asked for it back: the pipeline's latency, on the energy clock.
  const restarts = standardDecisions.held
    .filter((h) => h.to < r.simEnd)
    .map((h) => {
      const lag = h.to - admittedSince(h.to);
      return { at: new Date(h.to).toISOString(), lagMinutes: Math.round(lag / 60_000), lagRealSeconds: Math.round((lag / r.speed / 1000) * 100) / 100 };
    });
  const heldOutsideBand = total(standardDecisions.held.flatMap((s) => clip(s, r.levels, r.simEnd, (l) => l !== "shutdown" && l !== "critical")));

  return {
    simulated: { from: new Date(r.simStart).toISOString(), to: new Date(r.simEnd).toISOString(), days: (r.simEnd - r.simStart) / (24 * HOUR) },
    realSeconds: Math.round(r.realSeconds * 10) / 10,
    speed: r.speed,
    levels: {
      timeline: r.levels.map((l) => `${new Date(l.at).toISOString().slice(5, 16)} ${l.to}${l.cause === "forecast" ? " (forecast)" : ""}`),
      changes: r.levels.length,
      early: r.levels.filter((l) => l.cause === "forecast").length,
      hours: Object.fromEntries(Object.entries(timeIn).map(([l, ms]) => [l, hours(ms)])) as Record<PowerLevel, number>,
    },
    critical: { downtimeHours: hours(total(criticalDown)), episodes: criticalDown.length },
    standard: {
      stops: standardStops.length,
      stopsBegunAtShutdown: standardStops.filter((s) => s.level === "shutdown").length,
      downHours: hours(total(standardDown)),
      /** Down while the level was shutdown, or critical on the way back (critical does not admit standard). */
      downHoursInShutdownBand: hours(inShutdownBand),
      minimumHours: Math.round(r.minimum.standardOffHours * 100) / 100,
      /** What the platform decided: stopped at shutdown, started again once the level admitted it. */
      stopsRequestedAtShutdown: standardDecisions.requests.filter((q) => q.action === "stop").every((q) => q.level === "shutdown"),
      heldHours: hours(total(standardDecisions.held)),
      heldOutsideBandHours: hours(heldOutsideBand),
      restarts,
      requests: standardDecisions.requests,
      spans: standardDown.map((d) => ({ from: new Date(d.from).toISOString(), to: new Date(d.to).toISOString(), levelAtStart: levelAt(d.from), levelAtEnd: levelAt(d.to - 1) })),
      noticed: stops,
    },
    interruptible: {
      requests: decisions("interruptible").requests,
      throttledHours: hours(total(throttled)),
      pausedHours: hours(total(paused)),
      offHours: hours(total(interruptibleOff)),
      minimumOffHours: Math.round(r.minimum.interruptibleOffHours * 100) / 100,
      pauses: interruptibleOff.length,
      noticed: pauses,
    },
    battery: {
      lowestSoc: Math.round(r.battery.lowestSoc * 10) / 10,
      lowestVolts: Math.round(r.battery.lowestVolts * 1000) / 1000,
      controllerLvd: r.battery.lvd,
      headroomVolts: Math.round((r.battery.lowestVolts - r.battery.lvd) * 1000) / 1000,
      controllerDisconnects: r.battery.disconnects,
      minimumPolicyLowestSoc: Math.round(r.minimum.lowestSoc * 10) / 10,
    },
    warnings: r.warnings.length,
    link: r.link,
  };
}

/** The parts of a span during which the level satisfied `test`. */
function clip(span: Span, levels: ReplayRecord["levels"], end: number, test: (l: PowerLevel) => boolean): Span[] {
  const out: Span[] = [];
  let level: PowerLevel = "normal";
  let from = -Infinity;
  for (const c of [...levels, { at: end, to: "normal" as PowerLevel }]) {
    const a = Math.max(from, span.from);
    const b = Math.min(c.at, span.to);
    if (b > a && test(level)) out.push({ from: a, to: b });
    level = c.to;
    from = c.at;
  }
  return out;
}

export type ReplayReport = ReturnType<typeof analyse>;

const engine = (requests: Array<{ action: string; engineSeconds: number | null }>) =>
  requests.map((q) => `${q.action} ${q.engineSeconds === null ? "?" : q.engineSeconds.toFixed(1)} s`).join(", ") || "—";

export function formatReport(r: ReplayReport): string {
  const mins = (xs: Array<{ noticeMinutes: number | null }>) => xs.map((x) => (x.noticeMinutes === null ? "none" : `${x.noticeMinutes} min`)).join(", ") || "—";
  return [
    `Week replay: ${r.simulated.days} simulated days (${r.simulated.from.slice(0, 10)} → ${r.simulated.to.slice(0, 10)}) in ${r.realSeconds} s real, ${r.speed}× through simulator → pty → bridge → monitor, real containers`,
    `level changes: ${r.levels.timeline.join(", ")}`,
    `levels: ${r.levels.changes} changes (${r.levels.early} stepped early by the forecast); hours normal ${r.levels.hours.normal}, conserve ${r.levels.hours.conserve}, critical ${r.levels.hours.critical}, shutdown ${r.levels.hours.shutdown}`,
    `critical instance: downtime ${r.critical.downtimeHours} h`,
    `standard instance: ${r.standard.stops} stop(s), each requested at shutdown: ${r.standard.stopsRequestedAtShutdown ? "yes" : "NO"}; held by the platform ${r.standard.heldHours} h, of which outside the shutdown band (shutdown, or critical on the way back, which does not admit standard) ${r.standard.heldOutsideBandHours} h — the restart requests came ${r.standard.restarts.map((x) => `${x.lagRealSeconds} s`).join(", ") || "—"} (real) after the level admitted it; container down ${r.standard.downHours} h (the engine's real start/stop time × ${r.speed}: ${engine(r.standard.requests)}); energy-budget minimum ${r.standard.minimumHours} h; forecast notice before each step to shutdown: ${mins(r.standard.noticed)}`,
    `interruptible instance: throttled ${r.interruptible.throttledHours} h, paused ${r.interruptible.pausedHours} h, off (paused or stopped) ${r.interruptible.offHours} h vs the energy-budget minimum ${r.interruptible.minimumOffHours} h; forecast notice before each step to critical or below (where it is paused): ${mins(r.interruptible.noticed)}`,
    `battery: lowest ${r.battery.lowestSoc} % SOC, ${r.battery.lowestVolts} V under load vs the controller's LVD ${r.battery.controllerLvd} V (headroom ${r.battery.headroomVolts} V), controller disconnects ${r.battery.controllerDisconnects}; with minimum shedding the lowest SOC would be ${r.battery.minimumPolicyLowestSoc} %`,
    `forecast warnings: ${r.warnings}; frames decoded ${r.link.framesDecoded}, dropped ${r.link.framesDropped}, readings rejected ${r.link.readingsRejected}`,
  ].join("\n");
}
