import type { DatabaseHandle } from "./client";
import type { Listener } from "./listen";

/**
 * The channel on which database triggers announce changes when they commit,
 * whoever made them (the API, a worker, a script, psql), for the in-process
 * caches that must drop what they hold (server/auth/cache.ts,
 * server/compute/list-cache.ts): one listening connection per process, and
 * what the caches share:
 *
 * - The subscription's state. A cache may answer from memory only while
 *   `active`: until the subscription is confirmed, and from the moment it is
 *   lost until it is back, messages may have been missed, so everything is
 *   forgotten (`reset`) and lookups go to the database.
 * - A generation, bumped by every message and every reset. A lookup racing a
 *   change could read the old row and store it after the change's message
 *   was handled: a `ticket()` taken before the read must still be `current`
 *   when storing, else the row serves that request but is not kept.
 * - Barriers. Messages arrive a little after the commit, and on a busy
 *   machine after the client has already been told the change is done. So
 *   that a change made through the API applies to the very next request in
 *   every process, `settle()` sends a barrier on the channel and waits until
 *   every subscribed process has acknowledged it; a process acknowledges
 *   after handling every message committed before the barrier (messages
 *   arrive in commit order), which includes the change.
 *
 * Trigger payloads must not start with `b:` or `a:`, the barriers' own.
 */

/** The triggers' channel (db/migrations: "auth_invalidation", "instance_list_invalidation"). */
export const CHANGES_CHANNEL = "sahary_changes";

/** How long `settle()` waits for the slowest process (a hung one) before giving up on it. */
export const SETTLE_TIMEOUT_MS = 2000;

type Log = { warn(message: string, fields?: Record<string, unknown>): void };

export type InvalidationHandlers = {
  /** A trigger's payload. */
  message(payload: string): void;
  /** Forget everything: messages may have been missed. */
  reset(): void;
};

export type InvalidationChannel = ReturnType<typeof invalidationChannel>;

export function invalidationChannel(database: Pick<DatabaseHandle, "listen">, channel: string, opts: { log?: Log | undefined } = {}) {
  const subscribers: InvalidationHandlers[] = [];
  let generation = 0;
  let subscribed = false;
  let listener: Listener | undefined;
  let closed = false;
  /** Tells this process's acknowledgements apart from the others'. */
  const instance = crypto.randomUUID();
  /** Barriers this process is waiting on: who acknowledged, and how many are expected. */
  const barriers = new Map<string, { acks: Set<string>; expected: number; done(): void }>();

  function reset() {
    generation++;
    for (const s of subscribers) s.reset();
  }

  function acknowledged(payload: string) {
    const [barrier, from] = payload.slice(2).split(":") as [string, string];
    const pending = barriers.get(barrier);
    if (!pending) return;
    pending.acks.add(from);
    if (pending.acks.size >= pending.expected) pending.done();
  }

  function handle(payload: string) {
    switch (payload.slice(0, 2)) {
      case "b:":
        // Everything committed before the barrier has been handled.
        listener?.notify(`a:${payload.slice(2)}:${instance}`).catch(() => {});
        return;
      case "a:":
        acknowledged(payload);
        return;
      default:
        generation++;
        for (const s of subscribers) s.message(payload);
    }
  }

  /** Subscribes (once); lookups call it, so processes that never look anything up hold no extra connection. */
  function start() {
    if (listener || closed) return;
    listener = database.listen(channel, {
      message: handle,
      up() {
        reset();
        subscribed = true;
      },
      down(error) {
        subscribed = false;
        reset();
        opts.log?.warn("caches off: invalidation channel lost, reading credentials and instance lists from the database until it is back", {
          error: error instanceof Error ? error.message : undefined,
        });
      },
    });
  }

  return {
    /** A cache's handlers: every payload, and every reset (before each subscription and after it is lost). */
    subscribe(handlers: InvalidationHandlers) {
      subscribers.push(handlers);
    },

    /** True while lookups may be answered from memory. */
    get active() {
      return subscribed;
    },

    /** Subscribes if not yet done and tells whether a lookup may be answered from memory now. */
    ready(): boolean {
      start();
      return subscribed;
    },

    start,

    /** Call before reading what you will store; null when nothing may be stored now. */
    ticket(): number | null {
      start();
      return subscribed ? generation : null;
    },

    /** Whether what was read under `ticket` may be stored. */
    current(ticket: number | null): boolean {
      return ticket !== null && ticket === generation && subscribed;
    },

    /**
     * Resolves once every process subscribed to the channel has handled every
     * change committed before the call (or after SETTLE_TIMEOUT_MS, logged).
     * Returns at once when this process is not subscribed: its own lookups
     * then go to the database, and it cannot hear the others.
     */
    async settle(): Promise<void> {
      if (!subscribed || !listener) return;
      const barrier = crypto.randomUUID();
      let done!: () => void;
      const settled = new Promise<void>((resolve) => (done = resolve));
      const pending = { acks: new Set<string>(), expected: Number.POSITIVE_INFINITY, done };
      barriers.set(barrier, pending);
      let timer: Timer | undefined;
      try {
        pending.expected = await listener.broadcast(`b:${barrier}`);
        if (pending.acks.size >= pending.expected) return;
        const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), SETTLE_TIMEOUT_MS)));
        if (await Promise.race([settled.then(() => false), timedOut])) {
          opts.log?.warn("not every API process confirmed a change in time; the late ones apply it when its message arrives", {
            confirmed: pending.acks.size,
            expected: pending.expected,
          });
        }
      } catch (error) {
        opts.log?.warn("could not confirm a change with the other API processes", { error: (error as Error).message });
      } finally {
        clearTimeout(timer);
        barriers.delete(barrier);
      }
    },

    async close() {
      closed = true;
      subscribed = false;
      reset();
      await listener?.close();
    },
  };
}
