import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq, inArray, isNull } from "drizzle-orm";
import { eventDeliveries, outboxEvents } from "../../db/schema";
import { recordEvents, type NewEvent } from "../../server/events/outbox";
import { relayBatch } from "../../server/notifications/fanout";
import { sweepEvents } from "../../server/notifications/relay";
import { connectRedis } from "../../server/redis";
import type { Services } from "../../server/services";
import { createEndpoint } from "../../server/webhooks/endpoints";
import { createQueues } from "../../workers/queues";
import { processEnv, projectRoot } from "../harness/process";
import { startWebhookReceiver, type WebhookReceiver } from "../harness/receiver";
import { eventually, startTestServices } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// Nothing is lost and nothing is delivered twice when the process between
// the outbox and the receiver dies: the database is the truth, jobs are
// derived from it.

let services: Services;
let receiver: WebhookReceiver;
// The receiver listens on 127.0.0.1: allowed here on purpose (webhooks-ssrf.test.ts proves the default refuses it).
const ENV = { WEBHOOK_ALLOW_PRIVATE_TARGETS: "true", NOTIFY_SWEEP_INTERVAL_MS: "1000", NOTIFY_POLL_MS: "50", NOTIFY_CONCURRENCY: "4" };

beforeAll(async () => {
  receiver = await startWebhookReceiver({ respond: () => Bun.sleep(15).then(() => new Response(null, { status: 204 })) });
  services = await startTestServices(ENV);
});
afterAll(async () => {
  await services.close();
  await receiver.close();
});

async function customerWithEndpoints(n: number) {
  const { user } = await createUserWithSession(services);
  const paths: string[] = [];
  const endpointIds: string[] = [];
  for (let i = 0; i < n; i++) {
    const path = `/crash-${user.id}-${i}`;
    const { endpoint } = await createEndpoint(services, { actor: { kind: "system", name: "test" }, ownerId: user.id }, { url: receiver.url(path), eventTypes: ["instance.state_changed"] });
    paths.push(path);
    endpointIds.push(endpoint.id);
  }
  return { user, paths, endpointIds };
}

const eventsFor = (userId: string, n: number, from = 0): NewEvent[] =>
  Array.from({ length: n }, (_, i) => ({
    type: "instance.state_changed" as const,
    userId,
    data: { instanceId: crypto.randomUUID(), name: `web-${from + i}`, from: "provisioning" as const, to: "running" as const, reason: "requested" },
  }));

const deliveriesOf = (eventIds: string[]) =>
  services.db
    .select()
    .from(eventDeliveries)
    .where(and(inArray(eventDeliveries.eventId, eventIds), eq(eventDeliveries.channel, "webhook")));

function spawnWorkers() {
  return Bun.spawn([process.execPath, "workers/main.ts"], { cwd: projectRoot, env: processEnv({ ...ENV, LOG_LEVEL: "error" }), stdout: "ignore", stderr: "pipe" });
}

