import type { InvalidationChannel } from "../../db/invalidation";

/**
 * The instance lists customers poll (`compute.instances.list`), kept in this
 * process per owner and page, so a poll costs no database round trip.
 *
 * Correctness rests on invalidation, as for credentials (server/auth/cache.ts;
 * the mechanics are db/invalidation.ts's): statement-level triggers on
 * `instances` announce `i:<owner id>` on the changes channel when a change to
 * an owner's instances commits, whoever made it (the API, a lifecycle worker,
 * the reconciler, psql), and `i:*` when a host's status changes or a
 * statement touched more than 100 owners (db/migrations,
 * "instance_list_invalidation"). Lists are answered from memory only while
 * the channel is subscribed; a list read while a message arrived is used but
 * not kept. A change made through the API is visible in every process's next
 * answer: mutations wait for the channel's `settle()` before answering
 * (server/app.ts). A change made elsewhere (a worker moving an instance to
 * `running`) is visible as soon as its message arrives, a millisecond or so
 * after its commit, which no client can tell from the commit being that late.
 *
 * Entries are shared between requests and must not be mutated. The TTL only
 * bounds the damage of a message lost on a connection that looked alive.
 */

export type InstanceListCacheOptions = { ttlMs: number; maxOwners: number };
export type InstanceListCache = ReturnType<typeof createInstanceListCache>;

type Owner = { at: number; pages: Map<string, unknown> };
/** Pages kept per owner (first pages, filters, cursors), oldest dropped first. */
const PAGES_PER_OWNER = 4;

export function createInstanceListCache(changes: InvalidationChannel | null, opts: InstanceListCacheOptions) {
  const enabled = changes !== null && opts.ttlMs > 0 && opts.maxOwners > 0;
  const owners = new Map<string, Owner>();

  if (enabled) {
    changes.subscribe({
      reset: () => owners.clear(),
      message(payload) {
        if (!payload.startsWith("i:")) return;
        if (payload === "i:*") owners.clear();
        else owners.delete(payload.slice(2));
      },
    });
  }

  return {
    /** The page as last read, if it may still be served. */
    get<T>(ownerId: string, page: string, now: number): T | undefined {
      if (!enabled || !changes.ready()) return undefined;
      const owner = owners.get(ownerId);
      if (!owner) return undefined;
      if (now - owner.at >= opts.ttlMs) {
        owners.delete(ownerId);
        return undefined;
      }
      return owner.pages.get(page) as T | undefined;
    },

    /** Call before reading what you will `put`. */
    ticket(): number | null {
      return enabled ? changes.ticket() : null;
    },

    /** Keeps the page if nothing changed since `ticket` was taken. */
    put(ticket: number | null, ownerId: string, page: string, value: unknown, now: number): void {
      if (!enabled || !changes.current(ticket)) return;
      let owner = owners.get(ownerId);
      if (!owner) {
        owner = { at: now, pages: new Map() };
        owners.set(ownerId, owner);
        // The oldest owner first: a Map iterates in insertion order.
        if (owners.size > opts.maxOwners) owners.delete(owners.keys().next().value!);
      }
      owner.pages.set(page, value);
      if (owner.pages.size > PAGES_PER_OWNER) owner.pages.delete(owner.pages.keys().next().value!);
    },

    /** Owners held, for tests and diagnostics. */
    size: () => owners.size,
  };
}
