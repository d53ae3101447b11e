import type { Database } from "../../db/client";
import type { IngressConfig } from "../config";
import type { Logger } from "../log";
import { labelOfHost } from "./addresses";
import { recordTraffic, type TrafficCount } from "./traffic";

const HOUR_MS = 3_600_000;
const RETRY_BIND_MS = 30_000;

type AccessEntry = { ts?: number; request?: { host?: string }; size?: number; status?: number };

/**
 * Adds one access-log line (Caddy's JSON, one per datagram) to `counts`,
 * keyed by instance label and UTC hour. Lines for hosts that are not an
 * instance's, and anything that does not parse, are ignored.
 */
export function countAccessLine(counts: Map<string, TrafficCount>, settings: Pick<IngressConfig, "domain">, line: string): boolean {
  let entry: AccessEntry;
  try {
    entry = JSON.parse(line) as AccessEntry;
  } catch {
    return false;
  }
  const label = typeof entry.request?.host === "string" ? labelOfHost(settings, entry.request.host) : null;
  if (!label || typeof entry.status !== "number") return false;
  const at = typeof entry.ts === "number" ? entry.ts * 1000 : Date.now();
  const hour = Math.floor(at / HOUR_MS) * HOUR_MS;
  const key = `${label} ${hour}`;
  let count = counts.get(key);
  if (!count) {
    count = { label, hour: new Date(hour), requests: 0, bytesSent: 0, status2xx: 0, status3xx: 0, status4xx: 0, status5xx: 0 };
    counts.set(key, count);
  }
  count.requests += 1;
  count.bytesSent += typeof entry.size === "number" && entry.size > 0 ? entry.size : 0;
  const status = Math.floor(entry.status / 100);
  if (status === 2) count.status2xx += 1;
  else if (status === 3) count.status3xx += 1;
  else if (status === 4) count.status4xx += 1;
  else if (status === 5) count.status5xx += 1;
  return true;
}

/**
 * Receives the proxy's access log (UDP datagrams at INGRESS_LOG_LISTEN),
 * aggregates requests and bytes per instance and hour in memory, and writes
 * them every INGRESS_TRAFFIC_FLUSH_MS in one statement. One process holds the
 * port; in others the bind fails and is retried now and then, so a
 * replacement takes over when the holder stops. What arrives while no
 * process listens is lost (UDP), as is what was counted but not yet written
 * when a process is killed; a clean stop writes it.
 */
export async function startTrafficListener(deps: { db: Database; settings: IngressConfig; log: Logger }): Promise<{ stop(): Promise<void> }> {
  const { db, settings } = deps;
  const log = deps.log.child({ component: "ingress-traffic" });
  const traffic = settings.traffic;
  if (!traffic) return { stop: async () => {} };
  const [hostname, portText] = [traffic.listen.slice(0, traffic.listen.lastIndexOf(":")), traffic.listen.slice(traffic.listen.lastIndexOf(":") + 1)];
  let counts = new Map<string, TrafficCount>();
  let socket: { close(): void } | undefined;
  let stopped = false;
  let bindTimer: Timer | undefined;
  let flushing: Promise<void> = Promise.resolve();

  const bind = async () => {
    try {
      socket = await Bun.udpSocket({
        hostname,
        port: Number(portText),
        socket: {
          data(_socket, data) {
            for (const line of data.toString("utf8").split("\n")) if (line) countAccessLine(counts, settings, line);
          },
        },
      });
      log.info("counting traffic from the proxy's access log", { listen: traffic.listen });
    } catch (error) {
      log.info("traffic log port taken (another process counts); retrying later", { listen: traffic.listen, error: (error as Error).message });
      if (!stopped) bindTimer = setTimeout(() => void bind(), RETRY_BIND_MS);
    }
  };

  const flush = () => {
    flushing = flushing.then(async () => {
      if (!counts.size) return;
      const batch = [...counts.values()];
      counts = new Map();
      try {
        await recordTraffic(db, batch);
      } catch (error) {
        // Put them back: the next flush tries again.
        for (const count of batch) mergeCount(counts, count);
        log.warn("traffic counts could not be written; keeping them for the next flush", { error: (error as Error).message });
      }
    });
    return flushing;
  };

  await bind();
  const flushTimer = setInterval(() => void flush(), traffic.flushMs);
  return {
    async stop() {
      stopped = true;
      clearTimeout(bindTimer);
      clearInterval(flushTimer);
      socket?.close();
      await flush();
    },
  };
}

function mergeCount(counts: Map<string, TrafficCount>, count: TrafficCount): void {
  const key = `${count.label} ${count.hour.getTime()}`;
  const existing = counts.get(key);
  if (!existing) {
    counts.set(key, count);
    return;
  }
  existing.requests += count.requests;
  existing.bytesSent += count.bytesSent;
  existing.status2xx += count.status2xx;
  existing.status3xx += count.status3xx;
  existing.status4xx += count.status4xx;
  existing.status5xx += count.status5xx;
}
