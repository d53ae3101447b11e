import { index, pgEnum, pgTable, text, uniqueIndex, uuid } from "drizzle-orm/pg-core";
import { createdAt, id, timestamptz, updatedAt } from "./columns";

export const userRole = pgEnum("user_role", ["customer", "operator", "admin"]);
export const userStatus = pgEnum("user_status", ["unverified", "active", "suspended"]);

export const users = pgTable(
  "users",
  {
    id: id(),
    // Stored normalised (trimmed, lower-cased) so uniqueness is case-insensitive.
    email: text("email").notNull(),
    name: text("name").notNull(),
    passwordHash: text("password_hash").notNull(),
    role: userRole("role").notNull().default("customer"),
    status: userStatus("status").notNull().default("unverified"),
    emailVerifiedAt: timestamptz("email_verified_at"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  // created_at, id: the admin list's newest-first keyset order.
  (t) => [uniqueIndex("users_email_key").on(t.email), index("users_created_idx").on(t.createdAt, t.id)],
);

/**
 * Lucia sessions. `id` is the SHA-256 of the token the client holds, so a read of
 * this table does not yield usable credentials.
 */
export const sessions = pgTable(
  "sessions",
  {
    id: text("id").primaryKey(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    expiresAt: timestamptz("expires_at").notNull(),
    absoluteExpiresAt: timestamptz("absolute_expires_at").notNull(),
    createdAt: createdAt(),
    ip: text("ip"),
    userAgent: text("user_agent"),
  },
  (t) => [index("sessions_user_id_idx").on(t.userId)],
);

export const emailTokenPurpose = pgEnum("email_token_purpose", ["verify_email", "reset_password"]);

/**
 * Single-use tokens sent by email (verification, password reset). Only an
 * HMAC of the token keyed by APP_SECRET is stored; `used_at` makes it single-use.
 */
export const emailTokens = pgTable(
  "email_tokens",
  {
    id: id(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    purpose: emailTokenPurpose("purpose").notNull(),
    tokenHash: text("token_hash").notNull(),
    expiresAt: timestamptz("expires_at").notNull(),
    usedAt: timestamptz("used_at"),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex("email_tokens_token_hash_key").on(t.tokenHash), index("email_tokens_user_idx").on(t.userId, t.purpose)],
);

/**
 * API keys: the key is shown once; the table holds an HMAC of it (APP_SECRET)
 * and its first characters so a user can tell keys apart.
 */
export const apiKeys = pgTable(
  "api_keys",
  {
    id: id(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    start: text("start").notNull(),
    keyHash: text("key_hash").notNull(),
    scopes: text("scopes").array().notNull(),
    createdAt: createdAt(),
    lastUsedAt: timestamptz("last_used_at"),
    revokedAt: timestamptz("revoked_at"),
  },
  (t) => [uniqueIndex("api_keys_key_hash_key").on(t.keyHash), index("api_keys_user_idx").on(t.userId, t.createdAt)],
);
