import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import type { PgliteDatabase } from "drizzle-orm/pglite";
import postgres from "postgres";
import type { DatabaseHandle } from "./client";

export const migrationsFolder = `${import.meta.dir}/migrations`;

// Any fixed 64-bit key works; it only has to be the same in every process.
const MIGRATION_LOCK_KEY = 72_616_861_727_931n;

/**
 * Applies pending migrations. On PostgreSQL, several processes may start at
 * once: a session-level advisory lock on one dedicated connection makes them
 * take turns, and the later ones find nothing left to do.
 */
export async function migrateDatabase(handle: DatabaseHandle, url?: string): Promise<void> {
  if (handle.driver === "pglite") {
    await migratePglite(handle.db as unknown as PgliteDatabase, { migrationsFolder });
    return;
  }
  if (!url) throw new Error("migrateDatabase needs the PostgreSQL URL");
  const client = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    await client`select pg_advisory_lock(${MIGRATION_LOCK_KEY.toString()}::bigint)`;
    try {
      await migratePostgres(drizzlePostgres(client), { migrationsFolder });
    } finally {
      await client`select pg_advisory_unlock(${MIGRATION_LOCK_KEY.toString()}::bigint)`;
    }
  } finally {
    await client.end({ timeout: 5 });
  }
}
