import { pgTable, text, uniqueIndex, uuid } from "drizzle-orm/pg-core";
import { users } from "./auth";
import { createdAt, id } from "./columns";

/**
 * Registries (and optionally a repository prefix within one) whose images
 * customers may run, added by admins on top of REGISTRY_ALLOWLIST. `pattern`
 * is normalised: `host[:port]` or `host[:port]/path`.
 */
export const allowedRegistries = pgTable(
  "allowed_registries",
  {
    id: id(),
    pattern: text("pattern").notNull(),
    note: text("note").notNull(),
    createdBy: uuid("created_by").references(() => users.id),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex("allowed_registries_pattern_key").on(t.pattern)],
);
