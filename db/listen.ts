import type { PGlite } from "@electric-sql/pglite";
import postgres from "postgres";

/**
 * LISTEN on one channel, with the subscription's state made explicit. A
 * notification is only delivered to a connected listener; whoever relies on
 * the messages (a cache) must treat anything before `up` as possibly missed
 * and stop relying on them at `down`.
 */
export type ListenHandlers = {
  message(payload: string): void;
  /** Subscribed (again): messages from now on arrive; earlier ones may have been missed. */
  up(): void;
  /** The subscription is lost: messages are missed until the next `up`. */
  down(error?: unknown): void;
};

export type Listener = {
  /** NOTIFYs `payload` on the channel over the listening connection. */
  notify(payload: string): Promise<void>;
  /** NOTIFYs `payload` and counts the connections subscribed to the channel in this database (this one included). */
  broadcast(payload: string): Promise<number>;
  close(): Promise<void>;
};

/** How listening connections name themselves, so they can be counted (and told apart in pg_stat_activity). */
export const LISTENER_APPLICATION_NAME = "sahary-listen";
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 10_000;

/**
 * A dedicated PostgreSQL connection that LISTENs, reconnecting with backoff.
 * (postgres.js's own `listen()` re-subscribes after a drop, but gives up
 * silently when that first attempt fails, and does not say when it is down.)
 */
export function listenPostgres(url: string, channel: string, handlers: ListenHandlers): Listener {
  let closed = false;
  let subscribed = false;
  let retryMs = RETRY_MIN_MS;
  let timer: Timer | undefined;

  const lost = (error?: unknown) => {
    if (closed) return;
    if (subscribed) {
      subscribed = false;
      handlers.down(error);
    }
    if (!timer) {
      timer = setTimeout(subscribe, retryMs);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    }
  };

  // `onnotify` is postgres.js's connection-level hook (the one its listen() uses); it is not in the typings.
  const options = {
    max: 1,
    idle_timeout: null,
    max_lifetime: null,
    connect_timeout: 10,
    fetch_types: false,
    onnotice: () => {},
    connection: { application_name: LISTENER_APPLICATION_NAME },
    onclose: () => lost(),
    onnotify: (name: string, payload: string) => {
      if (name === channel && subscribed) handlers.message(payload);
    },
  } as unknown as postgres.Options<Record<string, never>>;
  const client = postgres(url, options);

  async function subscribe() {
    timer = undefined;
    try {
      await client`listen ${client(channel)}`;
      if (closed) return;
      subscribed = true;
      retryMs = RETRY_MIN_MS;
      handlers.up();
    } catch (error) {
      lost(error);
    }
  }
  void subscribe();

  return {
    async notify(payload) {
      await client`select pg_notify(${channel}, ${payload})`;
    },
    async broadcast(payload) {
      const [row] = await client`
        select pg_notify(${channel}, ${payload}),
          (select count(*)::int from pg_stat_activity where datname = current_database() and application_name = ${LISTENER_APPLICATION_NAME}) as listeners`;
      return row!.listeners as number;
    },
    async close() {
      closed = true;
      clearTimeout(timer);
      await client.end({ timeout: 2 });
    },
  };
}

/** PGlite runs in this process: the subscription cannot be lost. */
export function listenPglite(client: PGlite, channel: string, handlers: ListenHandlers): Listener {
  const subscription = client.listen(channel, handlers.message).then((unlisten) => {
    handlers.up();
    return unlisten;
  });
  const notify = async (payload: string) => {
    await client.query("select pg_notify($1, $2)", [channel, payload]);
  };
  return {
    notify,
    async broadcast(payload) {
      await notify(payload);
      return 1;
    },
    async close() {
      await (await subscription)().catch(() => {});
    },
  };
}
