import * as v from "valibot";
import { instanceState, instancePriority, powerLevel } from "../../db/schema";

/**
 * The closed list of customer-facing event types, each with the schema of its
 * payload (`data`) and that schema's version. This is a published contract:
 * webhook receivers parse these payloads. A compatible change (a new optional
 * field) keeps the version; anything else is a new version, and `recordEvent`
 * always writes the current one.
 */

const uuid = v.pipe(v.string(), v.uuid());
const isoTime = v.pipe(v.string(), v.isoTimestamp());
const minor = v.pipe(v.number(), v.integer());
const currency = v.pipe(v.string(), v.regex(/^[A-Z]{3}$/));
const state = v.picklist(instanceState.enumValues);
const priority = v.picklist(instancePriority.enumValues);
const level = v.picklist(powerLevel.enumValues);
const instance = { instanceId: uuid, name: v.string() };
const invoice = { invoiceId: uuid, invoiceNumber: v.string(), currency };

export const SECURITY_KINDS = ["password_changed", "password_reset", "api_key_created", "api_key_revoked", "webhook_endpoint_created"] as const;
export type SecurityKind = (typeof SECURITY_KINDS)[number];

type Definition = { version: number; description: string; data: v.GenericSchema };

export const EVENT_TYPES = {
  "instance.state_changed": {
    version: 1,
    description: "An instance reached a settled state (running, paused, stopped, error, deleted).",
    data: v.object({ ...instance, from: v.nullable(state), to: state, reason: v.string() }),
  },
  "instance.failed": {
    version: 1,
    description: "An instance went to the error state: an action failed or its container died.",
    data: v.object({ ...instance, from: state, reason: v.string() }),
  },
  "instance.oom_killed": {
    version: 1,
    description: "An instance's container was killed for exceeding its memory limit.",
    data: v.object({ ...instance, memoryMb: v.pipe(v.number(), v.integer()), reason: v.string() }),
  },
  "power.notice": {
    version: 1,
    description: "The platform is about to pause or stop an instance to save power.",
    data: v.object({ ...instance, priority, level, action: v.picklist(["pause", "stop"]), expectedAt: isoTime, episodeId: v.string() }),
  },
  "power.paused": {
    version: 1,
    description: "An instance was paused or stopped to save power.",
    data: v.object({ ...instance, priority, state: v.picklist(["paused", "stopped"]) }),
  },
  "power.resumed": {
    version: 1,
    description: "An instance paused or stopped for power runs again.",
    data: v.object({ ...instance, priority }),
  },
  "invoice.issued": {
    version: 1,
    description: "A monthly invoice was issued.",
    data: v.object({ ...invoice, period: v.string(), status: v.picklist(["open", "paid", "carried_forward"]), totalMinor: minor, amountDueMinor: minor, issuedAt: isoTime }),
  },
  "invoice.overdue": {
    version: 1,
    description: "A reminder that an invoice is still unpaid (dunning).",
    data: v.object({
      ...invoice,
      amountDueMinor: minor,
      issuedAt: isoTime,
      daysOverdue: v.pipe(v.number(), v.integer()),
      reminder: v.pipe(v.number(), v.integer(), v.minValue(1)),
      /** When new instances start being refused if it stays unpaid; null when the platform never refuses. */
      blocksNewInstancesAt: v.nullable(isoTime),
    }),
  },
  "payment.succeeded": {
    version: 1,
    description: "A payment went through (the receipt).",
    data: v.object({ paymentId: uuid, ...invoice, amountMinor: minor }),
  },
  "payment.failed": {
    version: 1,
    description: "A payment attempt failed.",
    data: v.object({ paymentId: uuid, ...invoice, amountMinor: minor, failureMessage: v.nullable(v.string()) }),
  },
  "payment.refunded": {
    version: 1,
    description: "A payment was refunded, in part or in full.",
    data: v.object({ paymentId: uuid, ...invoice, amountMinor: minor, amountRefundedMinor: minor, fullyRefunded: v.boolean() }),
  },
  "account.security": {
    version: 1,
    description: "Something changed who can reach the account or its data: password changed or reset, API key created or revoked, webhook endpoint created.",
    data: v.object({
      kind: v.picklist(SECURITY_KINDS),
      apiKeyId: v.optional(uuid),
      apiKeyName: v.optional(v.string()),
      endpointId: v.optional(uuid),
      endpointUrl: v.optional(v.string()),
      ip: v.nullable(v.string()),
      userAgent: v.nullable(v.string()),
    }),
  },
  "webhook.endpoint_disabled": {
    version: 1,
    description: "A webhook endpoint was disabled after failing for too long, or because it answered 410 Gone.",
    data: v.object({ endpointId: uuid, url: v.string(), reason: v.string() }),
  },
} as const satisfies Record<string, Definition>;

export type EventType = keyof typeof EVENT_TYPES;
export const EVENT_TYPE_NAMES = Object.keys(EVENT_TYPES) as EventType[];
export type EventData<T extends EventType> = v.InferOutput<(typeof EVENT_TYPES)[T]["data"]>;

export function isEventType(type: string): type is EventType {
  return Object.hasOwn(EVENT_TYPES, type);
}
