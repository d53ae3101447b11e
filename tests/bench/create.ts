/**
 * Create → running (not a test): in one run, interleaved so both see the same
 * machine, N times each:
 *
 *  - raw: `docker create` + `start` of the image the platform runs
 *    (sahary/busybox:1.35) on a user-defined bridge network (as the platform
 *    attaches each tenant's), timed from the create call until start returns;
 *  - platform: `compute.instances.create` against the all-in-one process
 *    (`server/main.ts`, API and workers, on PostgreSQL) until its create action
 *    succeeded, taken from the action's `finishedAt` (stamped by the worker as
 *    it records success), so the figure carries no polling delay. The action
 *    is polled every 50 ms only to know when to go on. The tenant already runs
 *    one instance, so its network is in place, as the raw side's is.
 *
 * Then, apart: a tenant's very first instance (a new tenant each time), which
 * also makes the tenant's network.
 *
 * Prints p50/p95 of both and the ratio of the p50s (issue 14's target: ≤ 1.25).
 *
 * Run: npm run bench:create -- [--runs 20]
 *
 * Its own database, Redis prefix, Docker namespace and data folder, removed at the end.
 */
import { parseArgs } from "node:util";
import { createTRPCClient, httpLink } from "@trpc/client";
import Docker from "dockerode";
import { setUserQuota } from "../../server/compute/quotas";
import { loadConfig } from "../../server/config";
import { createLogger } from "../../server/log";
import type { AppRouter } from "../../server/router";
import { createServices, type Services } from "../../server/services";
import { defineSandbox } from "../harness/sandbox";
import { createUserWithSession } from "../harness/users";
import { latencySummary, startPlatform, type PlatformProcess } from "./processes";

const { values: args } = parseArgs({ options: { runs: { type: "string", default: "20" } } });
const runs = Number(args.runs);
const IMAGE = "sahary/busybox:1.35";

const sandbox = defineSandbox("bench");
await sandbox.create();
const env = { ...sandbox.env, LOG_LEVEL: "warn", HOST_CPU_OVERCOMMIT: "1000", HOST_MEMORY_OVERCOMMIT: "100" };
const docker = new Docker({ socketPath: sandbox.dockerSocket });
let platform: PlatformProcess | undefined;
let setup: Services | undefined;

try {
  await docker.getImage(IMAGE).inspect();
  setup = await createServices(loadConfig({ ...env, LOG_LEVEL: "error" }), { log: createLogger({ level: "error" }) });
  const tenant = async () => {
    const { user, token } = await createUserWithSession(setup!);
    await setUserQuota(setup!.db, user.id, { maxInstances: 100_000, maxCpuMillis: 100_000_000, maxMemoryMb: 100_000_000 });
    return createTRPCClient<AppRouter>({ links: [httpLink({ url: `${platform!.url}/trpc`, headers: { authorization: `Bearer ${token}` } })] });
  };

  const network = await docker.createNetwork({ Name: `${sandbox.dockerNamespace}-raw`, Driver: "bridge", Labels: { "sahary.namespace": sandbox.dockerNamespace } });
  platform = await startPlatform("server/main.ts", env);
  const api = await tenant();

  async function raw(n: number): Promise<number> {
    const started = Date.now();
    const container = await docker.createContainer({
      name: `${sandbox.dockerNamespace}-raw-${n}`,
      Image: IMAGE,
      Labels: { "sahary.namespace": sandbox.dockerNamespace },
      HostConfig: { NetworkMode: network.id },
    });
    await container.start();
    const ms = Date.now() - started;
    await container.remove({ force: true });
    return ms;
  }

  async function viaPlatform(n: number, opts: { client?: typeof api; keep?: boolean } = {}): Promise<number> {
    const client = opts.client ?? api;
    const started = Date.now();
    const { instance, actionId } = await client.compute.instances.create.mutate({ name: `bench-${n}`, planId: "nano", imageId: "busybox" });
    for (;;) {
      const action = await client.compute.actions.get.query({ id: actionId });
      if (action.status === "failed") throw new Error(`create failed: ${action.error}`);
      if (action.status === "succeeded") {
        const ms = Date.parse(action.finishedAt!) - started;
        if (opts.keep) return ms;
        // Keep the host as it was for the next round: delete, and wait until that is done too.
        const removal = await client.compute.instances.delete.mutate({ id: instance.id });
        while ((await client.compute.actions.get.query({ id: removal.actionId })).status !== "succeeded") await Bun.sleep(50);
        return ms;
      }
      await Bun.sleep(50);
    }
  }

  // A first round of each, not counted, code paths warm. The platform's first instance is kept: the tenant's network
  // (which the raw side also reuses) stays in place, as for any customer who already runs something. A tenant's very
  // first instance also pays the network's creation: measured apart below, with a new tenant each time.
  await raw(-1);
  await viaPlatform(-1, { keep: true });
  const rawMs: number[] = [];
  const platformMs: number[] = [];
  for (let n = 0; n < runs; n++) {
    rawMs.push(await raw(n));
    platformMs.push(await viaPlatform(n));
  }
  const firstMs: number[] = [];
  for (let n = 0; n < Math.min(runs, 5); n++) firstMs.push(await viaPlatform(1000 + n, { client: await tenant(), keep: true }));
  const rawSummary = latencySummary(rawMs);
  const platformSummary = latencySummary(platformMs);
  console.log(
    JSON.stringify(
      {
        command: `npm run bench:create -- ${process.argv.slice(2).join(" ")}`.trim(),
        machine: { cpus: navigator.hardwareConcurrency, docker: (await docker.version()).Version },
        runs,
        rawDockerCreateStartMs: rawSummary,
        platformCreateToRunningMs: platformSummary,
        ratioOfMedians: Math.round((platformSummary.p50 / rawSummary.p50) * 100) / 100,
        target: "ratio of medians <= 1.25",
        tenantsFirstInstanceMs: latencySummary(firstMs),
      },
      null,
      2,
    ),
  );
} finally {
  await platform?.stop();
  await setup?.close();
  const { containersRemoved } = await sandbox.destroy();
  process.stderr.write(`create: cleaned up (${containersRemoved} containers removed)\n`);
}
