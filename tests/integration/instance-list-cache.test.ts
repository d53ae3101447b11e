import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eq, sql } from "drizzle-orm";
import { hosts, instances } from "../../db/schema";
import { systemActor } from "../../server/auth/actor";
import { createInstance } from "../../server/compute/create";
import { syncHosts } from "../../server/compute/hosts";
import { startApiProcess, type ApiProcess } from "../harness/process";
import { eventually, startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

/**
 * The instance-list cache (server/compute/list-cache.ts) across real API
 * processes: each process answers a customer's list from memory once it has
 * read it, and a change to the customer's instances — made through another
 * process, by a worker, or straight in the database — is in every process's
 * next answer. No lifecycle worker runs here: instances stay as written.
 */

let app: TestServer;
let a: ApiProcess;
let b: ApiProcess;

beforeAll(async () => {
  app = await startTestServer({ workers: false });
  await syncHosts(app.services);
  [a, b] = await Promise.all([startApiProcess(), startApiProcess()]);
});
afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await app?.close();
});

const names = async (api: ApiProcess, token: string) => (await api.client({ token }).compute.instances.list.query({})).items.map((i) => i.name).sort();
const statesOf = async (api: ApiProcess, token: string) => (await api.client({ token }).compute.instances.list.query({})).items.map((i) => i.state);

/** An instance written by the platform itself, as a worker would (no API process involved). */
const seed = (ownerId: string, name: string) => createInstance(app.services, { actor: systemActor("test"), ownerId }, { name, planId: "nano", imageId: "busybox" });

describe("a change made through one API process is in the other's very next list", () => {
  test("create, rename-free churn over five rounds: each new instance is listed by both processes at once", async () => {
    const { token } = await createUserWithSession(app.services);
    expect(await names(a, token)).toEqual([]);
    expect(await names(b, token)).toEqual([]);
    const made: string[] = [];
    for (let round = 0; round < 5; round++) {
      // Both processes hold the list in memory now (the same answer twice in a row from each).
      expect(await names(b, token)).toEqual([...made].sort());
      await a.client({ token }).compute.instances.create.mutate({ name: `web-${round}`, planId: "nano", imageId: "busybox" });
      made.push(`web-${round}`);
      expect(await names(b, token)).toEqual([...made].sort());
      expect(await names(a, token)).toEqual([...made].sort());
    }
  });

  test("a delete requested through one process shows as deleting in the other's next list", async () => {
    const { token } = await createUserWithSession(app.services);
    const { instance } = await a.client({ token }).compute.instances.create.mutate({ name: "gone", planId: "nano", imageId: "busybox" });
    expect(await statesOf(b, token)).toEqual(["pending"]);
    await a.client({ token }).compute.instances.delete.mutate({ id: instance.id });
    expect(await statesOf(b, token)).toEqual(["deleting"]);
  });
});

describe("a change made outside the API processes", () => {
  test("a worker's state change, or psql's, is in every process's list once its message is handled", async () => {
    const { user, token } = await createUserWithSession(app.services);
    const { instance } = await seed(user.id, "batch");
    expect(await statesOf(a, token)).toEqual(["pending"]);
    expect(await statesOf(b, token)).toEqual(["pending"]);
    await app.services.db.update(instances).set({ state: "running" }).where(eq(instances.id, instance.id));
    // Every subscribed process has handled everything committed before this.
    await app.services.changes.settle();
    expect(await statesOf(a, token)).toEqual(["running"]);
    expect(await statesOf(b, token)).toEqual(["running"]);

    // Without waiting for anyone: the message arrives a moment after the commit.
    await app.services.db.execute(sql`update instances set state = 'stopped' where id = ${instance.id}`);
    for (const api of [a, b]) {
      await eventually(
        () => statesOf(api, token),
        (states) => states[0] === "stopped",
        { timeoutMs: 2000, intervalMs: 5, what: "the stopped state in the list" },
      );
    }
  });

  test("one owner's change leaves the others' lists in memory; a host going offline reaches every list", async () => {
    const first = await createUserWithSession(app.services);
    const second = await createUserWithSession(app.services);
    const { instance: one } = await seed(first.user.id, "one");
    await seed(second.user.id, "two");
    // This process's own cache (the test server answers lists too).
    const lists = app.services.instanceLists;
    const inProcess = (token: string) => app.client({ token }).compute.instances.list.query({});
    await inProcess(first.token);
    await inProcess(second.token);
    const held = lists.size();
    await seed(second.user.id, "three");
    await app.services.changes.settle();
    expect(lists.size()).toBe(held - 1);
    expect((await inProcess(second.token)).items.map((i) => i.name).sort()).toEqual(["three", "two"]);

    // The instance's own host (other files may have left more, offline ones).
    const [host] = await app.services.db.select().from(hosts).where(eq(hosts.id, one.hostId));
    expect(host!.status).toBe("active");
    try {
      await app.services.db.update(hosts).set({ status: "offline" }).where(eq(hosts.id, host!.id));
      await app.services.changes.settle();
      expect(lists.size()).toBe(0);
      for (const api of [a, b]) expect(await statesOf(api, first.token)).toEqual(["unknown"]);
    } finally {
      await app.services.db.update(hosts).set({ status: "active" }).where(eq(hosts.id, host!.id));
      await app.services.changes.settle();
    }
    for (const api of [a, b]) expect(await statesOf(api, first.token)).toEqual(["pending"]);
  });

  test("while a process has lost the channel it reads from the database, and forgets everything when it is back", async () => {
    const { user, token } = await createUserWithSession(app.services);
    const { instance } = await seed(user.id, "steady");
    expect(await statesOf(b, token)).toEqual(["pending"]);
    const listening = async () =>
      (await app.services.db.execute(sql`select count(*)::int as n from pg_stat_activity where datname = current_database() and application_name = 'sahary-listen'`)) as unknown as Array<{
        n: number;
      }>;
    const before = (await listening())[0]!.n;
    await app.services.db.execute(sql`select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and application_name = 'sahary-listen'`);
    // Written while nobody listens: no process can hear of it.
    await app.services.db.update(instances).set({ state: "running" }).where(eq(instances.id, instance.id));
    await eventually(
      async () => (await listening())[0]!.n,
      (n) => n === before,
      { what: "every process to listen again" },
    );
    expect(await statesOf(a, token)).toEqual(["running"]);
    expect(await statesOf(b, token)).toEqual(["running"]);
  });
});
