import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { EVENT_TYPE_NAMES, EVENT_TYPES, isEventType } from "../../server/events/catalogue";
import { describeEvent } from "../../server/notifications/messages";
import { CHANNEL_POLICY } from "../../server/notifications/policy";

const page = readFileSync(join(import.meta.dir, "../../docs/notifications.md"), "utf8");

/** The payload examples docs/notifications.md publishes, one JSON object per line. */
function documentedExamples(): Array<{ type: string; version: number; data: unknown }> {
  const start = page.indexOf("Payload examples");
  const block = /```json\n([\s\S]*?)```/.exec(page.slice(start))![1]!;
  return block
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line));
}

describe("the event catalogue", () => {
  test("every published example matches its type's current schema, and every type has one", () => {
    const examples = documentedExamples();
    expect(examples.map((e) => e.type).sort()).toEqual([...EVENT_TYPE_NAMES].sort());
    for (const example of examples) {
      expect(isEventType(example.type)).toBe(true);
      if (!isEventType(example.type)) continue;
      const definition = EVENT_TYPES[example.type];
      expect({ type: example.type, version: example.version }).toEqual({ type: example.type, version: definition.version });
      const parsed = v.safeParse(definition.data as v.GenericSchema, example.data);
      expect({ type: example.type, issues: parsed.issues?.map((i) => i.message) ?? [] }).toEqual({ type: example.type, issues: [] });
      // Each has a channel policy and a message for the notification centre and its mail.
      expect(CHANNEL_POLICY[example.type]).toBeDefined();
      expect(describeEvent(example.type, parsed.output as never).title.length).toBeGreaterThan(0);
    }
  });

  test("the event table in docs/notifications.md lists every type", () => {
    for (const type of EVENT_TYPE_NAMES) expect(page).toContain(`| \`${type}\` |`);
  });

  test("payload schemas refuse malformed data field by field", () => {
    const schema = EVENT_TYPES["invoice.issued"].data as v.GenericSchema;
    expect(
      v.safeParse(schema, { invoiceId: "not-a-uuid", invoiceNumber: "INV-1", currency: "usd", period: "2026-10", status: "open", totalMinor: 1.5, amountDueMinor: 0, issuedAt: "now" }).issues?.length,
    ).toBeGreaterThanOrEqual(4);
  });
});
