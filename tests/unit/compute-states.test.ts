import { describe, expect, test } from "bun:test";
import { ACTION_OUTCOME, ACTION_RULES, assertTransition, canTransition, INSTANCE_STATES } from "../../server/compute/states";
import { isAppError } from "../../server/errors";

describe("the instance state machine", () => {
  test("the happy path of an instance's life is a walk along its edges", () => {
    const life = ["pending", "provisioning", "running", "paused", "running", "stopping", "stopped", "provisioning", "running", "deleting", "deleted"] as const;
    for (let i = 1; i < life.length; i++) expect(canTransition(life[i - 1]!, life[i]!)).toBe(true);
  });

  test("deleted is final", () => {
    for (const to of INSTANCE_STATES) expect(canTransition("deleted", to)).toBe(false);
  });

  test("nothing skips provisioning on the way up", () => {
    expect(canTransition("pending", "running")).toBe(false);
    expect(canTransition("stopped", "running")).toBe(false);
    expect(canTransition("deleting", "running")).toBe(false);
  });

  test("every state but deleted can fall into error, and error can be left by start, stop or delete", () => {
    for (const from of INSTANCE_STATES.filter((s) => s !== "deleted" && s !== "error")) expect(canTransition(from, "error")).toBe(true);
    expect(canTransition("error", "provisioning")).toBe(true);
    expect(canTransition("error", "stopping")).toBe(true);
    expect(canTransition("error", "deleting")).toBe(true);
  });

  test("an illegal transition is refused with INVALID_TRANSITION", () => {
    let caught: unknown;
    try {
      assertTransition("stopped", "paused", "pause");
    } catch (error) {
      caught = error;
    }
    expect(isAppError(caught, "INVALID_TRANSITION")).toBe(true);
  });

  test("each action's in-between state and outcome are edges from every state it may start from", () => {
    for (const [kind, rule] of Object.entries(ACTION_RULES)) {
      // Only a resize keeps the state it found, and it is not one of these rules.
      const outcome = ACTION_OUTCOME[kind as keyof typeof ACTION_OUTCOME]!;
      for (const from of rule.from) {
        if (rule.during) {
          expect({ kind, from, to: rule.during, ok: canTransition(from, rule.during) }).toMatchObject({ ok: true });
        } else {
          expect({ kind, from, to: outcome, ok: canTransition(from, outcome) }).toMatchObject({ ok: true });
        }
      }
      if (rule.during) expect({ kind, from: rule.during, to: outcome, ok: canTransition(rule.during, outcome) }).toMatchObject({ ok: true });
    }
  });
});
