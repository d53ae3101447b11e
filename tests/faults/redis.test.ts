import { afterAll, describe, expect, test } from "bun:test";
import { eq, inArray } from "drizzle-orm";
import { instances, mailMessages } from "../../db/schema";
import { dispatchMail, queueMail } from "../../server/mail/outbox";
import type { Services } from "../../server/services";
import { recordRecovery } from "../harness/fault-report";
import { startPlatform, startRedis, stopwatch, type OwnRedis, type PlatformProcess } from "../harness/faults";
import { eventually, startTestServices } from "../harness/server";
import { startSmtpServer } from "../harness/smtp";
import { createUserWithSession } from "../harness/users";

/**
 * Redis is the queue. These tests break a private redis-server (AOF on, its
 * own port) under real platform processes; the machine's Redis is untouched.
 */

const cleanup: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const step of cleanup.reverse()) await step().catch(() => {});
});

describe("Redis restarted under the workers", () => {
  test("with 100 jobs waiting and 5 active, the workers resume on their own and every job runs exactly once", async () => {
    const redis = await startRedis();
    cleanup.push(() => redis.destroy());
    const smtp = await startSmtpServer({ delayMs: 250 });
    cleanup.push(() => smtp.close());
    const services = await startTestServices({ REDIS_URL: redis.url });
    cleanup.push(() => services.close());
    const worker = await startPlatform("workers/main.ts", { REDIS_URL: redis.url, SMTP_URL: smtp.url, WORKER_CONCURRENCY: "5", WORKER_LOCK_MS: "4000" });
    cleanup.push(() => worker.stop());

    const tag = crypto.randomUUID().slice(0, 8);
    const ids: string[] = [];
    for (let i = 0; i < 105; i++) ids.push(await queueMail(services.db, { to: `redis-${tag}-${i}@example.test`, subject: `job ${i}`, text: "x", kind: "test" }));
    const mail = services.queues.queue("mail");
    await Promise.all(ids.map((id) => dispatchMail(services.queues, id)));
    await eventually(
      () => mail.getJobCounts("active", "waiting"),
      (c) => c.active === 5 && (c.waiting ?? 0) >= 90,
      { timeoutMs: 30_000, intervalMs: 20, what: "5 active and ~100 waiting" },
    );

    await redis.stop("kill");
    await Bun.sleep(1000);
    await redis.start();
    const sinceRestart = stopwatch();
    const sentAtRestart = await sentCount(services, ids);

    // The same worker process picks the work up again: no restart, no job lost.
    await eventually(
      () => sentCount(services, ids),
      (n) => n > sentAtRestart,
      { timeoutMs: 20_000, intervalMs: 50, what: "a job to complete after the restart" },
    );
    const firstJobMs = sinceRestart();
    await eventually(
      () => sentCount(services, ids),
      (n) => n === ids.length,
      { timeoutMs: 60_000, intervalMs: 100, what: "all 105 messages to be sent" },
    );
    const allMs = sinceRestart();
    recordRecovery("Redis restarted (100 waiting, 5 active)", { "first job done after restart": firstJobMs, "all 105 done": allMs });

    expect(worker.alive()).toBe(true);
    expect(firstJobMs).toBeLessThan(20_000);
    // Exactly once: each address got one message.
    const perAddress = new Map<string, number>();
    for (const m of smtp.received) for (const to of m.to) if (to.startsWith(`redis-${tag}-`)) perAddress.set(to, (perAddress.get(to) ?? 0) + 1);
    expect(perAddress.size).toBe(105);
    expect([...perAddress.values()].every((n) => n === 1)).toBe(true);
  }, 120_000);
});

describe("Redis down", () => {
  let redis: OwnRedis;
  let api: PlatformProcess;
  let services: Services;

  test("mutations that must enqueue answer 503 at once, write nothing, and work again when Redis is back", async () => {
    redis = await startRedis();
    cleanup.push(() => redis.destroy());
    services = await startTestServices({ REDIS_URL: redis.url });
    cleanup.push(() => services.close());
    api = await startPlatform("server/api.ts", { REDIS_URL: redis.url });
    cleanup.push(() => api.stop());
    const { token, user } = await createUserWithSession(services);
    const call = (path: string, body?: unknown) =>
      fetch(`${api.url}/trpc/${path}`, {
        method: body === undefined ? "GET" : "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });

    await redis.stop("kill");
    const name = `down-${crypto.randomUUID().slice(0, 8)}`;
    const started = performance.now();
    const create = await call("compute.instances.create", { name, planId: "nano", imageId: "busybox" });
    const createMs = performance.now() - started;
    expect(create.status).toBe(503);
    expect(((await create.json()) as any).error.data.appCode).toBe("DEPENDENCY_UNAVAILABLE");
    expect(createMs).toBeLessThan(2000);
    expect(await services.db.select().from(instances).where(eq(instances.userId, user.id))).toHaveLength(0);

    // Signing in fails closed, as fast; reads that need no Redis still answer.
    const login = await fetch(`${api.url}/trpc/auth.login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email: user.email, password: "x".repeat(12) }) });
    expect(login.status).toBe(503);
    expect((await call("compute.instances.list")).status).toBe(200);

    await redis.start();
    const sinceBack = stopwatch();
    const again = await eventually(
      () => call("compute.instances.create", { name, planId: "nano", imageId: "busybox" }).then((r) => r.status),
      (status) => status === 200,
      { timeoutMs: 20_000, intervalMs: 100, what: "creates to be accepted again" },
    );
    recordRecovery("Redis down: enqueueing mutations", { "503 answered in": Math.round(createMs), "accepted again after Redis returned": sinceBack() });
    expect(again).toBe(200);
    const rows = await services.db.select().from(instances).where(eq(instances.userId, user.id));
    expect(rows).toHaveLength(1);
    // Its job exists: the row is not stuck without one.
    const jobs = await services.queues.queue("lifecycle").getJobs(["waiting", "delayed", "active", "completed", "failed"]);
    expect(jobs.some((j) => j.name === "run")).toBe(true);
  }, 90_000);
});

describe("Redis that may evict keys", () => {
  test("start-up refuses it, naming the policy and the fix", async () => {
    const redis = await startRedis({ maxmemoryPolicy: "allkeys-lru", maxmemory: "64mb" });
    cleanup.push(() => redis.destroy());
    const started = startPlatform("server/api.ts", { REDIS_URL: redis.url }, { readyTimeoutMs: 30_000 });
    const error = await started.then(
      () => null,
      (e: Error) => e,
    );
    expect(error?.message).toContain("maxmemory-policy allkeys-lru");
    expect(error?.message).toContain("noeviction");
  }, 60_000);
});

async function sentCount(services: Services, ids: string[]): Promise<number> {
  const rows = await services.db.select({ status: mailMessages.status }).from(mailMessages).where(inArray(mailMessages.id, ids));
  return rows.filter((r) => r.status === "sent").length;
}
