import { asc, eq } from "drizzle-orm";
import type { Database } from "../../db/client";
import { allowedRegistries } from "../../db/schema";
import { actorUserId, type Actor } from "../auth/actor";
import { recordAudit } from "../audit";
import type { Config } from "../config";
import { AppError } from "../errors";
import type { RequestInfo } from "../trpc";
import { allows, formatAllowPattern, formatReference, parseAllowPattern, parseImageReference, ImageReferenceError, type AllowPattern, type ImageReference } from "./reference";

export type AllowEntry = { id: string | null; pattern: string; source: "config" | "admin"; note: string; createdAt: string | null };

/**
 * The registries customers' own images may come from: REGISTRY_ALLOWLIST
 * (fixed by the deployment; cannot be removed through the API) and what
 * admins added. Read at every create, so a removal applies to the next one.
 */
export async function listAllowedRegistries(db: Database, config: Config): Promise<AllowEntry[]> {
  const fromConfig = config.compute.registries.allow.map((entry) => ({
    id: null,
    pattern: formatAllowPattern(parseAllowPattern(entry)),
    source: "config" as const,
    note: "REGISTRY_ALLOWLIST",
    createdAt: null,
  }));
  const rows = await db.select().from(allowedRegistries).orderBy(asc(allowedRegistries.pattern));
  return [...fromConfig, ...rows.map((row) => ({ id: row.id, pattern: row.pattern, source: "admin" as const, note: row.note, createdAt: row.createdAt.toISOString() }))];
}

/**
 * Parses a customer's image reference and checks it against the allow-list.
 * A malformed reference is IMAGE_REFERENCE_INVALID; a registry (or
 * repository) nobody allowed is REGISTRY_NOT_ALLOWED, naming the registry.
 */
export async function resolveAllowedImage(db: Database, config: Config, input: string): Promise<{ ref: ImageReference; normalized: string }> {
  let ref: ImageReference;
  try {
    ref = parseImageReference(input);
  } catch (error) {
    if (error instanceof ImageReferenceError) throw new AppError("IMAGE_REFERENCE_INVALID", error.message, { details: { field: "image", image: input } });
    throw error;
  }
  const patterns: AllowPattern[] = (await listAllowedRegistries(db, config)).map((entry) => parseAllowPattern(entry.pattern));
  if (!patterns.some((pattern) => allows(pattern, ref))) {
    throw new AppError("REGISTRY_NOT_ALLOWED", `Images from ${ref.domain}/${ref.path} are not allowed on this platform; ask an operator to allow the registry`, {
      details: { field: "image", registry: ref.domain, repository: ref.path, normalized: formatReference(ref) },
    });
  }
  return { ref, normalized: formatReference(ref) };
}

type Who = { actor: Actor; request?: RequestInfo | null };

/** Adds an entry (admins). The same pattern twice is CONFLICT; one REGISTRY_ALLOWLIST already holds is CONFLICT too. */
export async function addAllowedRegistry(db: Database, config: Config, who: Who, input: { pattern: string; note: string }): Promise<AllowEntry> {
  let pattern: string;
  try {
    pattern = formatAllowPattern(parseAllowPattern(input.pattern));
  } catch (error) {
    if (error instanceof ImageReferenceError) throw new AppError("IMAGE_REFERENCE_INVALID", error.message, { details: { field: "pattern" } });
    throw error;
  }
  if (config.compute.registries.allow.some((entry) => formatAllowPattern(parseAllowPattern(entry)) === pattern)) {
    throw new AppError("CONFLICT", `${pattern} is already allowed by REGISTRY_ALLOWLIST`, { details: { pattern } });
  }
  return db.transaction(async (tx) => {
    const [row] = await tx
      .insert(allowedRegistries)
      .values({ pattern, note: input.note, createdBy: actorUserId(who.actor) })
      .onConflictDoNothing()
      .returning();
    if (!row) throw new AppError("CONFLICT", `${pattern} is already allowed`, { details: { pattern } });
    await recordAudit(tx, who, { action: "admin.registry.allowed", targetType: "registry", targetId: pattern, reason: input.note });
    return { id: row.id, pattern: row.pattern, source: "admin" as const, note: row.note, createdAt: row.createdAt.toISOString() };
  });
}

/** Removes an admin-added entry; instances already created keep running (their image is on the host). */
export async function removeAllowedRegistry(db: Database, who: Who, input: { id: string; reason: string }): Promise<{ removed: string }> {
  return db.transaction(async (tx) => {
    const [row] = await tx.delete(allowedRegistries).where(eq(allowedRegistries.id, input.id)).returning();
    if (!row) throw new AppError("NOT_FOUND", "No such allow-list entry (entries from REGISTRY_ALLOWLIST are changed in the configuration)", { details: { id: input.id } });
    await recordAudit(tx, who, { action: "admin.registry.removed", targetType: "registry", targetId: row.pattern, reason: input.reason });
    return { removed: row.pattern };
  });
}
