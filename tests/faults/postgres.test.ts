import { afterAll, describe, expect, test } from "bun:test";
import { and, eq, inArray } from "drizzle-orm";
import { apiKeys, auditLog } from "../../db/schema";
import { recordRecovery } from "../harness/fault-report";
import { startPlatform, startPostgres, stopwatch } from "../harness/faults";
import { startTestServices } from "../harness/server";
import { createUserWithSession } from "../harness/users";

/**
 * PostgreSQL restarted under load: a private cluster (initdb/pg_ctl in a
 * temporary folder), the real API as a child process, ~50 requests a second.
 */

const cleanup: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const step of cleanup.reverse()) await step().catch(() => {});
});

type Outcome = { at: number; status: number; kind: "read" | "create" | "revoke"; keyId?: string; appCode?: string; ms?: number; error?: string };

describe("PostgreSQL restarted during mixed load", () => {
  test("requests in flight get 503, nothing is half-written, and the same process serves again within seconds", async () => {
    const pg = await startPostgres();
    cleanup.push(() => pg.destroy());
    const url = await pg.createDatabase("sahary_fault");
    const services = await startTestServices({ DATABASE_URL: url });
    cleanup.push(() => services.close());
    const api = await startPlatform("server/api.ts", { DATABASE_URL: url, DATABASE_POOL_MAX: "10" });
    cleanup.push(() => api.stop());
    const users = await Promise.all(Array.from({ length: 24 }, () => createUserWithSession(services)));

    const outcomes: Outcome[] = [];
    const started = performance.now();
    const call = async (kind: Outcome["kind"], token: string, path: string, body?: unknown): Promise<Outcome> => {
      const at = performance.now() - started;
      try {
        const res = await fetch(`${api.url}/trpc/${path}`, {
          method: body === undefined ? "GET" : "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(20_000),
        });
        const json = (await res.json()) as any;
        return { at, status: res.status, kind, keyId: json?.result?.data?.id, appCode: json?.error?.data?.appCode, ms: performance.now() - started - at };
      } catch (error) {
        return { at, status: 0, kind, ms: performance.now() - started - at, error: String(error) };
      }
    };
    const reads = ["auth.me", "compute.instances.list", "billing.invoices.list", "auth.apiKeys.list"];
    let n = 0;
    const tick = async () => {
      const i = n++;
      const user = users[i % users.length]!;
      if (i % 4 !== 3) {
        outcomes.push(await call("read", user.token, reads[i % reads.length]!));
        return;
      }
      // A write is a key created and revoked: two transactions, each with its audit row.
      const created = await call("create", user.token, "auth.apiKeys.create", { name: `load-${i}`, scopes: ["account:read"] });
      outcomes.push(created);
      if (created.status === 200 && created.keyId) outcomes.push(await call("revoke", user.token, "auth.apiKeys.revoke", { id: created.keyId }));
    };

    const inFlight: Array<Promise<void>> = [];
    const load = setInterval(() => inFlight.push(tick()), 20);
    await Bun.sleep(3000);
    const stopAt = performance.now() - started;
    await pg.stop("fast");
    await Bun.sleep(1500);
    await pg.start();
    const upAt = performance.now() - started;
    const sinceUp = stopwatch();
    await Bun.sleep(6000);
    clearInterval(load);
    const loadSeconds = (performance.now() - started) / 1000;
    await Promise.all(inFlight);

    expect(api.alive()).toBe(true);
    // Never a 500: a lost database is 503 DEPENDENCY_UNAVAILABLE, in the error envelope.
    expect(outcomes.filter((o) => o.status !== 200 && o.status !== 503)).toEqual([]);
    expect(outcomes.filter((o) => o.status === 503).length).toBeGreaterThan(0);
    const rate = outcomes.filter((o) => o.kind !== "revoke").length / loadSeconds;
    expect(rate).toBeGreaterThan(25);

    // Back within seconds, without restarting the process.
    const firstOk = outcomes.filter((o) => o.status === 200 && o.at > upAt).sort((a, b) => a.at - b.at)[0];
    expect(firstOk).toBeDefined();
    const recoveredMs = Math.round(firstOk!.at - upAt);
    expect(recoveredMs).toBeLessThan(5000);
    const late = outcomes.filter((o) => o.at > upAt + recoveredMs + 1000);
    expect(late.length).toBeGreaterThan(20);
    expect(late.every((o) => o.status === 200)).toBe(true);
    recordRecovery("PostgreSQL restarted under ~50 req/s", {
      "stopped for (stop to start)": Math.round(upAt - stopAt),
      "first 200 after PostgreSQL was back": recoveredMs,
      "answers 503 during the outage": outcomes.filter((o) => o.status === 503).length,
      "checked after": sinceUp(),
    });

    // No partial writes: each key exists with exactly its audit rows, and each audit row with its key.
    const ids = users.map((u) => u.user.id);
    const keys = await services.db.select().from(apiKeys).where(inArray(apiKeys.userId, ids));
    const created = await services.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "auth.api_key.created"), inArray(auditLog.actorId, ids)));
    const revoked = await services.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "auth.api_key.revoked"), inArray(auditLog.actorId, ids)));
    expect(created.map((a) => a.targetId).sort()).toEqual(keys.map((k) => k.id).sort());
    expect(revoked.map((a) => a.targetId).sort()).toEqual(
      keys
        .filter((k) => k.revokedAt)
        .map((k) => k.id)
        .sort(),
    );
    // Every key the API said it created exists; every revoke it confirmed is recorded.
    const confirmed = outcomes.filter((o) => o.kind === "create" && o.status === 200).map((o) => o.keyId);
    expect(confirmed.every((id) => keys.some((k) => k.id === id))).toBe(true);
    expect(keys.length).toBeGreaterThan(20);
  }, 120_000);
});
