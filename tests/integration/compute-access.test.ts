import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq, inArray, ne } from "drizzle-orm";
import { instanceActions, instances, plans } from "../../db/schema";
import type { Scope } from "../../server/auth/actor";
import { seedCatalogue } from "../../server/compute/catalogue";
import { hostUsage, syncHosts } from "../../server/compute/hosts";
import { setUserQuota } from "../../server/compute/quotas";
import { appRouter } from "../../server/router";
import { createCallerFactory } from "../../server/trpc";
import { expectAppError } from "../harness/expect";
import { startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// No workers here: these tests are about what the API accepts and refuses, which it decides without Docker.
let app: TestServer;
type Api = ReturnType<TestServer["client"]>;

const users: string[] = [];

beforeAll(async () => {
  app = await startTestServer();
  await syncHosts(app.services);
});

// Nothing here reaches a worker; withdraw the queued work so later files' workers do not build it.
afterAll(async () => {
  await app.services.queues.queue("lifecycle").obliterate({ force: true });
  if (users.length) {
    await app.services.db.update(instanceActions).set({ status: "failed", error: "test cleanup", finishedAt: new Date() }).where(inArray(instanceActions.userId, users));
    await app.services.db.update(instances).set({ state: "deleted" }).where(inArray(instances.userId, users));
  }
  await app.close();
});

async function customer() {
  const session = await createUserWithSession(app.services);
  users.push(session.user.id);
  return { ...session, api: app.client({ token: session.token }) };
}

const create = (api: Api, name: string, extra: Record<string, unknown> = {}) =>
  api.compute.instances.create.mutate({ name, planId: "nano", imageId: "busybox", ...extra } as Parameters<Api["compute"]["instances"]["create"]["mutate"]>[0]);

describe("ownership", () => {
  test("another user gets NOT_FOUND from every procedure for my instance and my action", async () => {
    const me = await customer();
    const other = await customer();
    const { instance, actionId } = await create(me.api, "mine");
    const id = instance.id;

    await expectAppError(other.api.compute.instances.get.query({ id }), "NOT_FOUND");
    await expectAppError(other.api.compute.instances.start.mutate({ id }), "NOT_FOUND");
    await expectAppError(other.api.compute.instances.stop.mutate({ id }), "NOT_FOUND");
    await expectAppError(other.api.compute.instances.restart.mutate({ id }), "NOT_FOUND");
    await expectAppError(other.api.compute.instances.delete.mutate({ id }), "NOT_FOUND");
    await expectAppError(other.api.compute.instances.stats.query({ id }), "NOT_FOUND");
    await expectAppError(other.api.compute.instances.logs.query({ id }), "NOT_FOUND");
    await expectAppError(other.api.compute.actions.get.query({ id: actionId }), "NOT_FOUND");
    expect((await other.api.compute.instances.list.query()).items).toHaveLength(0);

    // Unchanged by the attempts.
    expect((await me.api.compute.instances.get.query({ id })).state).toBe("pending");
  });

  test("an id that does not exist is NOT_FOUND too, and a malformed id is a validation error", async () => {
    const me = await customer();
    await expectAppError(me.api.compute.instances.get.query({ id: crypto.randomUUID() }), "NOT_FOUND");
    await expectAppError(me.api.compute.actions.get.query({ id: crypto.randomUUID() }), "NOT_FOUND");
    await expectAppError(me.api.compute.instances.get.query({ id: "../etc" }), "VALIDATION_FAILED");
  });
});

describe("who may call compute", () => {
  test("an anonymous caller is refused everywhere", async () => {
    const anonymous = app.client();
    await expectAppError(anonymous.compute.plans.list.query(), "UNAUTHENTICATED");
    await expectAppError(anonymous.compute.instances.list.query(), "UNAUTHENTICATED");
    await expectAppError(create(anonymous, "nope"), "UNAUTHENTICATED");
  });

  test("an unverified or suspended account is refused", async () => {
    const unverified = await createUserWithSession(app.services, { status: "unverified" });
    await expectAppError(create(app.client({ token: unverified.token }), "nope"), "EMAIL_NOT_VERIFIED");
    const suspended = await createUserWithSession(app.services, { status: "suspended" });
    await expectAppError(app.client({ token: suspended.token }).compute.instances.list.query(), "ACCOUNT_SUSPENDED");
  });

  describe("API keys", () => {
    const callerFor = async (scopes: Scope[]) => {
      const { user } = await createUserWithSession(app.services);
      users.push(user.id);
      const actor = {
        kind: "apiKey" as const,
        apiKeyId: crypto.randomUUID(),
        scopes,
        user: { id: user.id, email: user.email, name: user.name, role: user.role, status: user.status, emailVerifiedAt: user.emailVerifiedAt },
      };
      const ctx = { ...app.services, actor, request: { requestId: crypto.randomUUID(), ip: null, userAgent: null }, resHeaders: new Headers() };
      return createCallerFactory(appRouter)(ctx);
    };

    test("compute:read reads but may not create, stop or delete", async () => {
      const caller = await callerFor(["compute:read"]);
      expect((await caller.compute.plans.list()).length).toBeGreaterThan(0);
      expect((await caller.compute.instances.list({})).items).toEqual([]);
      await expect(caller.compute.instances.create({ name: "k", planId: "nano", imageId: "busybox" })).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });
      await expect(caller.compute.instances.stop({ id: crypto.randomUUID() })).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });
      await expect(caller.compute.instances.delete({ id: crypto.randomUUID() })).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });
    });

    test("compute:write alone may create but not read", async () => {
      const caller = await callerFor(["compute:write"]);
      const created = await caller.compute.instances.create({ name: "by-key", planId: "nano", imageId: "busybox" });
      expect(created.instance.state).toBe("pending");
      await expect(caller.compute.instances.get({ id: created.instance.id })).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });
      const [action] = await app.services.db.select().from(instanceActions).where(eq(instanceActions.id, created.actionId));
      expect(action!.actorType).toBe("apiKey");
    });

    test("a key without compute scopes is refused by every compute procedure", async () => {
      const caller = await callerFor(["billing:read"]);
      await expect(caller.compute.plans.list()).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });
      await expect(caller.compute.instances.list({})).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });
      await expect(caller.compute.actions.get({ id: crypto.randomUUID() })).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });
    });
  });
});

