import { exampleForPattern } from "./regex-example";

/** The parts of a JSON Schema (2020-12) the examples read. */
export type JsonSchemaNode = {
  type?: string | string[];
  const?: unknown;
  enum?: unknown[];
  examples?: unknown[];
  default?: unknown;
  format?: string;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  multipleOf?: number;
  properties?: Record<string, JsonSchemaNode>;
  required?: string[];
  additionalProperties?: JsonSchemaNode | boolean;
  propertyNames?: JsonSchemaNode;
  minProperties?: number;
  items?: JsonSchemaNode;
  prefixItems?: JsonSchemaNode[];
  minItems?: number;
  maxItems?: number;
  anyOf?: JsonSchemaNode[];
  oneOf?: JsonSchemaNode[];
  allOf?: JsonSchemaNode[];
  [key: string]: unknown;
};

/** Values by format, then by property name, chosen to read like real input. */
const BY_FORMAT: Record<string, string> = {
  email: "ada@example.com",
  uuid: "3f1c2a9e-8b7d-4c6e-9f01-2a3b4c5d6e7f",
  "date-time": "2026-01-01T00:00:00.000Z",
  date: "2026-01-01",
  time: "12:00:00",
  uri: "https://example.com/hook",
  ipv4: "192.0.2.10",
  ipv6: "2001:db8::10",
};
const BY_NAME: Array<[RegExp, string]> = [
  [/password$/i, "sunlit-orchard-kettle-42"],
  [/^email$/i, "ada@example.com"],
  [/^name$/i, "Ada Lovelace"],
  // The catalogue seeded on every installation.
  [/^planId$/, "nano"],
  [/^imageId$/, "busybox"],
  [/token$/i, "mfrggzdfmztwq2lknnwg23tp"],
  [/period$/i, "2026-01"],
  [/reason$/i, "requested by the account owner"],
  [/(^|[a-z])(url|Url)$/, "https://example.com/hook"],
];

/**
 * An example value satisfying a JSON Schema (as produced from the valibot
 * input schemas): required properties only, the smallest arrays, values inside
 * bounds and patterns. Returns undefined only for a schema it cannot satisfy.
 */
export function exampleFromSchema(schema: JsonSchemaNode, name = ""): unknown {
  if (schema.examples?.length) return schema.examples[0];
  if ("const" in schema) return schema.const;
  if (schema.enum?.length) return schema.enum[0];
  if (schema.allOf?.length) return mergeAll(schema.allOf.map((part) => exampleFromSchema(part, name)));
  const branches = schema.anyOf ?? schema.oneOf;
  if (branches?.length) {
    // A nullable value reads better as its non-null branch.
    const preferred = branches.find((b) => b.type !== "null") ?? branches[0]!;
    return exampleFromSchema(preferred, name);
  }
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  switch (type) {
    case "object":
      return objectExample(schema);
    case "array":
      return arrayExample(schema, name);
    case "string":
      return stringExample(schema, name);
    case "integer":
    case "number":
      return numberExample(schema, type === "integer");
    case "boolean":
      return true;
    case "null":
      return null;
    default:
      return schema.properties ? objectExample(schema) : {};
  }
}

function objectExample(schema: JsonSchemaNode): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of schema.required ?? []) {
    const property = schema.properties?.[key];
    if (property) out[key] = exampleFromSchema(property, key);
  }
  // A record that must hold entries gets one, with a key its key schema accepts.
  if ((schema.minProperties ?? 0) > Object.keys(out).length && typeof schema.additionalProperties === "object") {
    const key = schema.propertyNames ? String(exampleFromSchema({ type: "string", ...schema.propertyNames }, "key")) : "key";
    out[key] = exampleFromSchema(schema.additionalProperties, key);
  }
  return out;
}

function arrayExample(schema: JsonSchemaNode, name: string): unknown[] {
  if (schema.prefixItems) return schema.prefixItems.map((item) => exampleFromSchema(item, name));
  const count = Math.min(Math.max(schema.minItems ?? 0, 1), schema.maxItems ?? Infinity);
  const items = schema.items ?? {};
  // Enumerated items are taken in turn, so a list that must not repeat itself stays valid.
  if (items.enum?.length) return Array.from({ length: count }, (_, i) => items.enum![i % items.enum!.length]);
  return Array.from({ length: count }, () => exampleFromSchema(items, name));
}

function stringExample(schema: JsonSchemaNode, name: string): string {
  const min = schema.minLength ?? 0;
  const max = schema.maxLength ?? Infinity;
  const fits = (s: string) => s.length >= min && s.length <= max && (!schema.pattern || matches(schema.pattern, s));
  const candidates = [schema.format ? BY_FORMAT[schema.format] : undefined, ...BY_NAME.filter(([re]) => re.test(name)).map(([, value]) => value), "example"];
  for (const candidate of candidates) if (candidate !== undefined && fits(candidate)) return candidate;
  if (schema.pattern) {
    const generated = exampleForPattern(schema.pattern, { minLength: min, maxLength: max });
    if (generated !== null) return generated;
  }
  return "example".repeat(Math.ceil(Math.max(min, 1) / 7)).slice(0, Math.max(min, Math.min(7, max)));
}

function matches(pattern: string, s: string): boolean {
  try {
    return new RegExp(pattern, "u").test(s);
  } catch {
    return new RegExp(pattern).test(s);
  }
}

function numberExample(schema: JsonSchemaNode, integer: boolean): number {
  let low = schema.minimum ?? (schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum + (integer ? 1 : 0.5) : -Infinity);
  let high = schema.maximum ?? (schema.exclusiveMaximum !== undefined ? schema.exclusiveMaximum - (integer ? 1 : 0.5) : Infinity);
  if (integer) [low, high] = [Math.ceil(low), Math.floor(high)];
  // A round, typical value when the bounds allow it (a page of 10, a tail of 10 lines).
  let value = Math.min(Math.max(10, low), high);
  if (schema.multipleOf) value = Math.ceil(value / schema.multipleOf) * schema.multipleOf;
  return value;
}

function mergeAll(parts: unknown[]): unknown {
  if (parts.every((p) => typeof p === "object" && p !== null && !Array.isArray(p))) return Object.assign({}, ...parts);
  return parts[0];
}
