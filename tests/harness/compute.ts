import { existsSync, readFileSync } from "node:fs";
import type Docker from "dockerode";
import { and, gte, inArray, ne, type SQL } from "drizzle-orm";
import { instanceActions, instances, instanceStateHistory } from "../../db/schema";
import type { Services } from "../../server/services";
import type { TestServer } from "./server";
import { eventually } from "./server";
import { testRun } from "./env";

type Client = ReturnType<TestServer["client"]>;

/**
 * Reads whether the kernel holds a container's processes frozen (by its own
 * pause or through its freeze group): its cgroup's effective freezer state
 * under `parent` (its cgroup parent), cgroup v1 or v2. Null when the container
 * has no cgroup there.
 */
export function frozenProbe(parent: string, containerId: string): (() => boolean) | null {
  const v1 = `/sys/fs/cgroup/freezer${parent}/${containerId}/freezer.state`;
  if (existsSync(v1)) return () => readFileSync(v1, "utf8").startsWith("FROZEN");
  const v2 = `/sys/fs/cgroup${parent}/${containerId}/cgroup.events`;
  if (existsSync(v2)) return () => readFileSync(v2, "utf8").includes("frozen 1");
  return null;
}

/** Polls `compute.actions.get` until the action has finished; returns it. */
export function actionDone(client: Client, actionId: string, timeoutMs = 30_000) {
  return eventually(
    () => client.compute.actions.get.query({ id: actionId }),
    (action) => action.status === "succeeded" || action.status === "failed",
    { timeoutMs, intervalMs: 50, what: `action ${actionId} to finish` },
  );
}

/** This run's containers for an instance, found by label (running or not). */
export async function containersOf(docker: Docker, instanceId: string) {
  return docker.listContainers({ all: true, filters: { label: [`sahary.namespace=${testRun.dockerNamespace}`, `sahary.instance=${instanceId}`] } });
}

/**
 * Runs a command in a container without stdin (stack-pitfalls K-2) and
 * returns its exit code and output, bounded by a timeout.
 */
export async function execIn(docker: Docker, container: string, cmd: string[], timeoutMs = 10_000): Promise<{ exitCode: number | null; output: string }> {
  const exec = await docker.getContainer(container).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const chunks: Buffer[] = [];
  stream.on("data", (chunk: Buffer) => chunks.push(chunk));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.destroy();
      reject(new Error(`exec ${cmd.join(" ")} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    stream.on("end", () => {
      clearTimeout(timer);
      resolve();
    });
    stream.on("error", (error: Error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
  const { ExitCode } = await exec.inspect();
  // Multiplexed frames: drop the 8-byte headers.
  const raw = Buffer.concat(chunks);
  let output = "";
  for (let offset = 0; offset + 8 <= raw.length; ) {
    const length = raw.readUInt32BE(offset + 4);
    output += raw.subarray(offset + 8, offset + 8 + length).toString("utf8");
    offset += 8 + length;
  }
  return { exitCode: ExitCode, output };
}

/**
 * Power emergencies and energy accounting act on every instance of the
 * platform, so files about them start from none: instances earlier files
 * left behind are retired (open actions failed, marked deleted in the row and
 * the history, containers removed).
 */
export function retireOtherInstances(services: Pick<Services, "db" | "docker">): Promise<void> {
  return retire(services);
}

/**
 * Takes the instances a test file made since `since` out of later files' way
 * (the suite runs files in random order, and a live instance holds capacity).
 */
export function retireInstancesSince(services: Pick<Services, "db" | "docker">, since: Date): Promise<void> {
  return retire(services, gte(instances.createdAt, since));
}

async function retire({ db, docker }: Pick<Services, "db" | "docker">, which?: SQL): Promise<void> {
  const left = await db
    .select({ id: instances.id })
    .from(instances)
    .where(and(ne(instances.state, "deleted"), which));
  if (!left.length) return;
  const leftIds = left.map((i) => i.id);
  await db
    .update(instanceActions)
    .set({ status: "failed", error: "test cleanup", finishedAt: new Date() })
    .where(and(inArray(instanceActions.instanceId, leftIds), inArray(instanceActions.status, ["pending", "running"])));
  const rows = await db.update(instances).set({ state: "deleted", deletedAt: new Date() }).where(inArray(instances.id, leftIds)).returning({ id: instances.id });
  // Recorded in the history too: metering and energy accounting read time from it, and must see them gone from now on.
  await db.insert(instanceStateHistory).values(rows.map((row) => ({ instanceId: row.id, fromState: null, toState: "deleted" as const, reason: "test cleanup", actorType: "system" })));
  await Promise.all(
    leftIds.map((id) =>
      docker
        .getContainer(`${testRun.dockerNamespace}-${id}`)
        .remove({ force: true })
        .catch(() => {}),
    ),
  );
}
