import { Redis, type RedisOptions } from "ioredis";

export type { Redis };

/**
 * Two flavours of connection, because BullMQ needs them to behave differently:
 * - "command": used on the request path. No offline queue, so a command during
 *   an outage fails at once (and the request answers 503) instead of hanging
 *   until Redis returns (stack-pitfalls B-9).
 * - "worker": BullMQ workers block on Redis and must retry forever
 *   (`maxRetriesPerRequest: null`).
 */
export async function connectRedis(url: string, kind: "command" | "worker", timeoutMs = 5000): Promise<Redis> {
  const options: RedisOptions =
    kind === "command"
      ? { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true, connectTimeout: timeoutMs }
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

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    promise.then(
      (value) => (clearTimeout(timer), resolve(value)),
      (error) => (clearTimeout(timer), reject(error)),
    );
  });
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
