import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq } from "drizzle-orm";
import { invoices } from "../../db/schema";
import type { Scope } from "../../server/auth/actor";
import { runInvoicing } from "../../server/billing/invoicing";
import { appRouter } from "../../server/router";
import { createCallerFactory } from "../../server/trpc";
import { seedInstance, seedUsage } from "../harness/billing";
import { expectAppError } from "../harness/expect";
import { startTestServer, type TestServer } from "../harness/server";
import { startStripeStandIn, type StripeStandIn } from "../harness/stripe";
import { createUserWithSession } from "../harness/users";

// Who may call each billing procedure and route, and what they see of others' data.
let app: TestServer;
let stripe: StripeStandIn;
let owner: Awaited<ReturnType<typeof createUserWithSession>>;
let invoiceId: string;
let instanceId: string;

beforeAll(async () => {
  stripe = await startStripeStandIn();
  app = await startTestServer({ env: stripe.env });
  owner = await createUserWithSession(app.services);
  const instance = await seedInstance(app.services, owner.user.id, { priceHourlyMinor: 50, priceMonthlyMinor: 10_000 });
  instanceId = instance.id;
  await seedUsage(app.services, instance, [{ hour: new Date("2021-05-03T10:00:00Z"), runningMs: 3_600_000 }]);
  await runInvoicing(app.services, { period: "2021-05" });
  const [invoice] = await app.services.db
    .select()
    .from(invoices)
    .where(and(eq(invoices.userId, owner.user.id), eq(invoices.period, "2021-05")));
  invoiceId = invoice!.id;
});
afterAll(async () => {
  await app.close();
  await stripe.close();
});

const pdf = (id: string, headers: Record<string, string> = {}) => fetch(`${app.url}/billing/invoices/${id}/pdf`, { headers });
const appCodeOf = async (response: Response) => ((await response.json()) as { error: { data: { appCode: string } } }).error.data.appCode;

describe("ownership", () => {
  test("another customer gets NOT_FOUND for my invoice from every procedure and the PDF route, and sees none of my data", async () => {
    const other = await createUserWithSession(app.services);
    const api = app.client({ token: other.token });
    await expectAppError(api.billing.invoices.get.query({ id: invoiceId }), "NOT_FOUND");
    await expectAppError(api.billing.invoices.pay.mutate({ id: invoiceId }), "NOT_FOUND");
    await expectAppError(api.billing.usage.query({ instanceId }), "NOT_FOUND");
    expect((await api.billing.invoices.list.query()).items).toEqual([]);
    expect((await api.billing.payments.list.query()).items).toEqual([]);
    expect((await api.billing.usage.query({ from: "2021-05-01T00:00:00Z", to: "2021-06-01T00:00:00Z" })).instances).toEqual([]);
    expect((await api.billing.estimate.query()).soFar.lines).toEqual([]);

    const response = await pdf(invoiceId, { authorization: `Bearer ${other.token}` });
    expect(response.status).toBe(404);
    expect(await appCodeOf(response)).toBe("NOT_FOUND");
    expect(response.headers.get("content-type")).toContain("application/json");

    // The owner is served.
    expect((await pdf(invoiceId, { authorization: `Bearer ${owner.token}` })).status).toBe(200);
    const mine = app.client({ token: owner.token });
    expect((await mine.billing.invoices.get.query({ id: invoiceId })).lines).toHaveLength(1);
    expect((await mine.billing.usage.query({ from: "2021-05-01T00:00:00Z", to: "2021-06-01T00:00:00Z" })).totals.runningSeconds).toBe(3600);
  });

  test("ids that are not invoices are NOT_FOUND; malformed input is a validation error", async () => {
    const api = app.client({ token: owner.token });
    await expectAppError(api.billing.invoices.get.query({ id: crypto.randomUUID() }), "NOT_FOUND");
    await expectAppError(api.billing.invoices.get.query({ id: "INV-000001" }), "VALIDATION_FAILED");
    await expectAppError(api.billing.usage.query({ from: "yesterday" }), "VALIDATION_FAILED");
    await expectAppError(api.billing.usage.query({ from: "2021-06-01T00:00:00Z", to: "2021-05-01T00:00:00Z" }), "VALIDATION_FAILED");
    await expectAppError(api.billing.invoices.list.query({ limit: 1000 }), "VALIDATION_FAILED");
    await expectAppError(api.billing.invoices.list.query({ cursor: "not-a-cursor" }), "VALIDATION_FAILED");
    expect((await pdf(crypto.randomUUID(), { authorization: `Bearer ${owner.token}` })).status).toBe(404);
    expect((await pdf("..%2f..%2fetc", { authorization: `Bearer ${owner.token}` })).status).toBe(404);
  });
});

