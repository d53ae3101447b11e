import type { EventData, EventType } from "../events/catalogue";

export const CHANNELS = ["inApp", "email", "webhook"] as const;
export type Channel = (typeof CHANNELS)[number];
export type ChannelSet = Record<Channel, boolean>;

type Policy = {
  /** What a customer gets until they change it. */
  defaults: ChannelSet;
  /** Channels that are always delivered, whatever the preference says. */
  mandatory?: readonly Channel[];
};

const all: ChannelSet = { inApp: true, email: true, webhook: true };
const quiet: ChannelSet = { inApp: true, email: false, webhook: true };

/**
 * Who hears about what by default. Mail goes out for what needs the
 * customer's attention (failures, money, power notices, security); routine
 * state changes go to webhooks only (each action makes several, and the
 * console shows the instance's state anyway). Security notices and the notice
 * that an endpoint was disabled cannot be switched off in the console or by
 * mail: they are how an account owner learns that something is wrong.
 */
export const CHANNEL_POLICY: Record<EventType, Policy> = {
  "instance.state_changed": { defaults: { inApp: false, email: false, webhook: true } },
  "instance.failed": { defaults: all },
  "instance.oom_killed": { defaults: all },
  "power.notice": { defaults: all },
  "power.paused": { defaults: quiet },
  "power.resumed": { defaults: quiet },
  "invoice.issued": { defaults: all },
  "invoice.overdue": { defaults: all },
  "payment.succeeded": { defaults: all },
  "payment.failed": { defaults: all },
  "payment.refunded": { defaults: all },
  "account.security": { defaults: all, mandatory: ["inApp", "email"] },
  "webhook.endpoint_disabled": { defaults: all, mandatory: ["inApp", "email"] },
};

/** The channels an event reaches, from the stored preference (if any) and the type's policy. */
export function effectiveChannels(type: EventType, stored: ChannelSet | undefined): ChannelSet {
  const policy = CHANNEL_POLICY[type];
  const chosen = stored ?? policy.defaults;
  const mandatory = policy.mandatory ?? [];
  return { inApp: chosen.inApp || mandatory.includes("inApp"), email: chosen.email || mandatory.includes("email"), webhook: chosen.webhook || mandatory.includes("webhook") };
}

/**
 * Events another part of the platform already mails itself, in the
 * transaction that makes the change: the auth flows send "your password was
 * changed" before the sessions end. A second mail from here would repeat it.
 */
export function mailedElsewhere<T extends EventType>(type: T, data: EventData<T>): boolean {
  if (type !== "account.security") return false;
  const kind = (data as EventData<"account.security">).kind;
  return kind === "password_changed" || kind === "password_reset";
}