describe("what create refuses", () => {
  test("an unknown plan or image gets its own code", async () => {
    const { api } = await customer();
    await expectAppError(create(api, "a", { planId: "galactic" }), "PLAN_NOT_FOUND");
    await expectAppError(create(api, "a", { planId: crypto.randomUUID() }), "PLAN_NOT_FOUND");
    await expectAppError(create(api, "a", { imageId: "windows-95" }), "IMAGE_NOT_FOUND");
    expect((await api.compute.instances.list.query()).items).toHaveLength(0);
  });

  test("bad names, priorities and environments are validation errors", async () => {
    const { api } = await customer();
    await expectAppError(create(api, "Not A Name"), "VALIDATION_FAILED");
    await expectAppError(create(api, "ok", { priority: "urgent" }), "VALIDATION_FAILED");
    await expectAppError(create(api, "ok", { env: { "BAD-KEY": "x" } }), "VALIDATION_FAILED");
  });

  test("a second live instance with the same name is a conflict", async () => {
    const { api } = await customer();
    await create(api, "twin");
    await expectAppError(create(api, "twin"), "CONFLICT");
  });

  test("the instance quota: the request past the limit is refused, naming the limit", async () => {
    const { api, user } = await customer();
    await setUserQuota(app.services.db, user.id, { maxInstances: 2 });
    await create(api, "q1");
    await create(api, "q2");
    const error = await expectAppError(create(api, "q3"), "QUOTA_EXCEEDED");
    expect(error.data.details).toMatchObject({ resource: "instances", limit: 2, used: 2 });
  });

  test("the memory and vCPU quotas count the plans of live instances", async () => {
    const { api, user } = await customer();
    await setUserQuota(app.services.db, user.id, { maxMemoryMb: 600 });
    await create(api, "m1", { planId: "micro" });
    const memory = await expectAppError(create(api, "m2", { planId: "nano" }), "QUOTA_EXCEEDED");
    expect(memory.data.details).toMatchObject({ resource: "memoryMb", limit: 600, used: 512 });

    await setUserQuota(app.services.db, user.id, { maxMemoryMb: null, maxCpuMillis: 600 });
    const cpu = await expectAppError(create(api, "m3", { planId: "micro" }), "QUOTA_EXCEEDED");
    expect(cpu.data.details).toMatchObject({ resource: "cpuMillis", limit: 600, used: 500 });
  });

  test("concurrent creates cannot race past the quota", async () => {
    const { api, user } = await customer();
    await setUserQuota(app.services.db, user.id, { maxInstances: 3 });
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => create(api, `race-${i}`)));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(3);
    for (const r of results) if (r.status === "rejected") expect((r.reason as any).data.appCode).toBe("QUOTA_EXCEEDED");
    const live = await app.services.db
      .select()
      .from(instances)
      .where(and(eq(instances.userId, user.id), ne(instances.state, "deleted")));
    expect(live).toHaveLength(3);
  });

  test("a host without room answers CAPACITY_EXHAUSTED", async () => {
    const { api, user } = await customer();
    await setUserQuota(app.services.db, user.id, { maxInstances: 1000, maxCpuMillis: 10_000_000, maxMemoryMb: 100_000_000 });
    const accepted: string[] = [];
    let refused: unknown;
    // Fill every active host with the largest plan; the platform must say no before it oversubscribes.
    for (let i = 0; i < 500 && !refused; i++) {
      try {
        accepted.push((await create(api, `big-${i}`, { planId: "large" })).instance.id);
      } catch (error) {
        refused = error;
      }
    }
    expect((refused as any)?.data?.appCode).toBe("CAPACITY_EXHAUSTED");
    // Whatever earlier files left running (the suite's order is random), no active host has room for the plan now.
    const [large] = await app.services.db.select().from(plans).where(eq(plans.slug, "large"));
    for (const { host, allocated } of await hostUsage(app.services.db)) {
      if (host.status !== "active") continue;
      const room = host.cpuCapacityMillis - allocated.cpuMillis >= large!.cpuMillis && host.memoryCapacityMb - allocated.memoryMb >= large!.memoryMb;
      expect({ host: host.name, room }).toEqual({ host: host.name, room: false });
    }
    // Give the room back to the other tests in this file.
    await app.services.db.update(instanceActions).set({ status: "failed", finishedAt: new Date() }).where(inArray(instanceActions.instanceId, accepted));
    await app.services.db.update(instances).set({ state: "deleted" }).where(inArray(instances.id, accepted));
  });
});

