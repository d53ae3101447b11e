import { followUpSuspension } from "../server/admin/suspension";
import { defineProcessor } from "./base";

/** Admin follow-ups: the stops a suspension could not make at once. */
export const adminProcessor = defineProcessor({
  queue: "admin",
  handlers: {
    enforceSuspension: ({ userId }, ctx) => followUpSuspension(ctx, userId),
  },
});
