import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { sql } from "drizzle-orm";
import type { ExtractTablesWithRelations } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT, PgTransaction } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { listenPglite, listenPostgres, type ListenHandlers, type Listener } from "./listen";
import * as schema from "./schema";

export { schema };
export type Schema = typeof schema;

/** The one database type services accept; a transaction is assignable to it. */
export type Database = PgDatabase<PgQueryResultHKT, Schema, ExtractTablesWithRelations<Schema>>;
export type Transaction = PgTransaction<PgQueryResultHKT, Schema, ExtractTablesWithRelations<Schema>>;

export type DatabaseHandle = {
  db: Database;
  driver: "postgres" | "pglite";
  /** Runs `select 1`; rejects when the database cannot answer. */
  ping(): Promise<void>;
  /** Subscribes to NOTIFY on `channel` (on PostgreSQL, over one more connection outside the pool). */
  listen(channel: string, handlers: ListenHandlers): Listener;
  close(): Promise<void>;
};

export type DatabaseOptions = { url?: string | undefined; dataDir: string; poolMax?: number };

export async function openDatabase(opts: DatabaseOptions): Promise<DatabaseHandle> {
  return opts.url ? openPostgres(opts.url, opts.poolMax ?? 10) : openPglite(opts.dataDir);
}

function openPostgres(url: string, poolMax: number): DatabaseHandle {
  const client = postgres(url, {
    max: poolMax,
    // Guards against connections that hang forever (stack-pitfalls P-2, L-6).
    idle_timeout: 30,
    max_lifetime: 60 * 30,
    connect_timeout: 10,
    // While the server is unreachable, each waiting query gets its own connection attempt at once and
    // fails (503) instead of queueing behind a growing reconnect delay (up to 20 s by default).
    backoff: () => 0,
    connection: { statement_timeout: 30_000, idle_in_transaction_session_timeout: 60_000, application_name: "sahary" },
    onnotice: () => {},
  });
  const db = drizzlePostgres(preparingAll(client), { schema }) as unknown as Database;
  return {
    db,
    driver: "postgres",
    ping: async () => {
      await client`select 1`;
    },
    listen: (channel, handlers) => listenPostgres(url, channel, handlers),
    close: () => client.end({ timeout: 5 }),
  };
}

/**
 * Drizzle sends every query it was not asked to `.prepare()` with postgres.js's
 * `prepare: false`: an unnamed statement, described first to learn its
 * parameter types — two round trips, and PostgreSQL parses and plans it on
 * every call. This view of the client (what Drizzle uses: `unsafe`, and
 * `begin`/`savepoint` for the connections of a transaction) asks for named
 * statements instead, which postgres.js prepares once per connection and
 * reuses by query text. Distinct query texts are bounded by the code (lists
 * of different lengths each count once), and connections are recycled by
 * `max_lifetime`; postgres.js re-prepares a statement a schema change made stale.
 */
function preparingAll(sql: postgres.Sql): postgres.Sql {
  return new Proxy(sql, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (property === "unsafe") {
        return (query: string, parameters?: unknown[], options?: object) => target.unsafe(query, parameters as never, { ...options, prepare: true });
      }
      if (property === "begin" || property === "savepoint") {
        return (...args: unknown[]) => {
          const body = args.pop() as (tx: postgres.Sql) => unknown;
          return (value as (...a: unknown[]) => unknown).call(target, ...args, (tx: postgres.Sql) => body(preparingAll(tx)));
        };
      }
      return value;
    },
  });
}

async function openPglite(dataDir: string): Promise<DatabaseHandle> {
  const dir = resolve(dataDir, "pglite");
  mkdirSync(dir, { recursive: true });
  const release = lockDataDir(dir);
  try {
    const client = await PGlite.create(dir);
    const db = drizzlePglite(client, { schema }) as unknown as Database;
    return {
      db,
      driver: "pglite",
      ping: async () => {
        await db.execute(sql`select 1`);
      },
      listen: (channel, handlers) => listenPglite(client, channel, handlers),
      close: async () => {
        await client.close();
        release();
      },
    };
  } catch (error) {
    release();
    throw error;
  }
}

/**
 * PGlite serves exactly one process. A second process on the same data folder
 * would corrupt it, so it fails at once with a message that says what to do.
 */
function lockDataDir(dir: string): () => void {
  const lockFile = join(dir, "..", "sahary.pid");
  try {
    writeFileSync(lockFile, String(process.pid), { flag: "wx" });
  } catch {
    const holder = Number(readFileSync(lockFile, "utf8"));
    if (holder && holder !== process.pid && isAlive(holder)) {
      throw new Error(`The embedded database in ${dir} is in use by process ${holder}. Run one process per data folder, or set DATABASE_URL to share PostgreSQL between processes.`);
    }
    writeFileSync(lockFile, String(process.pid));
  }
  return () => rmSync(lockFile, { force: true });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
