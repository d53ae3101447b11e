/**
 * A PostgreSQL array literal for one bound parameter (`${pgArray(xs)}::uuid[]`),
 * so a batch of any size is a handful of parameters fed to `unnest`. It reads
 * the same on postgres.js and PGlite, unlike driver-specific array binding.
 */
export function pgArray(values: ReadonlyArray<string | number | bigint | Date | null>): string {
  return `{${values.map(element).join(",")}}`;
}

function element(value: string | number | bigint | Date | null): string {
  if (value === null) return "NULL";
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new RangeError(`not a finite number: ${value}`);
    return Number.isInteger(value) ? BigInt(value).toString() : String(value);
  }
  if (typeof value === "bigint") return value.toString();
  const text = value instanceof Date ? value.toISOString() : value;
  return `"${text.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}
