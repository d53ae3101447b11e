/**
 * Power-emergency benchmark (not a test): the time from the byte that takes
 * the battery below a threshold to the interruptible container being paused
 * in the Docker engine, through the whole real chain — controller end of a
 * socat pty pair → serial bridge (Node + serialport) → monitor (VE.Direct
 * decode, power policy) → level change recorded → power-emergency job →
 * emergency worker → pause action → lifecycle worker → `docker pause`.
 *
 * The policy's dwell times are 0, so the figure is the pipeline's own, not
 * the policy's deliberate wait. The battery monitor hovers at SOC 31 %
 * (conserve: the interruptible container is throttled, the ladder's first
 * rung); each run writes one block with SOC 29 % (below the critical
 * threshold, 30 % — a step a real battery can take, so the plausibility
 * filter passes it at once) at the controller end of the pty and waits for
 * the pause, then goes to 80 % and back to 31 % for the next run. API-less:
 * workers and monitor run in this process, as `npm start` runs them.
 *
 * Run: node_modules/.bin/bun tests/bench/emergency.ts [runs=20]
 *
 * It uses its own database, Redis prefix, Docker namespace and pty pair and
 * removes them at the end.
 */
import Docker from "dockerode";
import { eq } from "drizzle-orm";
import { energyLevelChanges, instanceActions } from "../../db/schema";
import { startMonitor } from "../../hardware/monitor";
import { DEFAULT_POLICY } from "../../hardware/policy";
import { encodeBlock } from "../../hardware/protocols/vedirect";
import { openPtyPair } from "../../hardware/pty-pair";
import { systemActor } from "../../server/auth/actor";
import { syncHosts } from "../../server/compute/hosts";
import { createInstance } from "../../server/compute/create";
import { findInstance, getAction } from "../../server/compute/instances";
import { loadConfig } from "../../server/config";
import { updatePowerPolicy } from "../../server/energy/policy";
import { powerEmergencyJobId } from "../../server/energy/power";
import { createLogger } from "../../server/log";
import { createServices } from "../../server/services";
import { processors } from "../../workers/processors";
import { startWorkers } from "../../workers/runner";
import { openControllerEnd } from "../harness/serial";
import { createUserWithSession } from "../harness/users";
import { defineSandbox } from "../harness/sandbox";

const [runs = 20] = process.argv.slice(2).map(Number);
// Its own database, Redis prefix, Docker namespace and data folder, removed at the end.
const sandbox = defineSandbox("bench");
await sandbox.create();
const { dockerNamespace: namespace, dockerSocket: socketPath, dataDir } = sandbox;
const pair = await openPtyPair(`${dataDir}/tty`, "bench");

const config = loadConfig({
  ...sandbox.env,
  LOG_LEVEL: "error",
  SERIAL_PORT: pair.host,
  ENERGY_SAMPLE_SECONDS: "1",
  EMERGENCY_RESUME_STAGGER_MS: "0",
});
const services = await createServices(config, { log: createLogger({ level: "error" }) });
await updatePowerPolicy(services.db, { actor: systemActor("bench") }, { ...DEFAULT_POLICY, dwellSeconds: 0, recoveryDwellSeconds: 0 });
const workers = await startWorkers(services, processors);
await syncHosts(services);

/** Epoch milliseconds with sub-millisecond resolution, comparable with database and Docker timestamps. */
const now = () => performance.timeOrigin + performance.now();
const docker = new Docker({ socketPath });

// The instance to pause.
const { user } = await createUserWithSession(services);
const created = await createInstance(services, { actor: systemActor("bench"), ownerId: user.id }, { name: "batch", planId: "nano", imageId: "busybox", priority: "interruptible" });
const instanceId = created.instance.id;
const containerName = `${namespace}-${instanceId}`;
async function until<T>(read: () => Promise<T>, done: (v: T) => boolean, what: string, timeoutMs = 30_000, everyMs = 2): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (done(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(everyMs);
  }
}
await until(() => getAction(services.db, null, created.actionId), (a) => a.status !== "pending" && a.status !== "running", "the instance to run", 60_000, 20);

// Docker's own record of when it paused the container (engine clock, same host).
const pausedAt = new Map<string, number>();
const events = (await docker.getEvents({ filters: { type: ["container"], event: ["pause"], label: [`sahary.namespace=${namespace}`] } })) as NodeJS.ReadableStream & { destroy(): void };
let buffered = "";
events.on("data", (chunk: Buffer) => {
  buffered += chunk.toString("utf8");
  for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
    const event = JSON.parse(buffered.slice(0, nl)) as { timeNano: number; Actor: { Attributes: Record<string, string> } };
    buffered = buffered.slice(nl + 1);
    const key = `${event.Actor.Attributes["sahary.instance"]}`;
    if (!pausedAt.has(key)) pausedAt.set(key, event.timeNano / 1e6);
  }
});

