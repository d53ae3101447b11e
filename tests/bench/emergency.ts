/**
 * Power-emergency benchmark (not a test): how long the platform takes to shed
 * `n` interruptible containers at once, and to bring them back, through the
 * whole real chain — controller end of a socat pty pair → serial bridge (Node
 * + serialport) → monitor (VE.Direct decode, power policy) → level change
 * recorded → power-emergency job → emergency worker → the priority's freeze
 * group frozen (server/compute/freezer.ts) → pause actions → lifecycle
 * workers → `docker pause` of each, after which the group is thawed.
 *
 * "Frozen" is the kernel's word: the container's cgroup freezer state, polled
 * every millisecond (its processes get no more CPU from then on). "Paused in
 * Docker's record" is the engine's own pause event for the container.
 *
 * The policy's dwell times are 0, so the figures are the pipeline's own, not
 * the policy's deliberate wait. Between runs the battery monitor hovers at SOC 31 %
 * (conserve: interruptible containers are throttled, the ladder's first
 * rung); each run writes one block with SOC 29 % (below the critical
 * threshold, 30 % — a step a real battery can take, so the plausibility
 * filter passes it at once) at the controller end of the pty, and times from
 * that write to the first and the last container frozen, and paused in
 * Docker's record. Then it goes to 80 % (normal, once the filter has seen three
 * readings confirm the jump) and times from the recorded level change to the
 * first and the last container resumed: recovery staggers one resume every
 * EMERGENCY_RESUME_STAGGER_MS (`stagger`, default 100 ms here so a run stays
 * short; production's is 2 s, which changes the last resume, not the first).
 * Back at 31 % for the next run. For each size the fleet grows to that many
 * interruptible containers (real BusyBox ones, created through the
 * platform at SOC 80 %, since conserve admits no new interruptible instance). API-less: workers and monitor run in this process, as
 * `npm start` runs them.
 *
 * Run: node_modules/.bin/bun tests/bench/emergency.ts [sizes=25,50,100] [runs=5] [stagger=100]
 *
 * It uses its own database, Redis prefix, Docker namespace and pty pair and
 * removes them (and every container it made) at the end.
 */
import Docker from "dockerode";
import { and, desc, eq, inArray, sql } from "drizzle-orm";
import { energyLevelChanges, instanceActions, instances } from "../../db/schema";
import { startMonitor } from "../../hardware/monitor";
import { DEFAULT_POLICY } from "../../hardware/policy";
import { encodeBlock } from "../../hardware/protocols/vedirect";
import { openPtyPair } from "../../hardware/pty-pair";
import { systemActor } from "../../server/auth/actor";
import { mapBounded } from "../../server/billing/counters";
import { freezeGroupOf } from "../../server/compute/freezer";
import { syncHosts } from "../../server/compute/hosts";
import { createInstance } from "../../server/compute/create";
import { setUserQuota } from "../../server/compute/quotas";
import { loadConfig } from "../../server/config";
import { updatePowerPolicy } from "../../server/energy/policy";
import { createLogger } from "../../server/log";
import { createServices } from "../../server/services";
import { processors } from "../../workers/processors";
import { startWorkers } from "../../workers/runner";
import { frozenProbe } from "../harness/compute";
import { openControllerEnd } from "../harness/serial";
import { createUserWithSession } from "../harness/users";
import { defineSandbox } from "../harness/sandbox";

const [sizesArg = "25,50,100", runsArg = "5", staggerArg = "100"] = process.argv.slice(2);
const sizes = sizesArg
  .split(",")
  .map(Number)
  .sort((a, b) => a - b);
const runs = Number(runsArg);
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
  EMERGENCY_RESUME_STAGGER_MS: staggerArg,
  HOST_CPU_OVERCOMMIT: "1000",
  HOST_MEMORY_OVERCOMMIT: "100",
});
const services = await createServices(config, { log: createLogger({ level: "error" }) });
await updatePowerPolicy(services.db, { actor: systemActor("bench") }, { ...DEFAULT_POLICY, dwellSeconds: 0, recoveryDwellSeconds: 0 });
const workers = await startWorkers(services, processors);
await syncHosts(services);
const { db } = services;

