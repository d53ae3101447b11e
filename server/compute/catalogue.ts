import { and, asc, eq } from "drizzle-orm";
import type { Database } from "../../db/client";
import { images, type instancePlans, plans } from "../../db/schema";
import { AppError } from "../errors";

type NewPlan = typeof plans.$inferInsert;
type NewImage = typeof images.$inferInsert;

/**
 * The default catalogue. Prices are hourly, capped at the monthly price, so
 * both stay whole minor units (USD cents).
 */
const DEFAULT_PLANS: NewPlan[] = [
  { slug: "nano", name: "Nano", cpuMillis: 250, memoryMb: 256, diskGb: 5, priceHourlyMinor: 1, priceMonthlyMinor: 400, currency: "USD", sortOrder: 10 },
  { slug: "micro", name: "Micro", cpuMillis: 500, memoryMb: 512, diskGb: 10, priceHourlyMinor: 2, priceMonthlyMinor: 800, currency: "USD", sortOrder: 20 },
  { slug: "small", name: "Small", cpuMillis: 1000, memoryMb: 1024, diskGb: 25, priceHourlyMinor: 3, priceMonthlyMinor: 1600, currency: "USD", sortOrder: 30 },
  { slug: "medium", name: "Medium", cpuMillis: 2000, memoryMb: 4096, diskGb: 50, priceHourlyMinor: 6, priceMonthlyMinor: 3200, currency: "USD", sortOrder: 40 },
  { slug: "large", name: "Large", cpuMillis: 4000, memoryMb: 8192, diskGb: 100, priceHourlyMinor: 12, priceMonthlyMinor: 6400, currency: "USD", sortOrder: 50 },
];

const DEFAULT_IMAGES: NewImage[] = [
  {
    slug: "busybox",
    name: "BusyBox 1.35",
    reference: "sahary/busybox:1.35",
    description: "BusyBox shell and tools; serves /www over HTTP on port 8080 by default.",
    httpPort: 8080,
    sortOrder: 10,
  },
  {
    slug: "nginx",
    name: "nginx 1.27 (Alpine)",
    reference: "nginx:1.27-alpine",
    description: "nginx web server on port 80.",
    // Run as the non-root instance user: it binds :80 without a capability (unprivileged ports start at 0 in its
    // network namespace) and writes its cache and pid file to tmpfs; "user nginx" is then ignored.
    writablePaths: ["/var/cache/nginx", "/var/run"],
    httpPort: 80,
    sortOrder: 20,
  },
  {
    slug: "redis",
    name: "Redis 7 (Alpine)",
    reference: "redis:7-alpine",
    description: "Redis on port 6379.",
    // As the non-root instance user its entrypoint skips the chown and the user switch; /data is its VOLUME (tmpfs unless a volume is mounted there).
    // Not HTTP: instances of it get no URL.
    httpPort: null,
    sortOrder: 30,
  },
];

/**
 * Inserts the default plans and images that are missing, by slug. Runs at
 * every start-up after migrations; concurrent starts and existing rows (which
 * an operator may have edited) are left alone.
 */
export async function seedCatalogue(db: Database): Promise<void> {
  await db.insert(plans).values(DEFAULT_PLANS).onConflictDoNothing({ target: plans.slug });
  await db.insert(images).values(DEFAULT_IMAGES).onConflictDoNothing({ target: images.slug });
}

export type Plan = typeof plans.$inferSelect;
export type Image = typeof images.$inferSelect;

export async function listPlans(db: Database) {
  const rows = await db.select().from(plans).where(eq(plans.active, true)).orderBy(asc(plans.sortOrder), asc(plans.slug));
  return rows.map(planView);
}

export async function listImages(db: Database) {
  const rows = await db.select().from(images).where(eq(images.active, true)).orderBy(asc(images.sortOrder), asc(images.slug));
  return rows.map(imageView);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A plan by id or slug, if it is offered. */
export async function findPlan(db: Database, idOrSlug: string): Promise<Plan> {
  const [plan] = await db
    .select()
    .from(plans)
    .where(and(UUID.test(idOrSlug) ? eq(plans.id, idOrSlug) : eq(plans.slug, idOrSlug), eq(plans.active, true)));
  if (!plan) throw new AppError("PLAN_NOT_FOUND", `No plan ${idOrSlug}`, { details: { planId: idOrSlug } });
  return plan;
}

/** An image by id or slug, if it is offered. */
export async function findImage(db: Database, idOrSlug: string): Promise<Image> {
  const [image] = await db
    .select()
    .from(images)
    .where(and(UUID.test(idOrSlug) ? eq(images.id, idOrSlug) : eq(images.slug, idOrSlug), eq(images.active, true)));
  if (!image) throw new AppError("IMAGE_NOT_FOUND", `No image ${idOrSlug}`, { details: { imageId: idOrSlug } });
  return image;
}

export function planView(plan: Plan) {
  return {
    id: plan.id,
    slug: plan.slug,
    name: plan.name,
    vcpus: plan.cpuMillis / 1000,
    memoryMb: plan.memoryMb,
    diskGb: plan.diskGb,
    priceHourlyMinor: plan.priceHourlyMinor,
    priceMonthlyMinor: plan.priceMonthlyMinor,
    currency: plan.currency,
  };
}

export function imageView(image: Image) {
  return { id: image.id, slug: image.slug, name: image.name, reference: image.reference, description: image.description, httpPort: image.httpPort, writablePaths: image.writablePaths };
}

/** What an instance takes over from the plan it is sold on (and keeps, whatever later becomes of the plan): resources and prices. */
export function planTerms(plan: Plan) {
  const { cpuMillis, memoryMb, diskGb, priceHourlyMinor, priceMonthlyMinor, currency } = plan;
  return { cpuMillis, memoryMb, diskGb, priceHourlyMinor, priceMonthlyMinor, currency };
}

/**
 * Entry `seq` of an instance's plan history (`instance_plans`): the plan's
 * resources and prices as sold, in force from `fromAt` (default: the insert's
 * time). Invoices price each entry's usage at its own prices.
 */
export function planSegment(instanceId: string, seq: number, plan: Plan, fromAt?: Date): typeof instancePlans.$inferInsert {
  return { instanceId, seq, planId: plan.id, planSlug: plan.slug, ...planTerms(plan), ...(fromAt ? { fromAt } : {}) };
}