describe("who may call billing", () => {
  test("an anonymous caller is refused by every procedure and the PDF route", async () => {
    const api = app.client();
    await expectAppError(api.billing.pricing.query(), "UNAUTHENTICATED");
    await expectAppError(api.billing.usage.query(), "UNAUTHENTICATED");
    await expectAppError(api.billing.estimate.query(), "UNAUTHENTICATED");
    await expectAppError(api.billing.invoices.list.query(), "UNAUTHENTICATED");
    await expectAppError(api.billing.invoices.get.query({ id: invoiceId }), "UNAUTHENTICATED");
    await expectAppError(api.billing.invoices.pay.mutate({ id: invoiceId }), "UNAUTHENTICATED");
    await expectAppError(api.billing.payments.list.query(), "UNAUTHENTICATED");
    const response = await pdf(invoiceId);
    expect(response.status).toBe(401);
    expect(await appCodeOf(response)).toBe("UNAUTHENTICATED");
    expect((await pdf(invoiceId, { authorization: "Bearer not-a-session" })).status).toBe(401);
  });

  test("unverified and suspended accounts are refused", async () => {
    const unverified = await createUserWithSession(app.services, { status: "unverified" });
    await expectAppError(app.client({ token: unverified.token }).billing.invoices.list.query(), "EMAIL_NOT_VERIFIED");
    expect(await appCodeOf(await pdf(invoiceId, { authorization: `Bearer ${unverified.token}` }))).toBe("EMAIL_NOT_VERIFIED");
    const suspended = await createUserWithSession(app.services, { status: "suspended" });
    await expectAppError(app.client({ token: suspended.token }).billing.estimate.query(), "ACCOUNT_SUSPENDED");
  });

  describe("API keys", () => {
    const callerFor = (scopes: Scope[]) => {
      const user = owner.user;
      const actor = {
        kind: "apiKey" as const,
        apiKeyId: crypto.randomUUID(),
        scopes,
        user: { id: user.id, email: user.email, name: user.name, role: user.role, status: user.status, emailVerifiedAt: user.emailVerifiedAt },
      };
      return createCallerFactory(appRouter)({ ...app.services, actor, request: { requestId: crypto.randomUUID(), ip: null, userAgent: null }, resHeaders: new Headers() });
    };

    test("billing:read reads everything but may not pay", async () => {
      const caller = callerFor(["billing:read"]);
      expect((await caller.billing.pricing()).plans.length).toBeGreaterThan(0);
      expect((await caller.billing.invoices.list({})).items.map((i) => i.id)).toEqual([invoiceId]);
      expect((await caller.billing.invoices.get({ id: invoiceId })).id).toBe(invoiceId);
      expect((await caller.billing.usage({})).instances).toBeArray();
      expect((await caller.billing.estimate()).currency).toBe("USD");
      expect((await caller.billing.payments.list({})).items).toBeArray();
      await expect(caller.billing.invoices.pay({ id: invoiceId })).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });
    });

    test("billing:write pays but does not read", async () => {
      const caller = callerFor(["billing:write"]);
      const started = await caller.billing.invoices.pay({ id: invoiceId });
      expect(started.amountMinor).toBe(50);
      await expect(caller.billing.invoices.get({ id: invoiceId })).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });
      await expect(caller.billing.payments.list({})).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });
    });

    test("a key without billing scopes is refused by every billing procedure", async () => {
      const caller = callerFor(["compute:read", "compute:write"]);
      for (const call of [
        () => caller.billing.pricing(),
        () => caller.billing.usage({}),
        () => caller.billing.estimate(),
        () => caller.billing.invoices.list({}),
        () => caller.billing.invoices.get({ id: invoiceId }),
        () => caller.billing.invoices.pay({ id: invoiceId }),
        () => caller.billing.payments.list({}),
      ]) {
        await expect(call()).rejects.toMatchObject({ appCode: "INSUFFICIENT_SCOPE" });
      }
    });
  });
});

describe("pricing", () => {
  test("lists the plans with their prices and the rules in force", async () => {
    const pricing = await app.client({ token: owner.token }).billing.pricing.query();
    expect(pricing).toMatchObject({ currency: "USD", taxRatePercent: 0, interruptibleDiscountPercent: 40, egressPricePerGbMinor: 1, billableStates: ["running", "paused"] });
    const nano = pricing.plans.find((p) => p.slug === "nano")!;
    expect(nano).toMatchObject({ priceHourlyMinor: 1, priceMonthlyMinor: 400, interruptibleHourlyMinor: 1 });
    expect(pricing.rounding).toContain("half up");
  });

  test("invoices page newest first with a cursor", async () => {
    const user = await createUserWithSession(app.services);
    const instance = await seedInstance(app.services, user.user.id, { priceHourlyMinor: 5 });
    for (const period of ["2021-01", "2021-02", "2021-03"]) {
      await seedUsage(app.services, instance, [{ hour: new Date(`${period}-05T00:00:00Z`), runningMs: 3_600_000 }]);
      await runInvoicing(app.services, { period });
    }
    const api = app.client({ token: user.token });
    const first = await api.billing.invoices.list.query({ limit: 2 });
    expect(first.items.map((i) => i.period)).toEqual(["2021-03", "2021-02"]);
    const second = await api.billing.invoices.list.query({ limit: 2, cursor: first.nextCursor! });
    expect(second.items.map((i) => i.period)).toEqual(["2021-01"]);
    expect(second.nextCursor).toBeNull();
  });
});
