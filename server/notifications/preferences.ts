import { and, eq } from "drizzle-orm";
import type { Database } from "../../db/client";
import { notificationPreferences } from "../../db/schema";
import { AppError } from "../errors";
import { EVENT_TYPE_NAMES, EVENT_TYPES, type EventType } from "../events/catalogue";
import { CHANNEL_POLICY, CHANNELS, effectiveChannels, type Channel, type ChannelSet } from "./policy";

/** Every event type with the channels it reaches for this customer, which of them they may not switch off, and what they are. */
export async function getPreferences(db: Database, ownerId: string) {
  const stored = await db.select().from(notificationPreferences).where(eq(notificationPreferences.userId, ownerId));
  const byType = new Map(stored.map((row) => [row.eventType, { inApp: row.inApp, email: row.email, webhook: row.webhook }]));
  return {
    items: EVENT_TYPE_NAMES.map((type) => ({
      type,
      description: EVENT_TYPES[type].description,
      ...effectiveChannels(type, byType.get(type)),
      mandatory: [...(CHANNEL_POLICY[type].mandatory ?? [])],
      customised: byType.has(type),
    })),
  };
}

/**
 * Sets some channels of one event type; the others keep their current value.
 * Switching off a mandatory channel (security notices by mail or in the
 * console) is refused with NOTIFICATION_MANDATORY.
 */
export async function updatePreference(db: Database, ownerId: string, input: { type: EventType } & Partial<ChannelSet>) {
  const mandatory = CHANNEL_POLICY[input.type].mandatory ?? [];
  const refused = CHANNELS.filter((channel) => input[channel] === false && mandatory.includes(channel));
  if (refused.length) {
    throw new AppError("NOTIFICATION_MANDATORY", `${input.type} notices are always sent by ${refused.map(channelName).join(" and ")}`, {
      details: { type: input.type, channels: refused },
    });
  }
  return db.transaction(async (tx) => {
    const [row] = await tx
      .select()
      .from(notificationPreferences)
      .where(and(eq(notificationPreferences.userId, ownerId), eq(notificationPreferences.eventType, input.type)))
      .for("update");
    const current = effectiveChannels(input.type, row ? { inApp: row.inApp, email: row.email, webhook: row.webhook } : undefined);
    const next: ChannelSet = { inApp: input.inApp ?? current.inApp, email: input.email ?? current.email, webhook: input.webhook ?? current.webhook };
    await tx
      .insert(notificationPreferences)
      .values({ userId: ownerId, eventType: input.type, ...next })
      .onConflictDoUpdate({ target: [notificationPreferences.userId, notificationPreferences.eventType], set: { ...next, updatedAt: new Date() } });
    return { type: input.type, ...effectiveChannels(input.type, next), mandatory: [...mandatory], customised: true };
  });
}

function channelName(channel: Channel): string {
  return channel === "inApp" ? "in-app notification" : channel;
}
