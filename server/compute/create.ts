import { createHash } from "node:crypto";
import { and, eq, ne } from "drizzle-orm";
import { instanceActions, instancePlans, instances, instanceStateHistory } from "../../db/schema";
import { actorUserId } from "../auth/actor";
import { recordAudit } from "../audit";
import { assertPowerAdmits } from "../energy/restrictions";
import { AppError } from "../errors";
import { resolveAllowedImage } from "../registries/allowlist";
import { findImage, findPlan, planSegment, planTerms, type Image } from "./catalogue";
import { placeInstance } from "./hosts";
import { enqueueAction, type ComputeDeps, type Who } from "./instances";
import { assertWithinQuota, lockUserForCreate } from "./quotas";
import { assertNoOverdueInvoices } from "./standing";
import type { InstancePriority } from "./states";
import { instanceView } from "./views";
import { attachVolumes, planVolumes, type VolumeRequest } from "./volumes/service";

export type CreateInstanceInput = {
  name: string;
  planId: string;
  /** A catalogue image (id or slug), or … */
  imageId?: string | undefined;
  /** … a customer's own image from an allowed registry (`registry/repo:tag` or `…@sha256:…`). */
  image?: string | undefined;
  priority?: InstancePriority | undefined;
  env?: Record<string, string> | undefined;
  /** Replace the image's ENTRYPOINT and CMD (argv arrays, never run through a shell). */
  command?: string[] | undefined;
  args?: string[] | undefined;
  volumes?: VolumeRequest[] | undefined;
  idempotencyKey?: string | undefined;
  /** The port to serve at the instance's URL: absent for the catalogue image's (none for an own image), null for no URL. */
  httpPort?: number | null | undefined;
};

/**
 * Accepts a new instance: checks plan, image (the catalogue's, or an own
 * image from an allowed registry), that the power level admits its priority,
 * the owner's quota, its volumes and host capacity, then records the
 * instance, its first plan and state, its volumes, the create action and the
 * audit row in one transaction and enqueues the lifecycle job. Answers at
 * once; the client polls the action. A repeated `idempotencyKey` returns the
 * first instance and action (`replayed: true`).
 */
