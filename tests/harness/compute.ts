import type Docker from "dockerode";
import { and, gte, inArray, ne } from "drizzle-orm";
import { instanceActions, instances } from "../../db/schema";
import type { Services } from "../../server/services";
import type { TestServer } from "./server";
import { eventually } from "./server";
import { testRun } from "./env";

type Client = ReturnType<TestServer["client"]>;

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
    stream.on("end", () => (clearTimeout(timer), resolve()));
    stream.on("error", (error: Error) => (clearTimeout(timer), reject(error)));
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
 * Takes the instances a test file made since `since` out of later files' way
 * (the suite runs files in random order, and a live instance holds capacity):
 * their open actions failed, their rows deleted, their containers removed.
 */
export async function retireInstancesSince(services: Services, since: Date): Promise<void> {
  const rows = await services.db
    .select({ id: instances.id })
    .from(instances)
    .where(and(gte(instances.createdAt, since), ne(instances.state, "deleted")));
  if (!rows.length) return;
  const ids = rows.map((r) => r.id);
  await services.db
    .update(instanceActions)
    .set({ status: "failed", error: "test cleanup", finishedAt: new Date() })
    .where(and(inArray(instanceActions.instanceId, ids), inArray(instanceActions.status, ["pending", "running"])));
  await services.db.update(instances).set({ state: "deleted" }).where(inArray(instances.id, ids));
  await Promise.all(ids.map((id) => services.docker.getContainer(`${testRun.dockerNamespace}-${id}`).remove({ force: true }).catch(() => undefined)));
}
