import type { instanceActions, instances } from "../../db/schema";
import type { IngressConfig } from "../config";
import { instanceUrl } from "../ingress/addresses";

type InstanceRow = typeof instances.$inferSelect;
type ActionRow = typeof instanceActions.$inferSelect;

/**
 * An instance as clients see it. `url` is where visitors reach it (null
 * without an HTTP port, and `urlNote` says why). While its host's engine does
 * not answer, `state` is `unknown` (what the container is doing cannot be
 * known) and `lastKnownState` is what the platform last recorded.
 */
export function instanceView(instance: InstanceRow, ingress: Pick<IngressConfig, "domain" | "tls" | "httpPort" | "httpsPort">, host: { status: string } | null = null) {
  const url = instanceUrl(ingress, instance);
  const reachable = host === null || host.status === "active";
  return {
    id: instance.id,
    name: instance.name,
    state: reachable ? instance.state : ("unknown" as const),
    lastKnownState: instance.state,
    hostReachable: reachable,
    stateReason: reachable ? instance.stateReason : "the instance's host is unreachable; its state is unknown until it answers again",
    stateChangedAt: instance.stateChangedAt.toISOString(),
    priority: instance.priority,
    planId: instance.planId,
    imageId: instance.imageId,
    imageReference: instance.imageReference,
    imageDigest: instance.imageDigest,
    command: instance.command,
    args: instance.args,
    vcpus: instance.cpuMillis / 1000,
    /** The power policy's CPU limit below the plan, while it lasts. */
    cpuThrottle: instance.cpuThrottleMillis === null ? null : { vcpus: instance.cpuThrottleMillis / 1000, reason: instance.cpuThrottleReason },
    memoryMb: instance.memoryMb,
    diskGb: instance.diskGb,
    diskLimitEnforced: instance.diskLimitEnforced,
    oom: { kills: instance.oomKills, lastAt: instance.lastOomKilledAt?.toISOString() ?? null },
    priceHourlyMinor: instance.priceHourlyMinor,
    priceMonthlyMinor: instance.priceMonthlyMinor,
    currency: instance.currency,
    env: instance.env,
    hostId: instance.hostId,
    ipAddress: instance.ipAddress,
    httpPort: instance.httpPort,
    url,
    urlNote: url ? null : "no URL: the image serves no HTTP, or the instance was created with httpPort null",
    createdAt: instance.createdAt.toISOString(),
    updatedAt: instance.updatedAt.toISOString(),
    deletedAt: instance.deletedAt?.toISOString() ?? null,
  };
}

export type InstanceView = ReturnType<typeof instanceView>;

export function actionView(action: ActionRow) {
  return {
    id: action.id,
    instanceId: action.instanceId,
    kind: action.kind,
    status: action.status,
    reason: action.reason,
    error: action.error,
    params: action.params,
    /** While an image is pulled: layers and bytes so far (bytesTotal from the registry's manifest). */
    progress: action.progress,
    createdAt: action.createdAt.toISOString(),
    startedAt: action.startedAt?.toISOString() ?? null,
    finishedAt: action.finishedAt?.toISOString() ?? null,
  };
}
