import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { and, eq, inArray } from "drizzle-orm";
import type { Database } from "../../db/client";
import { instanceActions, instances } from "../../db/schema";
import type { Config } from "../config";
import type { InstancePriority } from "./states";

/**
 * Freeze groups: the kernel's cgroup freezer, one group per Docker namespace
 * and instance priority, so a power emergency stops a whole priority's
 * processes in one write instead of one `docker pause` each (a hundred of
 * those take 1–2 s on two cores; the write takes microseconds).
 *
 * On an engine whose cgroup driver is `cgroupfs`, an instance's container is
 * made with its priority's group as its cgroup parent. Freezing the parent
 * freezes every container under it; the kernel reports each child frozen
 * "through an ancestor", which runc reads as not paused, so the engine's own
 * `docker pause` of each container still goes through afterwards and Docker's
 * record stays right. The group is a bridge over the time those pauses take:
 * when no pause action on the priority is left open (the last one to finish
 * checks, as does every emergency pass), it is thawed, and each container
 * stays frozen by its own pause. Recovery thaws it first of all, so a resume
 * is never held by the group.
 *
 * The write needs this machine's cgroup filesystem: on a remote engine, under
 * the `systemd` driver (which wants slices), or where /sys/fs/cgroup is not
 * writable, there is no group here and the engine's pause is the only one.
 */

const CGROUP_ROOT = "/sys/fs/cgroup";

/** The group's cgroup path, the same on every engine; it exists on this kernel once a container has been made in it. */
export function freezeGroupOf(config: Config, priority: InstancePriority): string {
  return `/${config.docker.namespace}.${priority}`;
}

/** The cgroup parent a container of this priority gets on this engine (none under the systemd driver). */
export function cgroupParentOf(config: Config, host: { cgroupDriver: string | null }, priority: InstancePriority): string | null {
  return host.cgroupDriver === "cgroupfs" ? freezeGroupOf(config, priority) : null;
}

type Control = { file: string; frozen: string; thawed: string; self: () => boolean };

/** The group's freezer file, cgroup v2 (cgroup.freeze) or v1 (the freezer controller); null when the group is not on this kernel. */
function controlOf(group: string): Control | null {
  const v2 = `${CGROUP_ROOT}${group}/cgroup.freeze`;
  if (existsSync(v2)) return { file: v2, frozen: "1", thawed: "0", self: () => readFileSync(v2, "utf8").trim() === "1" };
  const dir = `${CGROUP_ROOT}/freezer${group}`;
  if (existsSync(`${dir}/freezer.state`)) {
    return { file: `${dir}/freezer.state`, frozen: "FROZEN", thawed: "THAWED", self: () => readFileSync(`${dir}/freezer.self_freezing`, "utf8").trim() === "1" };
  }
  return null;
}

/** Freezes or thaws every container in the group. False when the group is not on this kernel or cannot be written here. */
export function setGroupFrozen(group: string, frozen: boolean): boolean {
  const control = controlOf(group);
  if (!control) return false;
  try {
    writeFileSync(control.file, frozen ? control.frozen : control.thawed);
    return true;
  } catch {
    return false;
  }
}

/** Whether the group itself is frozen (not through an ancestor); false when it is not on this kernel. */
export function groupFrozen(group: string): boolean {
  try {
    return controlOf(group)?.self() ?? false;
  } catch {
    return false;
  }
}

/**
 * Thaws the priority's group once no pause action on an instance of that
 * priority is pending or running: every container the group was holding is
 * then held by its own pause (or was not to be paused after all). True when
 * it thawed the group.
 */
export async function thawWhenPausesSettled(deps: { db: Database; config: Config }, priority: InstancePriority): Promise<boolean> {
  const group = freezeGroupOf(deps.config, priority);
  if (!groupFrozen(group)) return false;
  const [open] = await deps.db
    .select({ id: instanceActions.id })
    .from(instanceActions)
    .innerJoin(instances, eq(instances.id, instanceActions.instanceId))
    .where(and(eq(instances.priority, priority), eq(instanceActions.kind, "pause"), inArray(instanceActions.status, ["pending", "running"])))
    .limit(1);
  return open ? false : setGroupFrozen(group, false);
}