/** Epoch milliseconds with sub-millisecond resolution, comparable with database and Docker timestamps. */
const now = () => performance.timeOrigin + performance.now();
const docker = new Docker({ socketPath });

async function until<T>(read: () => Promise<T>, done: (v: T) => boolean, what: string, timeoutMs = 30_000, everyMs = 2): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (done(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(everyMs);
  }
}

// Docker's own record of when it paused and unpaused each container (engine clock, same host).
const engineAt = { pause: new Map<string, number>(), unpause: new Map<string, number>() };
const events = (await docker.getEvents({ filters: { type: ["container"], event: ["pause", "unpause"], label: [`sahary.namespace=${namespace}`] } })) as NodeJS.ReadableStream & { destroy(): void };
let buffered = "";
events.on("data", (chunk: Buffer) => {
  buffered += chunk.toString("utf8");
  for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
    const event = JSON.parse(buffered.slice(0, nl)) as { Action: "pause" | "unpause"; timeNano: number; Actor: { Attributes: Record<string, string> } };
    buffered = buffered.slice(nl + 1);
    const seen = engineAt[event.Action];
    const key = `${event.Actor.Attributes["sahary.instance"]}`;
    if (seen && !seen.has(key)) seen.set(key, event.timeNano / 1e6);
  }
});

// The controller: a VE.Direct battery monitor sending one block per second with its SOC.
const monitor = await startMonitor(services);
await until(
  async () => monitor.status().bridge.state,
  (s) => s === "running",
  "the bridge",
  10_000,
  20,
);
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
let soc = 80;
const heartbeat = setInterval(() => controller.write(block(soc)), 1000);
controller.write(block(soc));
await until(
  async () => monitor.status().telemetry,
  (t) => t === "ok",
  "telemetry",
  10_000,
  20,
);

const { user } = await createUserWithSession(services);
await setUserQuota(db, user.id, { maxInstances: 10_000, maxCpuMillis: 100_000_000, maxMemoryMb: 100_000_000 });
const fleet: string[] = [];

/** Grows the fleet to `n` running interruptible instances, ten creates at a time (at normal: conserve admits no new interruptible one). */
async function growFleet(n: number) {
  soc = 80;
  await until(
    async () => monitor.status().level,
    (l) => l === "normal",
    "level normal",
    60_000,
    20,
  );
  while (fleet.length < n) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(10, n - fleet.length) }, (_, k) =>
        createInstance(services, { actor: systemActor("bench"), ownerId: user.id }, { name: `i-${fleet.length + k}`, planId: "nano", imageId: "busybox", priority: "interruptible" }),
      ),
    );
    fleet.push(...batch.map((b) => b.instance.id));
    const ids = batch.map((b) => b.actionId);
    await until(
      () => db.select({ status: instanceActions.status }).from(instanceActions).where(inArray(instanceActions.id, ids)),
      (rows) => rows.every((r) => r.status === "succeeded" || r.status === "failed"),
      "the creates",
      120_000,
      50,
    );
  }
}

/** At conserve with every container throttled and nothing in flight: the state each run starts from. */
async function throttledAtConserve() {
  await until(
    async () => monitor.status().level,
    (l) => l === "conserve",
    "level conserve",
    60_000,
    20,
  );
  await until(
    () => db.select({ state: instances.state, throttle: instances.cpuThrottleMillis }).from(instances).where(inArray(instances.id, fleet)),
    (rows) => rows.every((r) => r.state === "running" && r.throttle !== null),
    "the throttle on every instance",
    120_000,
    50,
  );
  await until(
    () =>
      db
        .select({ status: instanceActions.status })
        .from(instanceActions)
        .where(and(inArray(instanceActions.instanceId, fleet), inArray(instanceActions.status, ["pending", "running"]))),
    (open) => open.length === 0,
    "no action in flight",
    120_000,
    50,
  );
}

