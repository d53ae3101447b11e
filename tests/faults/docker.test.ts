import { afterAll, describe, expect, test } from "bun:test";
import { createTRPCClient, httpLink } from "@trpc/client";
import { and, eq, inArray, sql } from "drizzle-orm";
import { instanceStateHistory, instances, meterCursors, usageRecords } from "../../db/schema";
import type { AppRouter } from "../../server/router";
import { testRun } from "../harness/env";
import { recordRecovery } from "../harness/fault-report";
import { scratchDatabase, startDockerd, startPlatform, stopwatch } from "../harness/faults";
import { eventually, startTestServices } from "../harness/server";
import { createUserWithSession } from "../harness/users";

/**
 * The Docker engine restarted under running instances. A private dockerd
 * (own data root, exec root, socket) is stopped and started again; the
 * platform (API and workers in one child process) must not duplicate
 * containers, must record what happened to the instances, and must not bill
 * the time their containers were dead as running.
 */

const cleanup: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const step of cleanup.reverse()) await step().catch(() => {});
});

describe("the Docker engine restarted with running instances", () => {
  test("no duplicate containers, states reconciled from the engine, the dead time not billed", async () => {
    const dockerd = await startDockerd();
    cleanup.push(() => dockerd.destroy());
    await dockerd.loadImage("sahary/busybox:1.35");
    const database = await scratchDatabase("dockerd");
    cleanup.push(() => database.drop());
    const env = { DATABASE_URL: database.url, ...dockerd.env, COMPUTE_RECONCILE_INTERVAL_MS: "2000", METERING_INTERVAL_MS: "1000", WORKER_LOCK_MS: "3000" };
    const platform = await startPlatform("server/main.ts", env);
    cleanup.push(() => platform.stop());
    const services = await startTestServices(env);
    cleanup.push(() => services.close());

    const { token } = await createUserWithSession(services);
    const api = createTRPCClient<AppRouter>({ links: [httpLink({ url: `${platform.url}/trpc`, headers: { authorization: `Bearer ${token}` } })] });
    const ids: string[] = [];
    for (const name of ["web-1", "web-2"]) {
      const { instance, actionId } = await api.compute.instances.create.mutate({ name, planId: "nano", imageId: "busybox" });
      await eventually(
        () => api.compute.actions.get.query({ id: actionId }),
        (a) => a.status === "succeeded",
        { timeoutMs: 60_000, what: `${name} to run` },
      );
      ids.push(instance.id);
    }
    const containers = () => dockerd.docker.listContainers({ all: true, filters: { label: [`sahary.namespace=${testRun.dockerNamespace}`] } });
    expect((await containers()).map((c) => c.State)).toEqual(["running", "running"]);
    // Let metering account some running time first.
    await Bun.sleep(2000);

    const stoppedAt = Date.now();
    await dockerd.stop();
    await Bun.sleep(4000);
    await dockerd.start();
    const back = stopwatch();
    const backAt = Date.now();

    const rows = await eventually(
      () => services.db.select().from(instances).where(inArray(instances.id, ids)),
      (list) => list.every((i) => i.state !== "running"),
      { timeoutMs: 60_000, intervalMs: 200, what: "both instances to be reconciled" },
    );
    const reconciledMs = back();
    expect(platform.alive()).toBe(true);

    // One container per instance, as the engine reports it, and the instance says the same. The engine restarts
    // the containers its own shutdown ended (their on-failure policy); the reconciler stops them again.
    const after = await eventually(containers, (list) => list.length === 2 && list.every((c) => c.State === "exited"), {
      timeoutMs: 30_000,
      intervalMs: 200,
      what: "the engine's own restarts to be stopped",
    });
    expect(after).toHaveLength(2);
    for (const row of rows) {
      const mine = after.filter((c) => c.Labels["sahary.instance"] === row.id);
      expect(mine).toHaveLength(1);
      expect(mine[0]!.State).toBe("exited");
      expect(["error", "stopped"]).toContain(row.state);
    }

    // Billing: running until the container's own finish (when the engine went down), not until the platform
    // noticed. (The container's FinishedAt is now that of the reconciler's stop after the engine restarted it.)
    for (const id of ids) {
      const [started] = await services.db
        .select({ at: instanceStateHistory.at })
        .from(instanceStateHistory)
        .where(and(eq(instanceStateHistory.instanceId, id), eq(instanceStateHistory.toState, "running")));
      const ended = await services.db
        .select({ at: instanceStateHistory.at })
        .from(instanceStateHistory)
        .where(and(eq(instanceStateHistory.instanceId, id), eq(instanceStateHistory.fromState, "running")));
      // One end, and the engine's own restart never counted as running again.
      expect(ended).toHaveLength(1);
      const finishedAt = ended[0]!.at.getTime();
      expect(finishedAt).toBeGreaterThanOrEqual(stoppedAt - 50);
      expect(finishedAt).toBeLessThan(Math.min(backAt, stoppedAt + 6000));
      await eventually(
        () => services.db.select().from(meterCursors).where(eq(meterCursors.instanceId, id)),
        ([cursor]) => !!cursor && cursor.meteredUntil.getTime() > Date.now() - 8000 && cursor.state !== "running",
        { timeoutMs: 30_000, intervalMs: 250, what: "metering to pass the reconciliation" },
      );
      const [billed] = await services.db
        .select({ ms: sql<number>`coalesce(sum(${usageRecords.runningMs}), 0)::bigint`.mapWith(Number) })
        .from(usageRecords)
        .where(eq(usageRecords.instanceId, id));
      const ran = finishedAt - started!.at.getTime();
      expect(Math.abs(billed!.ms - ran)).toBeLessThan(1000);
      // The seconds the engine was down (and the time until the platform noticed) are not in it.
      expect(billed!.ms).toBeLessThan(backAt - started!.at.getTime() - 3500);
    }

    // The instances work again from where the platform put them.
    const { actionId } = await api.compute.instances.start.mutate({ id: ids[0]! });
    await eventually(
      () => api.compute.actions.get.query({ id: actionId }),
      (a) => a.status === "succeeded",
      { timeoutMs: 60_000, what: "the restart" },
    );
    expect((await containers()).filter((c) => c.State === "running")).toHaveLength(1);
    expect(await containers()).toHaveLength(2);
    recordRecovery("Docker engine restarted with 2 running instances", { "engine down for": backAt - stoppedAt, "both instances reconciled after the engine was back": reconciledMs });
  }, 180_000);
});
