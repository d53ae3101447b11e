import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { asc, eq } from "drizzle-orm";
import { outboxEvents } from "../../db/schema";
import { syncHosts } from "../../server/compute/hosts";
import { reconcileInstance } from "../../server/compute/reconcile";
import { lifecycleProcessor } from "../../workers/lifecycle";
import { notifyProcessor } from "../../workers/notify";
import { actionDone } from "../harness/compute";
import { testRun } from "../harness/env";
import { eventually, startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// Compute writes its customer events in the transaction of each state change,
// on real containers: settled states only, and a failure as its own event.

let app: TestServer;
beforeAll(async () => {
  app = await startTestServer({ workers: [lifecycleProcessor, notifyProcessor], env: { NOTIFY_POLL_MS: "100" } });
  await syncHosts(app.services);
});
afterAll(() => app.close());

const eventsOf = (userId: string) => app.services.db.select().from(outboxEvents).where(eq(outboxEvents.userId, userId)).orderBy(asc(outboxEvents.seq));

describe("instance events", () => {
  test("create, stop and a container dying behind the platform's back give running, stopped, error and instance.failed; in-between states give none", async () => {
    const { user, token } = await createUserWithSession(app.services);
    const api = app.client({ token });
    const created = await api.compute.instances.create.mutate({ name: "web", planId: "nano", imageId: "busybox" });
    expect((await actionDone(api, created.actionId)).status).toBe("succeeded");
    const id = created.instance.id;
    const stopped = await api.compute.instances.stop.mutate({ id });
    expect((await actionDone(api, stopped.actionId)).status).toBe("succeeded");
    const started = await api.compute.instances.start.mutate({ id });
    expect((await actionDone(api, started.actionId)).status).toBe("succeeded");

    // Killed outside the platform: the reconciler records the error, with the reason.
    await app.services.docker.getContainer(`${testRun.dockerNamespace}-${id}`).kill({ signal: "SIGKILL" });
    await eventually(
      async () => {
        await reconcileInstance(app.services, id);
        return (await api.compute.instances.get.query({ id })).state;
      },
      (s) => s === "error",
      { what: "the error to be recorded" },
    );

    const events = (await eventsOf(user.id)).map((e) => [e.type, e.data.from, e.data.to ?? null]);
    expect(events).toEqual([
      ["instance.state_changed", "provisioning", "running"],
      ["instance.state_changed", "stopping", "stopped"],
      ["instance.state_changed", "provisioning", "running"],
      ["instance.state_changed", "running", "error"],
      ["instance.failed", "running", null],
    ]);
    const failed = (await eventsOf(user.id)).at(-1)!;
    expect(failed.data).toMatchObject({ instanceId: id, name: "web", reason: "container died (exit code 137)" });

    // Failures reach the notification centre by default; routine state changes go to webhooks only.
    const centre = await eventually(
      () => api.notifications.list.query(),
      (list) => list.items.length >= 1,
      { what: "the failure notification" },
    );
    expect(centre.items.map((n) => n.type)).toEqual(["instance.failed"]);
    expect(centre.items[0]!.title).toBe("web failed");

    const deleted = await api.compute.instances.delete.mutate({ id });
    expect((await actionDone(api, deleted.actionId)).status).toBe("succeeded");
    expect((await eventsOf(user.id)).at(-1)!.data).toMatchObject({ from: "deleting", to: "deleted" });
  }, 60_000);
});
