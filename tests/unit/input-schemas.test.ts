import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { appRouter } from "../../server/router";

/**
 * Rules every procedure's input schema must keep, checked over the whole
 * router as it is, so a procedure added later without them fails here:
 * - every object is strict (an unknown key is an error that names it, never
 *   silently dropped);
 * - a record refuses an array (valibot's `record` alone accepts `[]`).
 */

type Node = { kind?: string; type?: string; [key: string]: unknown };

const procedures = Object.entries((appRouter._def as unknown as { procedures: Record<string, { _def: { inputs: unknown[] } }> }).procedures);

function isSchema(value: unknown): value is Node & v.GenericSchema {
  return typeof value === "object" && value !== null && (value as Node).kind === "schema";
}

/** Every problem found under `node`, as "path: problem". */
function problems(node: unknown, path: string, guardedRecord = false): string[] {
  if (!isSchema(node)) return [];
  const found: string[] = [];
  if (node.type === "object" || node.type === "loose_object" || node.type === "object_with_rest") found.push(`${path}: ${node.type} (use v.strictObject)`);
  if (node.type === "loose_tuple" || node.type === "tuple_with_rest") found.push(`${path}: ${node.type} (use v.strictTuple)`);

  const pipe = Array.isArray(node.pipe) ? (node.pipe as unknown[]) : [];
  const recordInside = node.type === "record" || pipe.some((item) => isSchema(item) && item.type === "record");
  if (recordInside && !guardedRecord && v.safeParse(node, []).success) found.push(`${path}: a record that accepts an array (use strictRecord from server/input.ts)`);
  const guarded = guardedRecord || recordInside;

  for (const [key, child] of Object.entries((node.entries as Record<string, unknown>) ?? {})) found.push(...problems(child, `${path}.${key}`));
  if (node.type !== "record") for (const item of pipe) found.push(...problems(item, path, guarded));
  for (const key of ["wrapped", "item", "key", "value", "rest"]) found.push(...problems(node[key], `${path}[${key}]`, key === "key" || key === "value" ? false : guarded));
  for (const key of ["options", "items"]) {
    const list = node[key];
    if (!Array.isArray(list)) continue;
    for (const [i, child] of list.entries()) found.push(...problems(child, `${path}[${key}.${i}]`));
  }
  return found;
}

describe("every procedure's input schema", () => {
  test("the router has procedures to check", () => {
    expect(procedures.length).toBeGreaterThan(40);
  });

  test("objects are strict and records refuse arrays, all the way down", () => {
    const found = [...new Set(procedures.flatMap(([path, procedure]) => procedure._def.inputs.flatMap((input) => problems(input, path))))];
    expect(found).toEqual([]);
  });

  test("an unknown key next to valid input is refused, naming the key", () => {
    const withInput = procedures.filter(([, p]) => p._def.inputs.length > 0);
    for (const [path, procedure] of withInput) {
      const schema = procedure._def.inputs[0] as v.GenericSchema;
      // Only schemas that take an object at the top can carry a stray key.
      const base = v.safeParse(schema, {}).success ? {} : null;
      if (!base) continue;
      const result = v.safeParse(schema, { ...base, surelyNotAField: 1 });
      expect({ path, success: result.success }).toEqual({ path, success: false });
      expect(result.issues?.map((issue) => v.getDotPath(issue))).toContain("surelyNotAField");
    }
  });
});
