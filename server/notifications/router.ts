import * as v from "valibot";
import { EVENT_TYPE_NAMES } from "../events/catalogue";
import { router, verifiedProcedure } from "../trpc";
import { listNotifications, markAllRead, markRead, unreadCount } from "./centre";
import { getPreferences, updatePreference } from "./preferences";

const read = verifiedProcedure.meta({ scope: "notifications:read" });
const write = verifiedProcedure.meta({ scope: "notifications:write" });

const uuid = v.pipe(v.string(), v.uuid("must be a UUID"));

const listInput = v.optional(
  v.strictObject({
    unreadOnly: v.optional(v.boolean()),
    cursor: v.optional(v.pipe(v.string(), v.maxLength(200))),
    limit: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(100))),
  }),
  {},
);

const markReadInput = v.strictObject({ ids: v.pipe(v.array(uuid), v.minLength(1, "name at least one notification"), v.maxLength(100, "at most 100 at once")) });

const preferenceInput = v.pipe(
  v.strictObject({
    type: v.picklist(EVENT_TYPE_NAMES, "must be an event type (see notifications.preferences.get)"),
    inApp: v.optional(v.boolean()),
    email: v.optional(v.boolean()),
    webhook: v.optional(v.boolean()),
  }),
  v.check((input) => input.inApp !== undefined || input.email !== undefined || input.webhook !== undefined, "set at least one of inApp, email, webhook"),
);

export const notificationsRouter = router({
  list: read.input(listInput).query(({ ctx, input }) => listNotifications(ctx.db, ctx.user.id, input)),
  unreadCount: read.query(({ ctx }) => unreadCount(ctx.db, ctx.user.id)),
  markRead: write.input(markReadInput).mutation(({ ctx, input }) => markRead(ctx.db, ctx.user.id, input.ids)),
  markAllRead: write.mutation(({ ctx }) => markAllRead(ctx.db, ctx.user.id)),
  preferences: router({
    get: read.query(({ ctx }) => getPreferences(ctx.db, ctx.user.id)),
    update: write
      .meta({ example: { type: "instance.state_changed", email: false } })
      .input(preferenceInput)
      .mutation(({ ctx, input }) => updatePreference(ctx.db, ctx.user.id, input)),
  }),
});
