import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eq, sql } from "drizzle-orm";
import postgres from "postgres";
import { openDatabase } from "../../db/client";
import { migrateDatabase } from "../../db/migrate";
import { mailMessages, users } from "../../db/schema";
import { dispatchMail, queueMail } from "../../server/mail/outbox";
import { jobId } from "../../workers/queues";
import { testRun } from "../harness/env";
import { eventually, startTestServices } from "../harness/server";
import { freePort, processEnv, projectRoot } from "../harness/process";
import { startSmtpServer } from "../harness/smtp";

const root = projectRoot;
const bun = process.execPath;

describe("entry points", () => {
  test("the all-in-one process serves /health, /ready, and stops cleanly on SIGTERM", async () => {
    const port = await freePort();
    const child = Bun.spawn([bun, "server/main.ts"], { cwd: root, env: processEnv({ PORT: String(port) }), stdout: "pipe", stderr: "pipe" });
    try {
      await eventually(
        () =>
          fetch(`http://127.0.0.1:${port}/health`).then(
            (r) => r.status,
            () => 0,
          ),
        (status) => status === 200,
        { timeoutMs: 20_000, what: "/health" },
      );
      const ready = (await (await fetch(`http://127.0.0.1:${port}/ready`)).json()) as any;
      expect(Object.keys(ready.checks).sort()).toEqual(["database", "docker", "proxy", "redis"]);
      child.kill("SIGTERM");
      expect(await child.exited).toBe(0);
      const logs = await new Response(child.stdout).text();
      const lines = logs
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line));
      expect(lines.some((l) => l.msg === "listening")).toBe(true);
      expect(lines.some((l) => l.msg === "workers stopped")).toBe(true);
    } finally {
      child.kill("SIGKILL");
    }
  });

  test("production start without a secret fails naming the variable", async () => {
    const child = Bun.spawn([bun, "server/main.ts"], { cwd: root, env: processEnv({ NODE_ENV: "production", PORT: "0" }), stdout: "pipe", stderr: "pipe" });
    expect(await child.exited).toBe(1);
    expect(await new Response(child.stderr).text()).toContain("APP_SECRET");
  });

  test("a worker process finishes the job in hand before exiting on SIGTERM", async () => {
    const smtp = await startSmtpServer({ delayMs: 1500 });
    const services = await startTestServices();
    const child = Bun.spawn([bun, "workers/main.ts"], { cwd: root, env: processEnv({ SMTP_URL: smtp.url }), stdout: "pipe", stderr: "pipe" });
    try {
      const id = await queueMail(services.db, { to: "slow@example.test", subject: "In flight", text: "x", kind: "test" });
      await dispatchMail(services.queues, id);
      // This message's own job (mail other files left queued may be in hand before it).
      await eventually(
        async () => (await services.queues.queue("mail").getJob(jobId("mail", id)))?.getState(),
        (state) => state === "active",
        { timeoutMs: 30_000, what: "the job to be active" },
      );
      child.kill("SIGTERM");
      expect(await child.exited).toBe(0);
      const row = await services.db.query.mailMessages.findFirst({ where: eq(mailMessages.id, id) });
      expect(row!.status).toBe("sent");
      expect(smtp.received.map((m) => m.to)).toContainEqual(["slow@example.test"]);
    } finally {
      child.kill("SIGKILL");
      await services.close();
      await smtp.close();
    }
  });
});

describe("migrations", () => {
  const admin = postgres(testRun.adminDatabaseUrl, { max: 1, onnotice: () => {} });
  const name = `${testRun.databaseName}_mig`;
  afterAll(async () => {
    await admin.unsafe(`drop database if exists "${name}" with (force)`);
    await admin.end();
  });

  test("two processes migrating a fresh database at once both succeed, applying each migration once", async () => {
    await admin.unsafe(`create database "${name}"`);
    const url = new URL(testRun.adminDatabaseUrl);
    url.pathname = `/${name}`;
    const migrateOnce = async () => {
      const handle = await openDatabase({ url: url.toString(), dataDir: testRun.dataDir });
      try {
        await migrateDatabase(handle, url.toString());
      } finally {
        await handle.close();
      }
    };
    // Two OS processes, as when an API and a worker container start together.
    const script = `import { openDatabase } from "./db/client"; import { migrateDatabase } from "./db/migrate";
      const h = await openDatabase({ url: process.env.DATABASE_URL, dataDir: "/tmp" }); await migrateDatabase(h, process.env.DATABASE_URL); await h.close();`;
    const spawnMigrate = () => Bun.spawn([bun, "-e", script], { cwd: root, env: processEnv({ DATABASE_URL: url.toString() }), stderr: "pipe" });
    const [a, b] = [spawnMigrate(), spawnMigrate()];
    await migrateOnce();
    expect([await a.exited, await b.exited]).toEqual([0, 0]);
    const target = postgres(url.toString(), { max: 1, onnotice: () => {} });
    const applied = await target`select count(*)::int as n from drizzle.__drizzle_migrations`;
    const journal = (await import("../../db/migrations/meta/_journal.json")).default;
    expect(applied[0]!.n).toBe(journal.entries.length);
    await target.end();
  });

  test("the embedded database migrates, serves, and refuses a second process on its folder", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sahary-pglite-"));
    try {
      const handle = await openDatabase({ dataDir: dir });
      expect(handle.driver).toBe("pglite");
      await migrateDatabase(handle);
      await handle.db.insert(users).values({ email: "embedded@example.test", name: "E", passwordHash: "x" });
      const [row] = await handle.db.select({ n: sql<number>`count(*)::int` }).from(users);
      expect(row!.n).toBe(1);

      const second = Bun.spawn([bun, "-e", `import { openDatabase } from "./db/client"; await openDatabase({ dataDir: ${JSON.stringify(dir)} });`], { cwd: root, stderr: "pipe" });
      expect(await second.exited).not.toBe(0);
      expect(await new Response(second.stderr).text()).toContain("is in use by process");
      await handle.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // A PGlite cold start alone takes 2–3.5 s on a busy two-core machine, and over 20 s when six test runs share
    // it (measured: 21 s to open, 2.8 s to migrate); the test waits on conditions, so a long deadline costs nothing.
  }, 90_000);
});
