/**
 * The health of the serial link, from what arrives on it: bytes received,
 * frames decoded (checksum and grammar passed), readings accepted
 * (plausible). With no accepted reading for the telemetry timeout, the link
 * is `degraded` when bytes still arrive (wrong baud rate, noise, a damaged
 * cable, a controller sending nonsense) and `lost` when nothing arrives at all
 * (unplugged, controller off, bridge down). The two call for different
 * repairs, so they are different alerts. Neither changes the power level:
 * the policy simply has no reading to act on.
 *
 * Times here are real milliseconds: the link runs at the wire's pace whatever
 * the energy clock does.
 */

export type LinkState = "waiting" | "ok" | "degraded" | "lost";

export type LinkCounters = { bytes: number; frames: number; accepted: number };

export type LinkSnapshot = {
  state: LinkState;
  since: number;
  totals: LinkCounters;
  /** What arrived during the last telemetry timeout. */
  recent: LinkCounters;
  lastByteAt: number | null;
  lastFrameAt: number | null;
  lastAcceptedAt: number | null;
};

type Tick = { at: number } & LinkCounters;

export class LinkHealth {
  private state: LinkState = "waiting";
  private since: number;
  private readonly totals: LinkCounters = { bytes: 0, frames: 0, accepted: 0 };
  private lastByteAt: number | null = null;
  private lastFrameAt: number | null = null;
  private lastAcceptedAt: number | null = null;
  /** Counter snapshots, one per evaluation, to count what arrived within the timeout. */
  private ticks: Tick[] = [];

  constructor(
    private readonly timeoutMs: number,
    private readonly startedAt: number,
  ) {
    this.since = startedAt;
  }

  bytes(n: number, at: number): void {
    if (n <= 0) return;
    this.totals.bytes += n;
    this.lastByteAt = at;
  }

  frame(at: number): void {
    this.totals.frames++;
    this.lastFrameAt = at;
  }

  accepted(at: number): void {
    this.totals.accepted++;
    this.lastAcceptedAt = at;
  }

  /** The state at `now`, and the transition if it changed since the last call. */
  evaluate(now: number): { state: LinkState; change: { from: LinkState; to: LinkState } | null } {
    this.ticks.push({ at: now, ...this.totals });
    while (this.ticks.length > 1 && this.ticks[1]!.at <= now - this.timeoutMs) this.ticks.shift();
    const within = (at: number | null) => at !== null && now - at <= this.timeoutMs;
    let next: LinkState;
    if (within(this.lastAcceptedAt)) next = "ok";
    else if (within(this.lastByteAt)) next = "degraded";
    else if (this.lastAcceptedAt === null && now - this.startedAt <= this.timeoutMs) next = "waiting";
    else next = "lost";
    // Bytes alone during start-up are not yet a verdict: give the first frame the whole timeout.
    if (next === "degraded" && this.lastAcceptedAt === null && now - this.startedAt <= this.timeoutMs) next = "waiting";
    if (next === this.state) return { state: next, change: null };
    const change = { from: this.state, to: next };
    this.state = next;
    this.since = now;
    return { state: next, change };
  }

  snapshot(): LinkSnapshot {
    const first = this.ticks[0];
    const recent = first ? { bytes: this.totals.bytes - first.bytes, frames: this.totals.frames - first.frames, accepted: this.totals.accepted - first.accepted } : { ...this.totals };
    return {
      state: this.state,
      since: this.since,
      totals: { ...this.totals },
      recent,
      lastByteAt: this.lastByteAt,
      lastFrameAt: this.lastFrameAt,
      lastAcceptedAt: this.lastAcceptedAt,
    };
  }
}

/** The snapshot as published (energy_monitor.link, energy.status): instants as ISO times of the energy clock. */
export function linkView(s: LinkSnapshot, windowMs: number, iso: (realMs: number) => string) {
  const at = (ms: number | null) => (ms === null ? null : iso(ms));
  return { state: s.state, since: at(s.since), totals: s.totals, recent: s.recent, windowMs, lastByteAt: at(s.lastByteAt), lastFrameAt: at(s.lastFrameAt), lastAcceptedAt: at(s.lastAcceptedAt) };
}