export async function createInstance(deps: ComputeDeps, who: Who & { ownerId: string }, input: CreateInstanceInput) {
  const { db, config } = deps;
  const userId = who.ownerId;
  const priority = input.priority ?? "standard";
  const env = input.env ?? {};
  if ((input.imageId === undefined) === (input.image === undefined)) {
    throw new AppError("VALIDATION_FAILED", "Give either imageId (a catalogue image) or image (your own image reference)", { details: { field: "image" } });
  }
  const requestHash = hashRequest({ ...input, priority, env });

  const result = await db
    .transaction(async (tx) => {
      await lockUserForCreate(tx, userId);

      if (input.idempotencyKey) {
        const [earlier] = await tx
          .select()
          .from(instances)
          .where(and(eq(instances.userId, userId), eq(instances.idempotencyKey, input.idempotencyKey)));
        if (earlier) {
          if (earlier.requestHash !== requestHash) {
            throw new AppError("IDEMPOTENCY_KEY_REUSED", "This idempotency key was used for a different request", { details: { instanceId: earlier.id } });
          }
          const [first] = await tx
            .select({ id: instanceActions.id })
            .from(instanceActions)
            .where(and(eq(instanceActions.instanceId, earlier.id), eq(instanceActions.kind, "create")));
          return { instance: earlier, actionId: first!.id, replayed: true };
        }
      }

      const plan = await findPlan(tx, input.planId);
      const catalogue = input.imageId !== undefined ? await findImage(tx, input.imageId) : null;
      const reference = catalogue ? catalogue.reference : (await resolveAllowedImage(tx, config, input.image!)).normalized;
      const httpPort = resolveHttpPort(catalogue, input.httpPort);
      await assertPowerAdmits(tx, priority);
      await assertNoOverdueInvoices(tx, config, userId);
      await assertWithinQuota(tx, config, userId, { instances: 1, cpuMillis: plan.cpuMillis, memoryMb: plan.memoryMb });
      const [sameName] = await tx
        .select({ id: instances.id })
        .from(instances)
        .where(and(eq(instances.userId, userId), eq(instances.name, input.name), ne(instances.state, "deleted")));
      if (sameName) throw new AppError("CONFLICT", `You already have an instance named ${input.name}`, { details: { instanceId: sameName.id } });
      const volumePlan = await planVolumes(tx, config, userId, input.volumes ?? [], plan.diskGb * 1024);
      const host = await placeInstance(tx, { cpuMillis: plan.cpuMillis, memoryMb: plan.memoryMb, volumeMb: volumePlan.volumeMb }, { hostId: volumePlan.hostId });

      const [instance] = await tx
        .insert(instances)
        .values({
          userId,
          hostId: host.id,
          name: input.name,
          planId: plan.id,
          imageId: catalogue?.id ?? null,
          imageReference: reference,
          command: input.command ?? null,
          args: input.args ?? null,
          ...planTerms(plan),
          httpPort,
          priority,
          env,
          state: "pending",
          stateReason: "created",
          idempotencyKey: input.idempotencyKey ?? null,
          requestHash,
        })
        .returning();
      await tx.insert(instancePlans).values(planSegment(instance!.id, 0, plan, instance!.createdAt));
      await attachVolumes(tx, config, instance!, host, volumePlan);
      const [action] = await tx
        .insert(instanceActions)
        .values({ instanceId: instance!.id, userId, kind: "create", reason: "requested", actorType: who.actor.kind, actorId: actorUserId(who.actor) })
        .returning({ id: instanceActions.id });
      await tx.insert(instanceStateHistory).values({
        instanceId: instance!.id,
        fromState: null,
        toState: "pending",
        reason: "created",
        actorType: who.actor.kind,
        actorId: actorUserId(who.actor),
        actionId: action!.id,
      });
      await recordAudit(tx, who, {
        action: "compute.instance.create",
        targetType: "instance",
        targetId: instance!.id,
        metadata: { actionId: action!.id, plan: plan.slug, image: reference, source: catalogue ? "catalogue" : "registry", hostId: host.id, volumes: (input.volumes ?? []).length },
      });
      return { instance: instance!, actionId: action!.id, replayed: false };
    })
    .catch((error: unknown) => {
      // Two live instances named alike whose ids start with the same 8 hex digits would share a host name.
      if (violates(error, "instances_live_host_label_key")) throw new AppError("CONFLICT", "Another instance holds this instance's host name; retry the request", { cause: error });
      throw error;
    });

  if (!result.replayed) await enqueueAction(deps, result.actionId);
  return { instance: instanceView(result.instance, config.ingress), actionId: result.actionId, replayed: result.replayed };
}

/**
 * The container port the instance's URL serves. A catalogue image serves on
 * the port it declares (the default; asking for another is refused, naming
 * the field); an own image serves where its request says, or has no URL.
 */
function resolveHttpPort(image: Image | null, requested: number | null | undefined): number | null {
  if (!image) return requested ?? null;
  if (requested === undefined) return image.httpPort;
  if (requested === null) return null;
  if (image.httpPort === null) {
    throw new AppError("HTTP_PORT_INVALID", `${image.reference} serves no HTTP, so its instances cannot have a URL; leave out httpPort`, { details: { field: "httpPort", imageHttpPort: null } });
  }
  if (requested !== image.httpPort) {
    throw new AppError("HTTP_PORT_INVALID", `${image.reference} serves HTTP on port ${image.httpPort}; catalogue images serve on the port they declare`, {
      details: { field: "httpPort", imageHttpPort: image.httpPort },
    });
  }
  return requested;
}

function violates(error: unknown, constraint: string): boolean {
  for (let e = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { code?: unknown }).code === "23505" && (e as { constraint_name?: unknown; constraint?: unknown }).constraint_name === constraint) return true;
    if ((e as { code?: unknown }).code === "23505" && (e as { constraint?: unknown }).constraint === constraint) return true;
  }
  return false;
}

function hashRequest(request: CreateInstanceInput & { priority: string; env: Record<string, string> }): string {
  const env = Object.fromEntries(Object.entries(request.env).sort(([a], [b]) => (a < b ? -1 : 1)));
  const { idempotencyKey: _, ...rest } = request;
  const canonical = Object.fromEntries(Object.entries({ ...rest, env }).sort(([a], [b]) => (a < b ? -1 : 1)));
  return createHash("sha256").update(JSON.stringify(canonical)).digest("hex");
}
