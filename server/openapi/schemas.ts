import { toJsonSchema, type ConversionConfig, type JsonSchema } from "@valibot/to-json-schema";
import type * as v from "valibot";
import type { JsonSchemaNode } from "./examples";

/** Actions that reshape a value without narrowing what is accepted (trimming, case): nothing to describe. */
const RESHAPING_ACTIONS = new Set(["trim", "trim_start", "trim_end", "to_lower_case", "to_upper_case", "normalize", "brand", "readonly", "flavor"]);
/** Rules JSON Schema cannot express (cross-field checks, uniqueness): their messages join the description. */
const CHECK_ACTIONS = new Set(["check", "raw_check", "check_items", "partial_check"]);

const CONFIG: ConversionConfig = {
  target: "draft-2020-12",
  // Describe what a caller sends: conversion stops where a pipe transforms the value.
  typeMode: "input",
  errorMode: "throw",
  // strictRecord (server/input.ts): a guard refusing arrays, described by the record it guards.
  overrideSchema({ valibotSchema }) {
    const record = (valibotSchema as { describedBy?: v.GenericSchema }).describedBy;
    if (!record) return undefined;
    const { $schema: _, ...json } = toJsonSchema(record, CONFIG) as Record<string, JsonSchema>;
    return json as JsonSchema;
  },
  overrideAction({ valibotAction, jsonSchema }) {
    if (RESHAPING_ACTIONS.has(valibotAction.type)) return jsonSchema;
    if (valibotAction.type === "regex") return { ...jsonSchema, pattern: portablePattern((valibotAction as unknown as { requirement: RegExp }).requirement) };
    if (CHECK_ACTIONS.has(valibotAction.type)) {
      const message = (valibotAction as { message?: unknown }).message;
      const rule = typeof message === "string" ? message : "is checked further by the server";
      return { ...jsonSchema, description: [jsonSchema.description, `Also: ${rule}.`].filter(Boolean).join(" ") };
    }
    return undefined;
  },
};

/**
 * A JSON Schema pattern carries no flags. `u` is how JSON Schema validators
 * read patterns anyway; `i` is spelled out in the pattern (`[a-z]` becomes
 * `[a-zA-Z]`, `x` becomes `[xX]`). Other flags change meaning and are refused.
 */
export function portablePattern(re: RegExp): string {
  const flags = re.flags.replace(/[ugdy]/g, "");
  if (flags === "") return re.source;
  if (flags !== "i") throw new Error(`the regex flags "${re.flags}" cannot be expressed in JSON Schema`);
  return caseInsensitive(re.source);
}

function caseInsensitive(source: string): string {
  let out = "";
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    if (c === "\\") {
      out += source.slice(i, i + 2);
      i++;
      continue;
    }
    if (c === "[" && !inClass) inClass = true;
    else if (c === "]" && inClass) inClass = false;
    const other = c.toLowerCase() === c ? c.toUpperCase() : c.toLowerCase();
    if (other === c) {
      out += c;
    } else if (!inClass) {
      out += `[${c}${other}]`;
    } else if (source[i + 1] === "-" && /[a-zA-Z]/.test(source[i + 2] ?? "")) {
      const end = source[i + 2]!;
      const endOther = end.toLowerCase() === end ? end.toUpperCase() : end.toLowerCase();
      out += `${c}-${end}${other}-${endOther}`;
      i += 2;
    } else {
      out += c + other;
    }
  }
  return out;
}

export type ProcedureInput = { kind: "none" } | { kind: "schema"; schema: JsonSchemaNode; optional: boolean; valibot: v.GenericSchema[] } | { kind: "unsupported"; problem: string };

function isValibotSchema(value: unknown): value is v.GenericSchema {
  return typeof value === "object" && value !== null && (value as { kind?: unknown }).kind === "schema" && "~standard" in value;
}

const OPTIONAL_WRAPPERS = new Set(["optional", "nullish", "undefinedable", "exact_optional"]);

/**
 * The JSON Schema of a procedure's input, converted from its own valibot
 * schemas (several `.input()` calls merge, as tRPC merges them).
 */
export function describeInput(inputs: readonly unknown[]): ProcedureInput {
  if (inputs.length === 0) return { kind: "none" };
  const schemas: v.GenericSchema[] = [];
  for (const input of inputs) {
    if (!isValibotSchema(input)) return { kind: "unsupported", problem: "input parser is not a valibot schema" };
    schemas.push(input);
  }
  try {
    const converted = schemas.map((schema) => {
      const { $schema: _, ...json } = toJsonSchema(schema, CONFIG) as Record<string, JsonSchema>;
      return json as JsonSchemaNode;
    });
    const schema: JsonSchemaNode = converted.length === 1 ? converted[0]! : { allOf: converted };
    return { kind: "schema", schema, optional: schemas.every((s) => OPTIONAL_WRAPPERS.has(s.type)), valibot: schemas };
  } catch (error) {
    return { kind: "unsupported", problem: (error as Error).message };
  }
}
