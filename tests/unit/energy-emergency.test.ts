import { describe, expect, test } from "bun:test";
import { POWER_EMERGENCY_REASON, type ActionKind, type InstancePriority, type InstanceState } from "../../server/compute/states";
import { planConvergence, POWER_RESTORED_REASON, type Candidate } from "../../server/energy/emergency";
import { POWER_LEVELS } from "../../server/energy/levels";
import { admits, LEVEL_RESTRICTIONS, shedAction, throttledCpuMillis, throttles } from "../../server/energy/restrictions";

let n = 0;
type Opts = { reason?: string; open?: ActionKind; openReason?: string; id?: string; throttled?: boolean };
function instance(priority: InstancePriority, state: InstanceState, opts: Opts = {}): Candidate {
  n += 1;
  return {
    id: opts.id ?? `${priority}-${state}-${n}`,
    priority,
    state,
    stateReason: opts.reason ?? "requested",
    createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, n)),
    cpuMillis: 1000,
    throttledByPower: opts.throttled ?? false,
    openAction: opts.open ? { kind: opts.open, reason: opts.openReason ?? "requested" } : null,
  };
}
const held = (priority: InstancePriority, state: "paused" | "stopped", opts: Omit<Opts, "reason"> = {}) => instance(priority, state, { reason: POWER_EMERGENCY_REASON, ...opts });
const steps = (plan: ReturnType<typeof planConvergence>["shed"]) => plan.map((s) => [s.instanceId, s.action]);

describe("what each power level restricts", () => {
  test("admission: conserve refuses interruptible; critical and shutdown refuse everything but critical", () => {
    const table = Object.fromEntries(POWER_LEVELS.map((level) => [level, (["critical", "standard", "interruptible"] as const).filter((p) => admits(level, p))]));
    expect(table).toEqual({
      normal: ["critical", "standard", "interruptible"],
      conserve: ["critical", "standard"],
      critical: ["critical"],
      shutdown: ["critical"],
    });
  });

  test("shedding: critical pauses interruptible; shutdown stops standard and interruptible; critical instances are never shed", () => {
    expect(POWER_LEVELS.map((level) => [level, shedAction(level, "interruptible"), shedAction(level, "standard"), shedAction(level, "critical")])).toEqual([
      ["normal", null, null, null],
      ["conserve", null, null, null],
      ["critical", "pause", null, null],
      ["shutdown", "stop", "stop", null],
    ]);
  });

  test("the ladder's first rung: from conserve down interruptible instances are throttled; nothing else ever is", () => {
    expect(POWER_LEVELS.map((level) => [level, throttles(level, "interruptible"), throttles(level, "standard"), throttles(level, "critical")])).toEqual([
      ["normal", false, false, false],
      ["conserve", true, false, false],
      ["critical", true, false, false],
      ["shutdown", true, false, false],
    ]);
    expect(throttledCpuMillis(500, 25)).toBe(125);
    expect(throttledCpuMillis(2, 25)).toBe(1);
  });

  test("no level both sheds a priority and admits it, so a pass never sheds and restores the same instance", () => {
    for (const level of POWER_LEVELS) {
      for (const priority of Object.keys(LEVEL_RESTRICTIONS[level].sheds) as InstancePriority[]) expect(admits(level, priority)).toBe(false);
    }
  });
});