describe("a worker killed mid-fan-out", () => {
  test("after a restart every event reaches every endpoint, and each endpoint processes each webhook-id once", async () => {
    const { user, paths, endpointIds } = await customerWithEndpoints(3);
    const total = 360;
    const ids: string[] = [];
    const produce = async (from: number, to: number) => {
      // Events keep arriving while the worker runs, dies and comes back, as they would in production.
      for (let i = from; i < to; i += 20) {
        ids.push(...(await recordEvents(services.db, eventsFor(user.id, 20, i))));
        await Bun.sleep(25);
      }
    };

    const child = spawnWorkers();
    let second: ReturnType<typeof spawnWorkers> | undefined;
    try {
      const firstHalf = produce(0, total / 2);
      const processed = () => paths.reduce((n, p) => n + receiver.idsAt(p).size, 0);
      await eventually(
        async () => processed(),
        (n) => n >= 60,
        { what: "deliveries to start", timeoutMs: 60_000 },
      );
      child.kill("SIGKILL");
      await child.exited;
      await firstHalf;
      const atKill = {
        processed: processed(),
        undispatched: (
          await services.db
            .select()
            .from(outboxEvents)
            .where(and(eq(outboxEvents.userId, user.id), isNull(outboxEvents.dispatchedAt)))
        ).length,
      };
      await produce(total / 2, total);
      expect(atKill.processed).toBeLessThan(total * paths.length);

      second = spawnWorkers();
      const rows = await eventually(
        () => deliveriesOf(ids),
        (list) => list.length === total * paths.length && list.every((d) => d.status === "succeeded"),
        // A job that was active at the kill comes back once BullMQ notices its lock expired (up to about a minute).
        { what: "every delivery to succeed", timeoutMs: 150_000, intervalMs: 500 },
      );

      // Exactly one delivery row per (event, endpoint), all succeeded.
      const pairs = new Set(rows.map((d) => `${d.eventId}/${d.endpointId}`));
      expect(pairs.size).toBe(total * paths.length);
      for (const endpointId of endpointIds) expect(rows.filter((d) => d.endpointId === endpointId)).toHaveLength(total);

      // Every endpoint received every event under its stable webhook-id; only attempts in flight at the kill
      // (at most NOTIFY_CONCURRENCY) may have reached a receiver twice, and its dedupe on webhook-id absorbs them.
      let repeats = 0;
      for (const path of paths) {
        const counts = receiver.idsAt(path);
        expect(new Set(counts.keys())).toEqual(new Set(ids));
        for (const n of counts.values()) repeats += n - 1;
      }
      expect(repeats).toBeLessThanOrEqual(4);
      expect(
        await services.db
          .select()
          .from(outboxEvents)
          .where(and(eq(outboxEvents.userId, user.id), isNull(outboxEvents.dispatchedAt))),
      ).toEqual([]);
    } finally {
      child.kill("SIGKILL");
      second?.kill("SIGKILL");
      await second?.exited;
    }
  }, 240_000);
});

describe("Redis lost between the fan-out and the enqueue", () => {
  test("the fan-out commits, the enqueue fails without losing anything, and the sweep enqueues the deliveries from the database", async () => {
    const { user, paths } = await customerWithEndpoints(2);
    const ids = await recordEvents(services.db, eventsFor(user.id, 5));
    // A real client whose connection is gone, as when Redis dies after the commit.
    const lost = await connectRedis(services.config.redis.url, "command");
    const deadQueues = createQueues(lost, services.config.redis.prefix);
    await deadQueues.queue("notify").waitUntilReady();
    lost.disconnect();
    let fanned = { events: 0, deliveries: 0 };
    while (fanned.deliveries < 10) {
      const batch = await relayBatch({ db: services.db, queues: deadQueues, log: services.log }, 100);
      fanned = { events: fanned.events + batch.events, deliveries: fanned.deliveries + batch.deliveries };
      if (batch.events === 0) break;
    }
    const rows = await deliveriesOf(ids);
    expect(rows).toHaveLength(10);
    expect(rows.every((d) => d.status === "pending")).toBe(true);
    for (const row of rows) expect(await services.queues.queue("notify").getJob(`delivery.${row.id}.0`)).toBeUndefined();

    // Due for longer than a sweep interval and without a job: the sweep re-enqueues them, and a worker delivers.
    await Bun.sleep(1100);
    const swept = await sweepEvents(services);
    expect(swept.requeued).toBeGreaterThanOrEqual(10);
    const child = spawnWorkers();
    try {
      await eventually(
        () => deliveriesOf(ids),
        (list) => list.every((d) => d.status === "succeeded"),
        { what: "the swept deliveries", timeoutMs: 60_000, intervalMs: 200 },
      );
      for (const path of paths) expect(new Set(receiver.idsAt(path).keys())).toEqual(new Set(ids));
    } finally {
      child.kill("SIGKILL");
      await child.exited;
      await deadQueues.close().catch(() => {});
    }
  }, 120_000);
});
