import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { exampleFromSchema } from "../../server/openapi/examples";
import { exampleForPattern } from "../../server/openapi/regex-example";
import { describeInput, portablePattern } from "../../server/openapi/schemas";

describe("examples for patterns", () => {
  const patterns = [
    "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
    "^[A-Za-z_][A-Za-z0-9_]{0,127}$",
    "^\\d{4}-(0[1-9]|1[0-2])$",
    "^[a-z0-9_]+(\\.[a-z0-9_]+)*(\\.\\*)?$",
    "^[^\\p{Cc}\\p{Cf}]*$",
    "^(?:sk|rk)_[a-zA-Z0-9]{8,}$",
    "^#[0-9a-f]{6}$",
    "^\\x41\\u0042c+$",
  ];
  for (const pattern of patterns) {
    test(pattern, () => {
      const example = exampleForPattern(pattern);
      expect(example).not.toBeNull();
      expect(new RegExp(pattern, "u").test(example!)).toBe(true);
    });
  }

  test("reaches a minimum length through open-ended repetition", () => {
    const example = exampleForPattern("^[\\x21-\\x7e]+$", { minLength: 8, maxLength: 128 })!;
    expect(example.length).toBeGreaterThanOrEqual(8);
    expect(/^[\x21-\x7e]+$/.test(example)).toBe(true);
  });

  test("gives null for what it cannot satisfy rather than a wrong value", () => {
    expect(exampleForPattern("^a{3}$", { maxLength: 2 })).toBeNull();
    expect(exampleForPattern("^(?=x)y$")).toBeNull();
  });
});

describe("patterns carry their flags into JSON Schema", () => {
  test("a case-insensitive regex is spelled out", () => {
    const pattern = portablePattern(/^[a-z0-9-]+x$/i);
    const re = new RegExp(pattern, "u");
    for (const ok of ["nanox", "NANOX", "Nano-1X", "aX"]) expect(re.test(ok)).toBe(true);
    expect(re.test("na_no")).toBe(false);
  });

  test("flags that change meaning are refused, so the document reports the procedure instead of misdescribing it", () => {
    expect(() => portablePattern(/^a.b$/s)).toThrow();
    const described = describeInput([v.object({ x: v.pipe(v.string(), v.regex(/^a$/m)) })]);
    expect(described.kind).toBe("unsupported");
  });
});

describe("examples for schemas", () => {
  test("satisfy required fields, bounds, enums without repeats, records that need entries, and cross-field checks are described", () => {
    const schema = v.object({
      email: v.pipe(v.string(), v.email()),
      scopes: v.pipe(
        v.array(v.picklist(["a", "b", "c"])),
        v.minLength(2),
        v.check((s) => new Set(s).size === s.length, "lists a scope twice"),
      ),
      limit: v.pipe(v.number(), v.integer(), v.minValue(20), v.maxValue(50)),
      env: v.pipe(
        v.record(v.pipe(v.string(), v.regex(/^[A-Z_]+$/)), v.string()),
        v.check((e) => Object.keys(e).length > 0, "at least one"),
      ),
      note: v.optional(v.string()),
      when: v.pipe(
        v.string(),
        v.isoTimestamp(),
        v.transform((s) => new Date(s)),
      ),
    });
    const described = describeInput([schema]);
    if (described.kind !== "schema") throw new Error(JSON.stringify(described));
    expect(JSON.stringify(described.schema)).toContain("lists a scope twice");
    const example = exampleFromSchema(described.schema) as Record<string, unknown>;
    expect(example).not.toHaveProperty("note");
    expect(example.limit).toBe(20);
    // The record's check is beyond JSON Schema; everything else validates.
    expect(v.safeParse(v.omit(schema, ["env"]), example).success).toBe(true);
  });

  test("an optional input is reported optional", () => {
    const described = describeInput([v.optional(v.object({ cursor: v.optional(v.string()) }), {})]);
    expect(described.kind === "schema" && described.optional).toBe(true);
  });
});