// The controller: a VE.Direct battery monitor sending one block per second with its SOC.
const monitor = await startMonitor(services);
await until(async () => monitor.status().bridge.state, (s) => s === "running", "the bridge", 10_000, 20);
const controller = openControllerEnd(pair.device);
const block = (socPercent: number) =>
  encodeBlock([
    ["PID", "0x203"],
    ["V", String(Math.round(11_800 + socPercent * 12))],
    ["I", "-8000"],
    ["P", "-96"],
    ["SOC", String(Math.round(socPercent * 10))],
    ["TTG", "-1"],
    ["Alarm", "OFF"],
    ["AR", "0"],
  ]);
let soc = 31;
const heartbeat = setInterval(() => controller.write(block(soc)), 1000);
controller.write(block(soc));
await until(async () => monitor.status().telemetry, (t) => t === "ok", "telemetry", 10_000, 20);
const blockBytes = block(29).length;

/** At conserve with the throttle applied and nothing in flight: the state each run starts from. */
async function throttledAtConserve() {
  await until(async () => monitor.status().level, (l) => l === "conserve", "level conserve", 30_000, 20);
  await until(() => findInstance(services.db, null, instanceId), (i) => i.state === "running" && i.cpuThrottleMillis !== null, "the throttle", 30_000, 20);
  await until(
    () => services.db.select().from(instanceActions).where(eq(instanceActions.instanceId, instanceId)),
    (actions) => actions.every((a) => a.status === "succeeded" || a.status === "failed"),
    "no action in flight",
    30_000,
    20,
  );
}
await throttledAtConserve();

type Run = { total: number; steps: Record<string, number>; polled: number };
const results: Run[] = [];
try {
  for (let run = 0; run < runs; run++) {
    pausedAt.delete(instanceId);
    // The crossing: one block whose last byte (its checksum) completes a reading below the threshold.
    soc = 29;
    controller.write(block(soc));
    const t0 = now();
    await until(() => docker.getContainer(containerName).inspect(), (i) => i.State.Paused, "the container to be paused", 30_000, 2);
    const polled = now() - t0;
    const engine = await until(async () => pausedAt.get(instanceId), (t) => t !== undefined, "the pause event", 5000, 5);

    const [change] = await services.db.select().from(energyLevelChanges).orderBy(energyLevelChanges.seq).then((rows) => rows.slice(-1));
    const job = await services.queues.queue("emergency").getJob(powerEmergencyJobId(change!.id));
    const [pause] = await services.db.select().from(instanceActions).where(eq(instanceActions.instanceId, instanceId)).then((rows) => rows.filter((a) => a.kind === "pause").sort((a, b) => +a.createdAt - +b.createdAt).slice(-1));
    if (change!.toLevel !== "critical" || !job?.processedOn || !pause?.startedAt) throw new Error("the run did not go through a critical level change, its job and a pause action");
    const marks: Array<[string, number]> = [
      ["byte written → block decoded in the monitor (bridge hop)", change!.at.getTime()],
      ["→ level change recorded, job enqueued", job.timestamp],
      ["→ power-emergency job picked by the worker", job.processedOn],
      ["→ pause requested (level read, instances planned)", pause.createdAt.getTime()],
      ["→ lifecycle job claimed the pause action", pause.startedAt.getTime()],
      ["→ engine paused the container (docker event)", engine!],
    ];
    const steps: Record<string, number> = {};
    let previous = t0;
    for (const [label, at] of marks) {
      steps[label] = at - previous;
      previous = at;
    }
    results.push({ total: engine! - t0, steps, polled });

    // Recovery (a jump the filter accepts once three readings confirm it), then back to conserve for the next run.
    soc = 80;
    controller.write(block(soc));
    await until(() => findInstance(services.db, null, instanceId), (i) => i.state === "running" && i.stateReason === "power_restored", "recovery", 30_000, 10);
    await until(() => docker.getContainer(containerName).inspect(), (i) => !i.State.Paused, "the container to be resumed", 30_000, 10);
    soc = 31;
    await throttledAtConserve();
  }
} finally {
  clearInterval(heartbeat);
  controller.close();
  events.destroy();
  await monitor.stop();
  await workers.close();
  await services.close();
  await pair.close();
  await sandbox.destroy();
}

const percentile = (xs: number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
};
const fmt = (ms: number) => `${ms.toFixed(1)} ms`;
const line = (label: string, xs: number[]) => console.log(`${label.padEnd(60)} p50 ${fmt(percentile(xs, 50)).padStart(9)}   p95 ${fmt(percentile(xs, 95)).padStart(9)}   max ${fmt(Math.max(...xs)).padStart(9)}`);

console.log(`threshold byte → container paused, ${results.length} runs (VE.Direct block of ${blockBytes} bytes over a socat pty; dwell 0; Docker ${(await docker.version()).Version}, ${navigator.hardwareConcurrency} CPUs)`);
line("total: byte written → engine paused (docker event time)", results.map((r) => r.total));
line("total: byte written → paused seen by inspect polling (2 ms)", results.map((r) => r.polled));
for (const label of Object.keys(results[0]!.steps)) line(`  ${label}`, results.map((r) => r.steps[label]!));
process.exit(0);
