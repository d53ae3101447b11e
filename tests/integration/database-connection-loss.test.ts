import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import postgres from "postgres";
import { seedInstance, seedUsage } from "../harness/billing";
import { testRun } from "../harness/env";
import { startPlatform, type PlatformProcess } from "../harness/faults";
import { processEnv, projectRoot } from "../harness/process";
import { eventually, startTestServices } from "../harness/server";
import { createUserWithSession } from "../harness/users";
import type { Services } from "../../server/services";

/**
 * PostgreSQL may end any connection at any time (an operator's
 * pg_terminate_backend, idle_in_transaction_session_timeout, a failover).
 * postgres.js 3.4.9 then wrote the transaction's ROLLBACK to the socket it had
 * just dropped, from a timer, and the TypeError killed the process
 * (porsager/postgres#1208); patches/postgres+3.4.9.patch settles that write
 * and keeps a dead transaction's work off the reconnected socket.
 */

let services: Services;
let api: PlatformProcess;
const admin = postgres(testRun.adminDatabaseUrl.replace(/\/[^/]*$/, `/${testRun.databaseName}`), { max: 2, onnotice: () => {} });

beforeAll(async () => {
  services = await startTestServices();
  api = await startPlatform("server/api.ts");
});
afterAll(async () => {
  api.kill("SIGKILL");
  await admin.end({ timeout: 5 });
  await services.close();
});

describe("a connection ended by PostgreSQL inside a transaction", () => {
  test("pg_terminate_backend on admin.billing.runInvoicing's backend: the request answers 503 and the process lives on", async () => {
    const { token } = await createUserWithSession(services, { role: "admin" });
    const customer = await createUserWithSession(services);
    const instance = await seedInstance(services, customer.user.id);
    await seedUsage(services, instance, [{ hour: new Date("2001-03-04T05:00:00Z"), runningMs: 3_600_000 }]);
    const invoice = () =>
      fetch(`${api.url}/trpc/admin.billing.runInvoicing`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ period: "2001-03" }),
      });

    // Hold the invoice counter so the run's transaction waits on it, in a known place.
    await admin`insert into billing_counters (name, value) values ('invoice', 0) on conflict do nothing`;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const lockTaken = new Promise<void>((resolve) => (locked = resolve));
    const holder = admin.begin(async (tx) => {
      await tx`select value from billing_counters where name = 'invoice' for update`;
      locked();
      await held;
    });
    await lockTaken;

    const answer = invoice();
    const [waiting] = await eventually(
      () => admin<{ pid: number }[]>`select pid from pg_stat_activity where datname = current_database() and application_name = 'sahary' and wait_event_type = 'Lock'`,
      (rows) => rows.length > 0,
      { timeoutMs: 20_000, what: "the invoicing transaction to wait on the counter" },
    );
    await admin`select pg_terminate_backend(${waiting!.pid})`;
    const response = await answer;
    release();
    await holder;

    expect(response.status).toBe(503);
    expect(((await response.json()) as any).error.data.appCode).toBe("DEPENDENCY_UNAVAILABLE");
    // The crash came from a timer a moment later: give it time to happen.
    await Bun.sleep(1500);
    expect(api.alive()).toBe(true);
    expect((await fetch(`${api.url}/health`)).status).toBe(200);
    // The process still talks to the database, and the run that failed left nothing half-done.
    const rerun = await invoice();
    expect(rerun.status).toBe(200);
    expect(((await rerun.json()) as any).result.data).toMatchObject({ period: "2001-03", created: 1 });
    expect(api.alive()).toBe(true);
  }, 60_000);

  test("idle_in_transaction_session_timeout ends a transaction: none of its writes stay, later work runs, the process exits normally", async () => {
    const name = `idle-${crypto.randomUUID()}`;
    // A child process, so a crash shows as its exit code rather than taking the test runner down.
    const script = `
      import { sql } from "drizzle-orm";
      import { openDatabase } from "./db/client";
      import { billingCounters } from "./db/schema";
      const h = await openDatabase({ url: process.env.DATABASE_URL, dataDir: "/tmp", poolMax: 1 });
      const outcome = await h.db.transaction(async (tx) => {
        await tx.execute(sql\`set local idle_in_transaction_session_timeout = '300ms'\`);
        await tx.insert(billingCounters).values({ name: ${JSON.stringify(name)} + "-a", value: 1 });
        await Bun.sleep(1200);
        await tx.insert(billingCounters).values({ name: ${JSON.stringify(name)} + "-b", value: 1 });
      }).then(() => "committed", (e) => "rejected " + (e.code ?? e.cause?.code ?? e.message));
      // The pool's one connection comes back for the next statement.
      await h.db.insert(billingCounters).values({ name: ${JSON.stringify(name)} + "-after", value: 1 });
      await Bun.sleep(1000);
      console.log(JSON.stringify({ outcome }));
      await h.close();
    `;
    const child = Bun.spawn([process.execPath, "-e", script], { cwd: projectRoot, env: processEnv(), stdout: "pipe", stderr: "pipe" });
    const [code, out, err] = await Promise.all([child.exited, new Response(child.stdout).text(), new Response(child.stderr).text()]);
    expect({ code, err: err.slice(0, 2000) }).toEqual({ code: 0, err: "" });
    expect(JSON.parse(out.trim().split("\n").at(-1)!)).toEqual({ outcome: "rejected CONNECTION_CLOSED" });
    const rows = await admin<{ name: string }[]>`select name from billing_counters where name like ${`${name}%`} order by name`;
    expect(rows.map((r) => r.name)).toEqual([`${name}-after`]);
  }, 30_000);
});