/**
 * Where the kernel says whether a container's processes are frozen: its
 * cgroup's freezer state, read as the effective one (frozen by its own pause
 * or through its freeze group). Under the freeze group on cgroupfs, else
 * under the engine's default parent.
 */
async function freezeProbes(ids: readonly string[]): Promise<Array<() => boolean>> {
  const rows = await db
    .select({ id: instances.id, containerId: instances.containerId, priority: instances.priority })
    .from(instances)
    .where(inArray(instances.id, [...ids]));
  return rows.map(({ containerId, priority }) => {
    const probe = frozenProbe(freezeGroupOf(config, priority), containerId!) ?? frozenProbe("/docker", containerId!);
    if (!probe) throw new Error(`no cgroup found for container ${containerId}`);
    return probe;
  });
}

/** Polls the probes every millisecond; returns when each container was first seen frozen. */
async function watchFrozen(probes: ReadonlyArray<() => boolean>, timeoutMs: number): Promise<number[]> {
  const at: Array<number | undefined> = probes.map(() => undefined);
  const deadline = Date.now() + timeoutMs;
  while (at.some((t) => t === undefined)) {
    if (Date.now() > deadline) throw new Error("timed out waiting for the containers to freeze");
    for (const [i, frozen] of probes.entries()) if (at[i] === undefined && frozen()) at[i] = now();
    await Bun.sleep(1);
  }
  return at as number[];
}

