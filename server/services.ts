import Docker from "dockerode";
import type { Database, DatabaseHandle } from "../db/client";
import { openDatabase } from "../db/client";
import { migrateDatabase } from "../db/migrate";
import { createQueues, type Queues } from "../workers/queues";
import { CHANGES_CHANNEL, invalidationChannel, type InvalidationChannel } from "../db/invalidation";
import { createAuthCache, type AuthCache } from "./auth/cache";
import { createInstanceListCache, type InstanceListCache } from "./compute/list-cache";
import { createSessionManager, type SessionManager } from "./auth/session";
import { createStripeClient, type StripeClient } from "./billing/stripe";
import { seedCatalogue } from "./compute/catalogue";
import { createEngines, type Engines } from "./compute/engines";
import type { Config } from "./config";
import { createIngress, type Ingress } from "./ingress/service";
import { createLogger, type Logger } from "./log";
import { createMailTransport, type MailTransport } from "./mail/transport";
import { createLimiters, type Limiters } from "./limits/limiters";
import { checkEvictionPolicy, connectRedis, type Redis } from "./redis";

/**
 * Everything a process talks to, opened once and passed down explicitly
 * (to the tRPC context, to workers, to the hardware monitor).
 */
export type Services = {
  config: Config;
  log: Logger;
  database: DatabaseHandle;
  db: Database;
  redis: Redis;
  /** Rate limits and request budgets (server/limits). */
  limits: Limiters;
  queues: Queues;
  docker: Docker;
  /** Docker clients for the compute hosts, by endpoint. */
  engines: Engines;
  mailer: MailTransport;
  sessions: SessionManager;
  /** Changes announced by database triggers, for the caches below (one listening connection). */
  changes: InvalidationChannel;
  /** What credentials resolve to, kept in this process (sessions, API keys, their users). */
  authCache: AuthCache;
  /** Customers' instance lists, kept in this process. */
  instanceLists: InstanceListCache;
  /** Null when STRIPE_SECRET_KEY is unset (development). */
  stripe: StripeClient | null;
  /** The reverse proxy in front of instances: its admin API and the route sync. */
  ingress: Ingress;
  close(): Promise<void>;
};

export async function createServices(config: Config, opts: { log?: Logger } = {}): Promise<Services> {
  const log = opts.log ?? createLogger({ level: config.logLevel, base: { service: "sahary" } });
  const database = await openDatabase(config.database);
  try {
    await migrateDatabase(database, config.database.url);
    await seedCatalogue(database.db);
  } catch (error) {
    await database.close();
    throw error;
  }
  let redis: Redis;
  try {
    redis = await connectRedis(config.redis.url, "command", { commandTimeoutMs: config.redis.commandTimeoutMs });
  } catch (error) {
    await database.close();
    throw error;
  }
  try {
    const { policy } = await checkEvictionPolicy(redis, config.redis.url);
    if (!policy) log.warn("could not read Redis's maxmemory-policy (CONFIG disabled?): make sure it is noeviction, or queued jobs may be evicted");
  } catch (error) {
    redis.disconnect();
    await database.close();
    throw error;
  }
  const queues = createQueues(redis, config.redis.prefix);
  const docker = new Docker({ socketPath: config.docker.socketPath });
  const mailer = createMailTransport(config.mail);
  const changes = invalidationChannel(database, CHANGES_CHANNEL, { log });
  const authCache = createAuthCache(changes, config.auth.cache);
  const instanceLists = createInstanceListCache(changes, config.compute.listCache);
  const sessions = createSessionManager(database.db, { production: config.production, cache: authCache });
  log.info("services ready", { database: database.driver });

  return {
    config,
    log,
    database,
    db: database.db,
    redis,
    limits: createLimiters(redis, config),
    queues,
    docker,
    engines: createEngines(config),
    mailer,
    sessions,
    changes,
    authCache,
    instanceLists,
    stripe: createStripeClient(config),
    ingress: createIngress({ db: database.db, config, log }),
    async close() {
      await queues.close();
      await changes.close();
      redis.disconnect();
      mailer.close();
      await database.close();
    },
  };
}