describe("idempotency keys", () => {
  test("a repeated create with the same key returns the first instance and action", async () => {
    const { api } = await customer();
    const first = await create(api, "idem", { idempotencyKey: "create-idem-0001" });
    const again = await create(api, "idem", { idempotencyKey: "create-idem-0001" });
    expect(again.replayed).toBe(true);
    expect(again.instance.id).toBe(first.instance.id);
    expect(again.actionId).toBe(first.actionId);
    expect((await api.compute.instances.list.query()).items).toHaveLength(1);
  });

  test("concurrent requests with one key make one instance", async () => {
    const { api } = await customer();
    const results = await Promise.all(Array.from({ length: 5 }, () => create(api, "burst", { idempotencyKey: "create-burst-0001" })));
    expect(new Set(results.map((r) => r.instance.id)).size).toBe(1);
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
  });

  test("the same key with different parameters is refused", async () => {
    const { api } = await customer();
    await create(api, "idem", { idempotencyKey: "create-idem-0002" });
    await expectAppError(create(api, "idem", { planId: "micro", idempotencyKey: "create-idem-0002" }), "IDEMPOTENCY_KEY_REUSED");
  });

  test("keys are per user", async () => {
    const a = await customer();
    const b = await customer();
    const first = await create(a.api, "shared", { idempotencyKey: "create-shared-0001" });
    const second = await create(b.api, "shared", { idempotencyKey: "create-shared-0001" });
    expect(second.instance.id).not.toBe(first.instance.id);
    expect(second.replayed).toBe(false);
  });
});

