import * as v from "valibot";

/**
 * What every procedure's input must satisfy, whoever wrote its schema. Two
 * rules hold centrally (tRPC middleware and error formatter in trpc.ts):
 * no string or key anywhere in the raw input carries a NUL byte (PostgreSQL
 * rejects it in text, which surfaced as a 500), and an answer lists at most
 * MAX_REPORTED_ISSUES validation issues. Strict objects are the schemas' own
 * job; tests/unit/input-schemas.test.ts checks every procedure for them.
 */

/** Enough to fix a request; 80,000 issues once made a 6 MB answer. */
export const MAX_REPORTED_ISSUES = 20;

/** How deep the NUL check walks; deeper input is refused outright (no schema nests this far). */
const MAX_DEPTH = 32;

export type InputProblem = { path: string; message: string };

/**
 * The first place in `raw` (parsed JSON, or form data) that no procedure
 * may receive: a NUL byte in a string or a key, or nesting beyond MAX_DEPTH.
 * Iterative, so a deeply nested body cannot exhaust the stack.
 */
export function rawInputProblem(raw: unknown): InputProblem | null {
  const stack: Array<{ value: unknown; path: string[] }> = [{ value: raw, path: [] }];
  while (stack.length) {
    const { value, path } = stack.pop()!;
    if (typeof value === "string") {
      if (value.includes("\0")) return { path: path.join("."), message: "must not contain a NUL character" };
      continue;
    }
    if (typeof value !== "object" || value === null) continue;
    if (path.length >= MAX_DEPTH) return { path: path.join("."), message: `is nested deeper than ${MAX_DEPTH} levels` };
    const entries: Iterable<[string, unknown]> = value instanceof FormData ? value.entries() : Object.entries(value);
    for (const [key, child] of entries) {
      if (key.includes("\0")) return { path: [...path, key.replaceAll("\0", "\\0")].join("."), message: "a key must not contain a NUL character" };
      stack.push({ value: child, path: [...path, key] });
    }
  }
  return null;
}

/**
 * A record (`{ NAME: value }`) that refuses arrays: valibot's `record` alone
 * accepts `[]` as an empty record.
 */
export function strictRecord<K extends v.GenericSchema<string, string | number | symbol>, V extends v.GenericSchema>(key: K, value: V, message = "must be an object") {
  const record = v.record(key, value);
  // The guard says what it guards, so the API reference can describe the record (server/openapi/schemas.ts).
  const guard = Object.assign(
    v.custom<Record<string, unknown>>((input) => typeof input === "object" && input !== null && !Array.isArray(input), message),
    { describedBy: record },
  );
  return v.pipe(guard, record);
}