describe("planning a convergence", () => {
  test("at critical, running interruptible instances are paused, oldest first; nothing else is touched", () => {
    const older = instance("interruptible", "running", { id: "older" });
    const newer = instance("interruptible", "running", { id: "newer" });
    const plan = planConvergence("critical", [instance("critical", "running"), newer, instance("standard", "running"), older, held("standard", "stopped")]);
    expect(steps(plan.shed)).toEqual([
      ["older", "pause"],
      ["newer", "pause"],
    ]);
    expect(plan.restore).toEqual([]);
    expect(plan.waiting).toEqual([]);
  });

  test("at shutdown, least important first: interruptible (running or paused by the emergency) then standard are stopped", () => {
    const plan = planConvergence("shutdown", [
      instance("standard", "running", { id: "web" }),
      held("interruptible", "paused", { id: "batch" }),
      instance("interruptible", "running", { id: "job" }),
      instance("critical", "running", { id: "db" }),
      // Paused for another reason (behind the platform's back): not the emergency's to stop.
      instance("interruptible", "paused", { id: "frozen", reason: "container was paused outside the platform" }),
    ]);
    expect(steps(plan.shed)).toEqual([
      ["batch", "stop"],
      ["job", "stop"],
      ["web", "stop"],
    ]);
  });

  test("recovery restores only what the emergency holds, when the level admits it again, most important first", () => {
    const candidates = [
      held("interruptible", "paused", { id: "batch" }),
      held("interruptible", "stopped", { id: "crawler" }),
      held("standard", "stopped", { id: "web" }),
      instance("standard", "stopped", { id: "user-stopped" }),
      instance("standard", "stopped", { id: "restored-earlier", reason: POWER_RESTORED_REASON }),
    ];
    expect(steps(planConvergence("critical", candidates).restore)).toEqual([]);
    expect(steps(planConvergence("conserve", candidates).restore)).toEqual([["web", "start"]]);
    expect(steps(planConvergence("normal", candidates).restore)).toEqual([
      ["web", "start"],
      ["batch", "resume"],
      ["crawler", "start"],
    ]);
  });

  test("an interruptible instance the emergency stopped stays stopped at critical: it is held, not paused again", () => {
    const plan = planConvergence("critical", [held("interruptible", "stopped")]);
    expect(plan).toEqual({ shed: [], restore: [], waiting: [] });
  });

  test("instances with an action in flight are left to it; those on their way to running are waited for", () => {
    const plan = planConvergence("critical", [
      instance("interruptible", "running", { id: "pausing", open: "pause" }),
      instance("interruptible", "running", { id: "restarting", open: "restart" }),
      instance("interruptible", "pending", { id: "creating", open: "create" }),
      instance("interruptible", "provisioning", { id: "starting", open: "start" }),
      instance("interruptible", "stopping", { id: "stopping", open: "stop" }),
      instance("interruptible", "running", { id: "deleting", open: "delete" }),
    ]);
    expect(plan.shed).toEqual([]);
    expect(plan.waiting.sort()).toEqual(["creating", "restarting", "starting"]);
    // Recovery skips a held instance its owner is deleting.
    expect(planConvergence("normal", [held("standard", "stopped", { open: "delete" })]).restore).toEqual([]);
  });

  test("a recovery that arrives while the emergency's own pause or stop is still in flight waits for it, then undoes it", () => {
    const plan = planConvergence("normal", [
      instance("interruptible", "running", { id: "being-paused", open: "pause", openReason: POWER_EMERGENCY_REASON }),
      instance("standard", "stopping", { id: "being-stopped", open: "stop", openReason: POWER_EMERGENCY_REASON }),
      instance("standard", "stopping", { id: "stopped-by-owner", open: "stop" }),
    ]);
    expect(plan).toEqual({ shed: [], restore: [], waiting: ["being-paused", "being-stopped"] });
  });

  test("at conserve, running interruptible instances are throttled before anything is paused; a throttled one is left alone", () => {
    const plan = planConvergence("conserve", [
      instance("interruptible", "running", { id: "batch" }),
      instance("interruptible", "running", { id: "done", throttled: true }),
      instance("standard", "running", { id: "web" }),
      instance("critical", "running", { id: "db" }),
      instance("interruptible", "running", { id: "starting", open: "restart" }),
    ]);
    expect(steps(plan.shed)).toEqual([["batch", "throttle"]]);
    expect(plan.restore).toEqual([]);
    expect(plan.waiting).toEqual(["starting"]);
    // Down to critical the throttled ones are paused; one still being throttled is waited for.
    const critical = planConvergence("critical", [
      instance("interruptible", "running", { id: "done", throttled: true }),
      instance("interruptible", "running", { id: "throttling", open: "throttle", openReason: POWER_EMERGENCY_REASON }),
    ]);
    expect(steps(critical.shed)).toEqual([["done", "pause"]]);
    expect(critical.waiting).toEqual(["throttling"]);
  });

  test("back at normal, CPU is given back: by itself when running, with the resume or start when held", () => {
    const plan = planConvergence("normal", [
      instance("interruptible", "running", { id: "running", throttled: true }),
      held("interruptible", "paused", { id: "paused", throttled: true }),
      held("interruptible", "stopped", { id: "stopped", throttled: true }),
      held("interruptible", "paused", { id: "unthrottled" }),
    ]);
    expect(plan.restore.map((s) => [s.instanceId, s.action, s.unthrottle ?? false])).toEqual([
      ["running", "unthrottle", false],
      ["paused", "resume", true],
      ["stopped", "start", true],
      ["unthrottled", "resume", false],
    ]);
    // At conserve they stay throttled (and the held ones held).
    expect(planConvergence("conserve", [instance("interruptible", "running", { throttled: true }), held("interruptible", "paused", { throttled: true })])).toEqual({
      shed: [],
      restore: [],
      waiting: [],
    });
  });

  test("a second pass over the result of the first has nothing to do", () => {
    const before = [instance("interruptible", "running", { id: "a" }), instance("standard", "running", { id: "b" })];
    expect(steps(planConvergence("shutdown", before).shed)).toEqual([
      ["a", "stop"],
      ["b", "stop"],
    ]);
    const after = before.map((c) => ({ ...c, state: "stopped" as const, stateReason: POWER_EMERGENCY_REASON }));
    expect(planConvergence("shutdown", after)).toEqual({ shed: [], restore: [], waiting: [] });
  });
});
