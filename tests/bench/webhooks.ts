/**
 * Webhook fan-out benchmark (not a test), against real PostgreSQL and Redis
 * and a real local HTTP receiver: how many events per second reach N
 * endpoints each, end to end — outbox rows committed → relay claims and fans
 * them out (delivery rows, one addBulk per batch) → delivery jobs → signed
 * POSTs over HTTP → the receiver's 204 → the attempt and delivery recorded.
 *
 * For each N, a customer with N endpoints (each a path on the receiver) gets
 * `events` events written in one transaction; the clock starts at the commit
 * and stops when the database has every delivery succeeded. The relay and the
 * workers run in this process, as `npm start` runs them (one worker process).
 *
 * Run: npm run bench:webhooks -- [events=500] [endpoints=1,5,20] [concurrency=16]
 *
 * It uses its own database, Redis prefix and data folder and removes them at the end.
 */
import { and, count, eq, isNull } from "drizzle-orm";
import { eventDeliveries, outboxEvents } from "../../db/schema";
import { systemActor } from "../../server/auth/actor";
import { loadConfig } from "../../server/config";
import { recordEvents } from "../../server/events/outbox";
import { createLogger } from "../../server/log";
import { createServices } from "../../server/services";
import { createEndpoint } from "../../server/webhooks/endpoints";
import { notifyProcessor } from "../../workers/notify";
import { startWorkers } from "../../workers/runner";
import { defineSandbox } from "../harness/sandbox";
import { createUserWithSession } from "../harness/users";

const [eventsArg = "500", endpointsArg = "1,5,20", concurrencyArg] = process.argv.slice(2);
const eventsN = Number(eventsArg);
const endpointCounts = endpointsArg.split(",").map(Number);

const sandbox = defineSandbox("bench");
await sandbox.create();
const config = loadConfig({
  ...sandbox.env,
  LOG_LEVEL: "error",
  // The receiver is on 127.0.0.1.
  WEBHOOK_ALLOW_PRIVATE_TARGETS: "true",
  // The relay looks for new events every 100 ms when idle (default 1 s): the figure is throughput, not poll latency.
  NOTIFY_POLL_MS: "100",
  ...(concurrencyArg ? { NOTIFY_CONCURRENCY: concurrencyArg } : {}),
});
const services = await createServices(config, { log: createLogger({ level: "error" }) });

let received = 0;
const receiver = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    await req.arrayBuffer();
    received += 1;
    return new Response(null, { status: 204 });
  },
});

const workers = await startWorkers(services, [notifyProcessor]);
const rows: Array<Record<string, string | number>> = [];
try {
  for (const n of endpointCounts) {
    const { user } = await createUserWithSession(services);
    for (let i = 0; i < n; i++) {
      await createEndpoint(services, { actor: systemActor("bench"), ownerId: user.id }, { url: `http://127.0.0.1:${receiver.port}/e${n}-${i}`, eventTypes: ["instance.state_changed"] });
    }
    const before = received;
    const events = Array.from({ length: eventsN }, (_, i) => ({
      type: "instance.state_changed" as const,
      userId: user.id,
      data: { instanceId: crypto.randomUUID(), name: `web-${i}`, from: "provisioning" as const, to: "running" as const, reason: "requested" },
    }));
    await services.db.transaction((tx) => recordEvents(tx, events));
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    let fannedOutMs = 0;
    const expected = eventsN * n;
    for (;;) {
      if (!fannedOutMs) {
        const [left] = await services.db
          .select({ n: count() })
          .from(outboxEvents)
          .where(and(eq(outboxEvents.userId, user.id), isNull(outboxEvents.dispatchedAt)));
        if (left!.n === 0) fannedOutMs = performance.now() - t0;
      }
      const [done] = await services.db
        .select({ n: count() })
        .from(eventDeliveries)
        .where(and(eq(eventDeliveries.userId, user.id), eq(eventDeliveries.channel, "webhook"), eq(eventDeliveries.status, "succeeded")));
      if (done!.n === expected) break;
      if (performance.now() - t0 > 600_000) throw new Error(`timed out: ${done!.n} of ${expected} deliveries`);
      await Bun.sleep(50);
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    rows.push({
      endpoints: n,
      events: eventsN,
      deliveries: expected,
      "POSTs received": received - before,
      "fan-out done (ms)": Math.round(fannedOutMs),
      "all delivered (s)": Number(seconds.toFixed(2)),
      "events/s": Math.round(eventsN / seconds),
      "deliveries/s": Math.round(expected / seconds),
      // This process's CPU (relay, workers, receiver and the polling above) per delivery: less sensitive to other load than the rates.
      "CPU ms/delivery": Number(((cpu.user + cpu.system) / 1000 / expected).toFixed(2)),
    });
  }
} finally {
  await workers.close();
  await receiver.stop(true);
  await services.close();
  await sandbox.destroy();
}

console.log(`webhook fan-out: ${eventsN} events per run, NOTIFY_CONCURRENCY=${config.notify.concurrency}, NOTIFY_POLL_MS=100, one worker process, Bun ${Bun.version}`);
console.table(rows);
process.exit(0);
