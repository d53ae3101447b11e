import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq, sql } from "drizzle-orm";
import { auditLog, instanceActions, instances, invoiceLines, invoices } from "../../db/schema";
import { syncHosts } from "../../server/compute/hosts";
import { stateHistory } from "../../server/compute/instances";
import { seedCustomers } from "../harness/billing";
import { actionDone, containersOf } from "../harness/compute";
import { testRun } from "../harness/env";
import { recordRecovery } from "../harness/fault-report";
import { startPlatform, stopwatch, type PlatformProcess } from "../harness/faults";
import { eventually, startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

/**
 * `kill -9` of a worker process in the middle of an effect. A second worker
 * process takes the job up once the dead one's lock expires (WORKER_LOCK_MS)
 * and the effect happens exactly once.
 */

const WORKER_ENV = { WORKER_LOCK_MS: "2000" };
let app: TestServer;
let api: ReturnType<TestServer["client"]>;
const workers: PlatformProcess[] = [];
const worker = async () => {
  const w = await startPlatform("workers/main.ts", WORKER_ENV);
  workers.push(w);
  return w;
};

beforeAll(async () => {
  app = await startTestServer();
  await syncHosts(app.services);
  api = app.client({ token: (await createUserWithSession(app.services)).token });
});
afterAll(async () => {
  for (const w of workers) w.kill("SIGKILL");
  await app.close();
});

/** Kills `victim` with SIGKILL as soon as the Docker engine reports `event` for the instance's container. */
async function killOnDockerEvent(victim: PlatformProcess, instanceId: string, event: string): Promise<{ killed: Promise<void> }> {
  const stream = (await app.services.docker.getEvents({
    filters: { type: ["container"], event: [event], label: [`sahary.namespace=${testRun.dockerNamespace}`, `sahary.instance=${instanceId}`] },
  })) as NodeJS.ReadableStream & { destroy(): void };
  const killed = new Promise<void>((resolve) => {
    stream.once("data", () => {
      victim.kill("SIGKILL");
      stream.destroy();
      resolve();
    });
  });
  return { killed };
}

describe("a worker killed with SIGKILL", () => {
  test("during container create: one container, running, the action succeeded once", async () => {
    const first = await worker();
    const { instance, actionId } = await api.compute.instances.create.mutate({ name: "killed-create", planId: "nano", imageId: "busybox" });
    // The create is already queued; the kill lands when the engine reports the container created, before it starts.
    const { killed } = await killOnDockerEvent(first, instance.id, "create");
    await killed;
    expect(await first.exited).not.toBe(0);
    const sinceKill = stopwatch();

    await worker();
    expect((await actionDone(api, actionId, 60_000)).status).toBe("succeeded");
    recordRecovery("worker killed during container create", { "action succeeded after the kill": sinceKill() });
    const containers = await containersOf(app.services.docker, instance.id);
    expect(containers).toHaveLength(1);
    expect(containers[0]!.State).toBe("running");
    expect((await api.compute.instances.get.query({ id: instance.id })).state).toBe("running");
    expect((await stateHistory(app.services.db, instance.id)).map((h) => h.to)).toEqual(["pending", "provisioning", "running"]);
  }, 90_000);

  test("during delete: the container is gone, the instance deleted once, the action succeeded", async () => {
    // The worker that recovered the create is the only one alive: it takes the delete.
    const victim = workers.find((w) => w.alive()) ?? (await worker());
    const { instance, actionId: created } = await api.compute.instances.create.mutate({ name: "killed-delete", planId: "nano", imageId: "busybox" });
    expect((await actionDone(api, created, 60_000)).status).toBe("succeeded");

    const { killed } = await killOnDockerEvent(victim, instance.id, "kill");
    const { actionId } = await api.compute.instances.delete.mutate({ id: instance.id });
    await killed;
    const sinceKill = stopwatch();
    await worker();
    expect((await actionDone(api, actionId, 60_000)).status).toBe("succeeded");
    recordRecovery("worker killed during container delete", { "action succeeded after the kill": sinceKill() });
    expect(await containersOf(app.services.docker, instance.id)).toHaveLength(0);
    const [row] = await app.services.db.select().from(instances).where(eq(instances.id, instance.id));
    expect(row!.state).toBe("deleted");
    const history = (await stateHistory(app.services.db, instance.id)).map((h) => h.to);
    expect(history.filter((s) => s === "deleted")).toHaveLength(1);
    const [action] = await app.services.db.select().from(instanceActions).where(eq(instanceActions.id, actionId));
    expect(action!.status).toBe("succeeded");
  }, 90_000);

  test("during invoicing: every customer invoiced exactly once, numbers gap-free, one run recorded", async () => {
    const period = "2004-02";
    // Three transactions of 500.
    const customers = 1500;
    const { firstUser } = await seedCustomers(app.services, period, customers);
    const victim = workers.find((w) => w.alive()) ?? (await worker());
    await app.services.queues.enqueue("billing", "invoice", { period }, { jobId: `fault-invoice-${period}` });
    const count = async () => (await app.services.db.select({ n: sql<number>`count(*)::int` }).from(invoices).where(eq(invoices.period, period)))[0]!.n;
    // Kill once some batches are committed and others are not.
    const partial = await eventually(count, (n) => n > 0, { timeoutMs: 60_000, intervalMs: 10, what: "the first invoices to be written" });
    victim.kill("SIGKILL");
    await victim.exited;
    const atKill = await count();
    const sinceKill = stopwatch();
    expect(atKill).toBeLessThan(customers);

    await worker();
    await eventually(count, (n) => n === customers, { timeoutMs: 90_000, intervalMs: 100, what: `${customers} invoices` });
    await eventually(
      () =>
        app.services.db
          .select()
          .from(auditLog)
          .where(and(eq(auditLog.action, "billing.invoicing.run"), eq(auditLog.targetId, period))),
      (rows) => rows.length > 0,
      { timeoutMs: 30_000, what: "the run to finish" },
    );
    recordRecovery("worker killed during invoicing", { "all invoices written after the kill": sinceKill(), "invoices written before the kill": atKill });
    expect(partial).toBeGreaterThan(0);

    const rows = await app.services.db.select().from(invoices).where(eq(invoices.period, period));
    expect(new Set(rows.map((r) => r.userId)).size).toBe(customers);
    const numbers = rows.map((r) => Number(r.number!.slice(4))).sort((a, b) => a - b);
    expect(numbers.at(-1)! - numbers[0]! + 1).toBe(customers);
    const [lineCount] = await app.services.db
      .select({ n: sql<number>`count(*)::int` })
      .from(invoiceLines)
      .innerJoin(invoices, eq(invoices.id, invoiceLines.invoiceId))
      .where(eq(invoices.period, period));
    expect(lineCount!.n).toBe(customers);
    expect(rows.find((r) => r.userId === firstUser)!.totalMinor).toBe(123);
    const runs = await app.services.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "billing.invoicing.run"), eq(auditLog.targetId, period)));
    expect(runs).toHaveLength(1);
  }, 180_000);
});