type Run = { firstFrozen: number; lastFrozen: number; firstPaused: number; lastPaused: number; firstResumed: number; lastResumed: number; steps: Record<string, number> };
const bySize: Array<{ size: number; runs: Run[] }> = [];
let engineFloor: { containers: number; pause: { first: number; last: number }; unpause: { first: number; last: number } } | undefined;
try {
  for (const size of sizes) {
    await growFleet(size);
    soc = 31;
    await throttledAtConserve();
    const results: Run[] = [];
    for (let run = 0; run < runs; run++) {
      engineAt.pause.clear();
      engineAt.unpause.clear();
      // The crossing: one block whose last byte (its checksum) completes a reading below the threshold.
      const probes = await freezeProbes(fleet.slice(0, size));
      soc = 29;
      controller.write(block(soc));
      const t0 = now();
      const frozenAt = await watchFrozen(probes, 60_000);
      await until(
        async () => engineAt.pause.size,
        (n) => n >= size,
        `${size} containers paused`,
        60_000,
        2,
      );
      const paused = [...engineAt.pause.values()];
      const [change] = await db.select().from(energyLevelChanges).orderBy(desc(energyLevelChanges.seq)).limit(1);
      const [actions] = await db
        .select({
          firstRequested: sql<Date>`min(${instanceActions.createdAt})`.mapWith((v) => new Date(v)),
          lastRequested: sql<Date>`max(${instanceActions.createdAt})`.mapWith((v) => new Date(v)),
          lastStarted: sql<Date>`max(${instanceActions.startedAt})`.mapWith((v) => new Date(v)),
        })
        .from(instanceActions)
        .where(and(inArray(instanceActions.instanceId, fleet), eq(instanceActions.kind, "pause"), sql`${instanceActions.createdAt} >= ${new Date(t0 - 1000).toISOString()}::timestamptz`));

      // Recovery: times count from the level change the monitor records (the filter waits for three readings first).
      soc = 80;
      const [critical] = await db.select().from(energyLevelChanges).orderBy(desc(energyLevelChanges.seq)).limit(1);
      await until(
        async () => engineAt.unpause.size,
        (n) => n >= size,
        `${size} containers resumed`,
        120_000,
        10,
      );
      const [recovered] = await db.select().from(energyLevelChanges).where(eq(energyLevelChanges.fromLevel, "critical")).orderBy(desc(energyLevelChanges.seq)).limit(1);
      if (critical?.toLevel !== "critical" || !recovered || recovered.seq <= critical.seq) throw new Error("the run did not go through a critical level change and back");
      const resumed = [...engineAt.unpause.values()];
      const levelAt = recovered.at.getTime();
      results.push({
        firstFrozen: Math.min(...frozenAt) - t0,
        lastFrozen: Math.max(...frozenAt) - t0,
        firstPaused: Math.min(...paused) - t0,
        lastPaused: Math.max(...paused) - t0,
        firstResumed: Math.min(...resumed) - levelAt,
        lastResumed: Math.max(...resumed) - levelAt,
        steps: {
          "byte written → level change recorded": change!.at.getTime() - t0,
          "→ first pause requested": actions!.firstRequested.getTime() - change!.at.getTime(),
          "→ last pause requested": actions!.lastRequested.getTime() - change!.at.getTime(),
          "→ last pause claimed by a lifecycle worker": actions!.lastStarted.getTime() - change!.at.getTime(),
        },
      });
      soc = 31;
      await throttledAtConserve();
    }
    bySize.push({ size, runs: results });
    console.error(`${size} containers: done ${runs} runs`);
  }
  // The engine's own floor, for comparison: the whole fleet paused and unpaused straight through the Docker API, 8 at a time.
  const names = fleet.map((id) => `${namespace}-${id}`);
  const direct = async (work: (name: string) => Promise<unknown>) => {
    const started = now();
    const done = await mapBounded(names, 8, async (name) => {
      await work(name);
      return now() - started;
    });
    return { first: Math.min(...done), last: Math.max(...done) };
  };
  engineFloor = { containers: names.length, pause: await direct((name) => docker.getContainer(name).pause()), unpause: await direct((name) => docker.getContainer(name).unpause()) };
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
const fmt = (ms: number) => `${ms.toFixed(1)} ms`.padStart(10);
const line = (label: string, xs: number[]) => console.log(`  ${label.padEnd(44)} p50 ${fmt(percentile(xs, 50))}   p99 ${fmt(percentile(xs, 99))}   max ${fmt(Math.max(...xs))}`);

console.log(`power emergency at scale: ${runs} runs per size; dwell 0; resume stagger ${staggerArg} ms; Docker ${(await docker.version()).Version}, ${navigator.hardwareConcurrency} CPUs`);
for (const { size, runs: rs } of bySize) {
  console.log(`${size} interruptible containers:`);
  line(
    "byte written → first container frozen",
    rs.map((r) => r.firstFrozen),
  );
  line(
    "byte written → last container frozen",
    rs.map((r) => r.lastFrozen),
  );
  line(
    "byte written → first paused in Docker's record",
    rs.map((r) => r.firstPaused),
  );
  line(
    "byte written → last paused in Docker's record",
    rs.map((r) => r.lastPaused),
  );
  line(
    "level back to normal → first resumed",
    rs.map((r) => r.firstResumed),
  );
  line(
    `level back to normal → last resumed`,
    rs.map((r) => r.lastResumed),
  );
  for (const label of Object.keys(rs[0]!.steps))
    line(
      `  ${label}`,
      rs.map((r) => r.steps[label]!),
    );
}
if (engineFloor) {
  const { containers, pause, unpause } = engineFloor;
  console.log(
    `engine floor, ${containers} containers straight through the Docker API, 8 at a time: paused first ${fmt(pause.first)} last ${fmt(pause.last)}; unpaused first ${fmt(unpause.first)} last ${fmt(unpause.last)}`,
  );
}
console.log("growth (p50 of the last frozen, against the smallest size):");
const base = percentile(
  bySize[0]!.runs.map((r) => r.lastFrozen),
  50,
);
for (const { size, runs: rs } of bySize) {
  const p50 = percentile(
    rs.map((r) => r.lastFrozen),
    50,
  );
  console.log(
    `  ${String(size).padStart(4)} containers: last frozen p50 ${fmt(p50)}  ×${(p50 / base).toFixed(2)} for ×${(size / sizes[0]!).toFixed(1)} containers  (${(p50 / size).toFixed(1)} ms per container)`,
  );
}
process.exit(0);
