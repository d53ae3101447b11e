import { Redis, type RedisOptions } from "ioredis";
import { withTimeout } from "./waits";

export type { Redis };

/**
 * Two flavours of connection, because BullMQ needs them to behave differently:
 * - "command": used on the request path. No offline queue, so a command during
 *   an outage fails at once (and the request answers 503) instead of hanging
 *   until Redis returns (stack-pitfalls B-9).
 * - "worker": BullMQ workers block on Redis and must retry forever
 *   (`maxRetriesPerRequest: null`).
 */
export async function connectRedis(url: string, kind: "command" | "worker", opts: { timeoutMs?: number; commandTimeoutMs?: number } = {}): Promise<Redis> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const options: RedisOptions =
    kind === "command"
      ? // A Redis that accepts the connection but stops answering must not hang requests either.
        { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true, connectTimeout: timeoutMs, commandTimeout: opts.commandTimeoutMs ?? 5000 }
      : { maxRetriesPerRequest: null, lazyConnect: true, connectTimeout: timeoutMs };
  const redis = new Redis(url, options);
  // Connection errors are reported by readiness and by the failing command;
  // without a listener ioredis would print each reconnect attempt.
  redis.on("error", () => {});
  try {
    await withTimeout(redis.connect(), timeoutMs);
  } catch (error) {
    redis.disconnect();
    throw new Error(`Redis is unreachable at REDIS_URL=${redact(url)}: ${(error as Error).message}`, { cause: error });
  }
  return redis;
}

export class RedisPolicyError extends Error {
  override name = "RedisPolicyError";
}

/**
 * BullMQ keeps jobs as ordinary keys: a Redis allowed to evict keys under
 * memory pressure silently loses queued work (stack-pitfalls B-8). Start-up
 * refuses such a Redis; one that hides its configuration (CONFIG disabled, as
 * some managed services do) is accepted with a warning.
 */
export async function checkEvictionPolicy(redis: Redis, url: string): Promise<{ policy: string | null }> {
  let reply: unknown;
  try {
    reply = await redis.config("GET", "maxmemory-policy");
  } catch {
    return { policy: null };
  }
  const policy = Array.isArray(reply) ? String(reply[1] ?? "") : "";
  if (policy && policy !== "noeviction") {
    throw new RedisPolicyError(
      `Redis at REDIS_URL=${redact(url)} has maxmemory-policy ${policy}: it may evict queued jobs. Set \`maxmemory-policy noeviction\` on it (and run it apart from any cache).`,
    );
  }
  return { policy: policy || null };
}

export function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(unparseable URL)";
  }
}
