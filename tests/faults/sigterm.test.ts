import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq, sql } from "drizzle-orm";
import { auditLog, invoices } from "../../db/schema";
import type { Services } from "../../server/services";
import { holdInvoiceCounter, seedCustomers } from "../harness/billing";
import { testRun } from "../harness/env";
import { recordRecovery } from "../harness/fault-report";
import { startPlatform, stopwatch, type PlatformProcess } from "../harness/faults";
import { eventually, startTestServices } from "../harness/server";

/**
 * SIGTERM (a deploy, a scale-down) while a worker holds a long job: within
 * SHUTDOWN_TIMEOUT_MS the job finishes and the process exits 0; past it the
 * process exits anyway and another worker runs the job again, once.
 */

let services: Services;
const children: PlatformProcess[] = [];
beforeAll(async () => {
  services = await startTestServices();
});
afterAll(async () => {
  for (const child of children) child.kill("SIGKILL");
  await services.close();
});

const count = async (period: string) => (await services.db.select({ n: sql<number>`count(*)::int` }).from(invoices).where(eq(invoices.period, period)))[0]!.n;
const runs = (period: string) =>
  services.db
    .select()
    .from(auditLog)
    .where(and(eq(auditLog.action, "billing.invoicing.run"), eq(auditLog.targetId, period)));

async function invoicingUnderWay(period: string, customers: number, env: Record<string, string>) {
  await seedCustomers(services, period, customers);
  const worker = await startPlatform("workers/main.ts", { WORKER_LOCK_MS: "2000", ...env });
  children.push(worker);
  await services.queues.enqueue("billing", "invoice", { period }, { jobId: `sigterm-invoice-${period}` });
  await eventually(
    () => count(period),
    (n) => n > 0,
    { timeoutMs: 60_000, intervalMs: 10, what: "invoicing to be under way" },
  );
  return worker;
}

describe("SIGTERM during a long job", () => {
  test("within the shutdown timeout the job finishes, once, and the process exits 0", async () => {
    const period = "2004-05";
    const worker = await invoicingUnderWay(period, 1500, { SHUTDOWN_TIMEOUT_MS: "60000" });
    worker.kill("SIGTERM");
    const stopping = stopwatch();
    expect(await worker.exited).toBe(0);
    recordRecovery("SIGTERM during invoicing (within the timeout)", { "job finished and process exited after SIGTERM": stopping() });
    expect(await count(period)).toBe(1500);
    expect(await runs(period)).toHaveLength(1);
    const job = await services.queues.queue("billing").getJob(`sigterm-invoice-${period}`);
    expect(await job!.getState()).toBe("completed");
  }, 120_000);

  test("past the shutdown timeout the process exits and another worker runs the job again, exactly once", async () => {
    const period = "2004-06";
    const customers = 500;
    await seedCustomers(services, period, customers);
    // Hold the invoice counter so the job is certainly still at work when the stop comes.
    const counter = await holdInvoiceCounter(testRun.databaseUrl);
    // Released whatever happens: a lock left held would stall every later invoicing in the run.
    let exitMs: number;
    try {
      const worker = await startPlatform("workers/main.ts", { WORKER_LOCK_MS: "2000", SHUTDOWN_TIMEOUT_MS: "200" });
      children.push(worker);
      await services.queues.enqueue("billing", "invoice", { period }, { jobId: `sigterm-invoice-${period}` });
      await eventually(
        // On PostgreSQL, execute answers the rows themselves.
        () =>
          services.db.execute(sql`select pid from pg_stat_activity where datname = current_database() and application_name = 'sahary' and wait_event_type = 'Lock'`) as unknown as Promise<
            { pid: number }[]
          >,
        (rows) => rows.length > 0,
        { timeoutMs: 60_000, what: "the job to be at work" },
      );
      // The next worker is up before the stop (as in a rolling deploy); the job is in the first one's hands.
      const next = await startPlatform("workers/main.ts", { WORKER_LOCK_MS: "2000" });
      children.push(next);
      worker.kill("SIGTERM");
      const exiting = stopwatch();
      await worker.exited;
      exitMs = exiting();
    } finally {
      await counter.release();
    }
    const atExit = await count(period);
    expect(atExit).toBe(0);
    // SHUTDOWN_TIMEOUT_MS bounds the stop (plus the database pool's 5 s to close), whatever the job is doing.
    expect(exitMs).toBeLessThan(10_000);
    const sinceExit = stopwatch();
    await eventually(
      () => runs(period),
      (rows) => rows.length > 0,
      { timeoutMs: 90_000, intervalMs: 100, what: "the rerun to finish" },
    );
    recordRecovery("SIGTERM during invoicing (past the timeout)", { "process exited after SIGTERM": exitMs, "job finished by another worker after the exit": sinceExit() });
    const rows = await services.db.select().from(invoices).where(eq(invoices.period, period));
    expect(rows).toHaveLength(customers);
    expect(new Set(rows.map((r) => r.userId)).size).toBe(customers);
    const numbers = rows.map((r) => Number(r.number!.slice(4))).sort((a, b) => a - b);
    expect(numbers.at(-1)! - numbers[0]! + 1).toBe(customers);
    expect(await runs(period)).toHaveLength(1);
    const job = await services.queues.queue("billing").getJob(`sigterm-invoice-${period}`);
    expect(await job!.getState()).toBe("completed");
    // Started twice: by the worker that was stopped, and once more by the next one.
    expect(job!.attemptsStarted).toBe(2);
  }, 150_000);
});