describe("the state machine at the API", () => {
  test("actions that do not fit the state are refused with INVALID_TRANSITION", async () => {
    const { api } = await customer();
    const { instance } = await create(api, "fresh");
    await expectAppError(api.compute.instances.start.mutate({ id: instance.id }), "INVALID_TRANSITION");
    await expectAppError(api.compute.instances.stop.mutate({ id: instance.id }), "INVALID_TRANSITION");
    await expectAppError(api.compute.instances.restart.mutate({ id: instance.id }), "INVALID_TRANSITION");
  });

  test("deleting an instance whose create has not started cancels the create", async () => {
    const { api } = await customer();
    const created = await create(api, "short-lived");
    const deleted = await api.compute.instances.delete.mutate({ id: created.instance.id });
    expect(deleted.instance.state).toBe("deleting");
    const cancelled = await api.compute.actions.get.query({ id: created.actionId });
    expect(cancelled).toMatchObject({ status: "failed", error: "cancelled by a delete request" });
    await expectAppError(api.compute.instances.delete.mutate({ id: created.instance.id }), "INVALID_TRANSITION");
  });
});

describe("the catalogue seed", () => {
  test("runs at every start without duplicating rows or undoing an operator's edit", async () => {
    const [nano] = await app.services.db.select().from(plans).where(eq(plans.slug, "nano"));
    await app.services.db
      .update(plans)
      .set({ priceMonthlyMinor: nano!.priceMonthlyMinor + 1 })
      .where(eq(plans.id, nano!.id));
    try {
      await Promise.all([seedCatalogue(app.services.db), seedCatalogue(app.services.db)]);
      const rows = await app.services.db.select().from(plans).where(eq(plans.slug, "nano"));
      expect(rows).toHaveLength(1);
      expect(rows[0]!.priceMonthlyMinor).toBe(nano!.priceMonthlyMinor + 1);
    } finally {
      await app.services.db.update(plans).set({ priceMonthlyMinor: nano!.priceMonthlyMinor }).where(eq(plans.id, nano!.id));
    }
  });

  test("an instance keeps the price it was sold at when the plan's price changes", async () => {
    const { api } = await customer();
    const [micro] = await app.services.db.select().from(plans).where(eq(plans.slug, "micro"));
    const { instance } = await create(api, "priced", { planId: "micro" });
    await app.services.db
      .update(plans)
      .set({ priceHourlyMinor: micro!.priceHourlyMinor * 10 })
      .where(eq(plans.id, micro!.id));
    try {
      const after = await api.compute.instances.get.query({ id: instance.id });
      expect(after.priceHourlyMinor).toBe(micro!.priceHourlyMinor);
      expect(after.priceMonthlyMinor).toBe(micro!.priceMonthlyMinor);
    } finally {
      await app.services.db.update(plans).set({ priceHourlyMinor: micro!.priceHourlyMinor }).where(eq(plans.id, micro!.id));
    }
  });
});

describe("listing", () => {
  test("pages newest first with a cursor, and filters by state", async () => {
    const { api } = await customer();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await create(api, `page-${i}`)).instance.id);
    const first = await api.compute.instances.list.query({ limit: 2 });
    const second = await api.compute.instances.list.query({ limit: 2, cursor: first.nextCursor! });
    const third = await api.compute.instances.list.query({ limit: 2, cursor: second.nextCursor! });
    expect([...first.items, ...second.items, ...third.items].map((i) => i.id)).toEqual(ids.reverse());
    expect(third.nextCursor).toBeNull();
    expect((await api.compute.instances.list.query({ state: "running" })).items).toHaveLength(0);
    await expectAppError(api.compute.instances.list.query({ cursor: "garbage" }), "VALIDATION_FAILED");
  });
});
