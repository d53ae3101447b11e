import { and, asc, eq, gt, inArray, isNull, lt, lte, ne, or, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { hosts, instancePlans, instances, instanceStateHistory, meterCursors } from "../../db/schema";
import type { Engines } from "../compute/engines";
import { LIVE_STATES } from "../compute/states";
import type { Config } from "../config";
import type { Logger } from "../log";
import { pgArray } from "./arrays";
import type { InstanceShare } from "../energy/attribution";
import { ContainerNotRunningError, mapBounded, sampleCounters, type CounterSample } from "./counters";
import { attributeTickEnergy, type TickEnergy } from "../energy/accounting";
import { accountSegments, apportion, counterDelta, liveMs, type HistoryRow, type PlanChange } from "./window";
import { meterVolumes } from "./volume-metering";

export type MeteringDeps = { db: Database; config: Config; engines: Engines; log: Logger };

/**
 * State changes are stamped with their transaction's start time, so a change
 * can become visible a little after the moment it records. Metering stays
 * this far behind the clock so that no such row lands behind a cursor.
 */
export const METERING_SETTLE_MS = 5000;

// Instances per round trip: bounds the statement size and the memory a tick holds.
const PAGE = 1000;

/**
 * `windows`: cursors this tick tried to advance (a concurrent tick may have taken some; their usage is then not added twice).
 * `volumes`: volumes whose storage time was accounted.
 * `energy`: the load energy this tick shared out among the instances (null: none measured since the last tick).
 */
export type MeteringResult = { instances: number; windows: number; sampled: number; sampledViaCgroup: number; sampleFailures: number; volumes: number; until: string; energy: TickEnergy };

/**
 * One metering tick: for every instance that is not deleted (and deleted ones
 * until their last moment is accounted), accounts the time since its cursor
 * from the state history, samples the counters of live containers (in
 * parallel, bounded by METERING_SAMPLE_CONCURRENCY), and adds the result to
 * the hourly usage records in the same statement that advances the cursor.
 *
 * `until` defaults to now less the settle margin. With `sample: false` only
 * time is accounted (invoicing closes a period that way): counter growth is
 * then attributed to the next window that samples.
 *
 * A tick that sampled then shares out the load energy the charge controller
 * measured since the last one, by the CPU time and reservations it just
 * measured (per-tenant solar accounting, energy-usage.ts).
 */
export async function meterUsage(deps: MeteringDeps, opts: { until?: Date; sample?: boolean } = {}): Promise<MeteringResult> {
  const until = opts.until ?? new Date(Date.now() - METERING_SETTLE_MS);
  const result: MeteringResult = { instances: 0, windows: 0, sampled: 0, sampledViaCgroup: 0, sampleFailures: 0, volumes: 0, until: until.toISOString(), energy: null };
  const sample = opts.sample !== false;
  const shares: InstanceShare[] = [];
  let after: string | null = null;
  for (;;) {
    const page = await candidates(deps.db, until, after);
    if (page.length === 0) break;
    after = page.at(-1)!.id;
    await meterPage(deps, page, until, sample, result, shares);
    if (page.length < PAGE) break;
  }
  result.volumes = await meterVolumes(deps.db, until);
  if (sample) {
    try {
      result.energy = await attributeTickEnergy(deps.db, deps.config, { until, shares });
    } catch (error) {
      // The usage is recorded; the next tick shares this energy out with its own window.
      deps.log.warn("energy attribution failed", { error: (error as Error).message });
    }
  }
  return result;
}

async function candidates(db: Database, until: Date, after: string | null) {
  return db
    .select({
      id: instances.id,
      userId: instances.userId,
      state: instances.state,
      cpuMillis: instances.cpuMillis,
      createdAt: instances.createdAt,
      containerId: instances.containerId,
      priority: instances.priority,
      endpoint: hosts.endpoint,
      cursor: meterCursors,
    })
    .from(instances)
    .innerJoin(hosts, eq(hosts.id, instances.hostId))
    .leftJoin(meterCursors, eq(meterCursors.instanceId, instances.id))
    .where(
      and(
        after ? gt(instances.id, after) : undefined,
        or(
          isNull(meterCursors.instanceId),
          and(
            lt(meterCursors.meteredUntil, until),
            // A deleted instance is done once its cursor has passed the deletion (with a margin for clock skew between processes).
            or(ne(instances.state, "deleted"), sql`${meterCursors.meteredUntil} < ${instances.stateChangedAt} + interval '1 minute'`),
          ),
        ),
      ),
    )
    .orderBy(asc(instances.id))
    .limit(PAGE);
}

type Candidate = Awaited<ReturnType<typeof candidates>>[number];

async function meterPage(deps: MeteringDeps, page: Candidate[], until: Date, sample: boolean, result: MeteringResult, shares: InstanceShare[]) {
  const { db, config, engines, log } = deps;
  result.instances += page.length;

  // A first tick for an instance starts its cursor at its creation, before anything billable happened.
  const fresh = page.filter((c) => !c.cursor);
  if (fresh.length) {
    await db
      .insert(meterCursors)
      .values(fresh.map((c) => ({ instanceId: c.id, meteredUntil: c.createdAt, state: "pending" as const, reason: "created" })))
      .onConflictDoNothing();
  }
  const cursors = new Map(
    (
      await db
        .select()
        .from(meterCursors)
        .where(
          inArray(
            meterCursors.instanceId,
            page.map((c) => c.id),
          ),
        )
    ).map((c) => [c.instanceId, c]),
  );

  const rows = await db
    .select({
      instanceId: instanceStateHistory.instanceId,
      seq: instanceStateHistory.seq,
      fromState: instanceStateHistory.fromState,
      toState: instanceStateHistory.toState,
      reason: instanceStateHistory.reason,
      at: instanceStateHistory.at,
    })
    .from(instanceStateHistory)
    .innerJoin(meterCursors, eq(meterCursors.instanceId, instanceStateHistory.instanceId))
    .where(
      and(
        inArray(
          instanceStateHistory.instanceId,
          page.map((c) => c.id),
        ),
        gt(instanceStateHistory.at, meterCursors.meteredUntil),
        lte(instanceStateHistory.at, until),
      ),
    )
    .orderBy(asc(instanceStateHistory.instanceId), asc(instanceStateHistory.seq));
  const history = new Map<string, HistoryRow[]>();
  for (const row of rows) {
    let list = history.get(row.instanceId);
    if (!list) {
      list = [];
      history.set(row.instanceId, list);
    }
    list.push(row);
  }
  // Resizes inside the window: usage is split where the plan (and its price) changed.
  const planRows = await db
    .select({ instanceId: instancePlans.instanceId, seq: instancePlans.seq, at: instancePlans.fromAt })
    .from(instancePlans)
    .innerJoin(meterCursors, eq(meterCursors.instanceId, instancePlans.instanceId))
    .where(
      and(
        inArray(
          instancePlans.instanceId,
          page.map((c) => c.id),
        ),
        gt(instancePlans.seq, meterCursors.planSeq),
        lte(instancePlans.fromAt, until),
      ),
    );
  const planChanges = new Map<string, PlanChange[]>();
  for (const row of planRows) {
    let list = planChanges.get(row.instanceId);
    if (!list) {
      list = [];
      planChanges.set(row.instanceId, list);
    }
    list.push(row);
  }

  const samples = new Map<string, CounterSample & { at: Date }>();
  /**
   * Live instances whose container could not be seen running this tick (the
   * engine did not answer, or the container has died and the reconciler has
   * not recorded it yet). Their cursors stay where they are: time that could
   * not be confirmed is not billed now. When the reconciler records the death
   * it dates it at the container's finish, after the held cursor; when the
   * container is seen running again (an engine that kept it alive), the held
   * time is accounted then.
   */
  const unconfirmed = new Set<string>();
  if (sample) {
    // Only instances with a window to account: a sample of one whose cursor is already at `until` would be thrown away.
    const live = page.filter((c) => LIVE_STATES.includes(c.state) && (cursors.get(c.id)?.meteredUntil ?? until) < until);
    await mapBounded(live, config.billing.sampleConcurrency, async (c) => {
      try {
        const counters = await sampleCounters(engines.get(c.endpoint), config, { instanceId: c.id, containerId: c.containerId, endpoint: c.endpoint, priority: c.priority });
        if (counters) {
          samples.set(c.id, { ...counters, at: new Date() });
          result.sampled += 1;
          if (counters.via === "cgroup") result.sampledViaCgroup += 1;
        }
      } catch (error) {
        unconfirmed.add(c.id);
        result.sampleFailures += 1;
        if (error instanceof ContainerNotRunningError) log.debug("metering: container not running; cursor held", { instanceId: c.id });
        else log.warn("metering sample failed; cursor held", { instanceId: c.id, error: (error as Error).message });
      }
    });
  }

  const cursorRows: Array<Record<string, string | number | Date | null>> = [];
  const usageRows: Array<Record<string, string | number | Date | null>> = [];
  for (const c of page) {
    const cursor = cursors.get(c.id);
    if (!cursor || cursor.meteredUntil >= until || unconfirmed.has(c.id)) continue;
    const window = accountSegments(
      cursor.meteredUntil.getTime(),
      until.getTime(),
      { state: cursor.state, reason: cursor.reason, startSeq: cursor.startSeq, planSeq: cursor.planSeq },
      history.get(c.id) ?? [],
      planChanges.get(c.id) ?? [],
    );
    const counters = samples.get(c.id);
    const weights = window.hours.map(liveMs);
    let next = {
      sampleStartSeq: cursor.sampleStartSeq,
      containerId: cursor.containerId,
      cpuNs: cursor.cpuNs,
      rxBytes: cursor.rxBytes,
      txBytes: cursor.txBytes,
      memoryBytes: cursor.memoryBytes,
      sampledAt: cursor.sampledAt,
    };
    let deltas = { cpuNs: 0, rxBytes: 0, txBytes: 0 };
    // The baseline stays valid only while the container has not been restarted since it was read. The start
    // that began the current run can still be ahead of the window (history settles for METERING_SETTLE_MS) while
    // the container is sampled: a baseline read after that start is of the same run, whether or not the window
    // had reached the start when it was read. (Treating it as a new run counted a new container's CPU time once
    // per tick during its first seconds.)
    const runStart = window.end.startSeq === null ? undefined : history.get(c.id)?.find((row) => row.seq === window.end.startSeq);
    const sameRun =
      cursor.containerId !== null && cursor.sampledAt !== null && (cursor.sampleStartSeq === window.end.startSeq || (runStart !== undefined && cursor.sampledAt.getTime() >= runStart.at.getTime()));
    let memoryBytes = sameRun ? (cursor.memoryBytes ?? 0) : 0;
    if (counters) {
      const reset = !sameRun || counters.containerId !== cursor.containerId;
      deltas = {
        cpuNs: counterDelta(counters.cpuNs, cursor.cpuNs, reset),
        rxBytes: counterDelta(counters.rxBytes, cursor.rxBytes, reset),
        txBytes: counterDelta(counters.txBytes, cursor.txBytes, reset),
      };
      memoryBytes = reset || cursor.memoryBytes === null ? counters.memoryBytes : (counters.memoryBytes + cursor.memoryBytes) / 2;
      next = {
        sampleStartSeq: window.end.startSeq,
        containerId: counters.containerId,
        cpuNs: counters.cpuNs,
        rxBytes: counters.rxBytes,
        txBytes: counters.txBytes,
        memoryBytes: counters.memoryBytes,
        sampledAt: counters.at,
      };
    }
    cursorRows.push({
      instanceId: c.id,
      version: cursor.version,
      meteredUntil: until,
      state: window.end.state,
      reason: window.end.reason,
      startSeq: window.end.startSeq,
      planSeq: window.planSeq,
      ...next,
    });
    const liveInWindow = weights.reduce((a, w) => a + w, 0);
    if (sample && (liveInWindow > 0 || deltas.cpuNs > 0))
      shares.push({ instanceId: c.id, userId: c.userId, cpuNs: deltas.cpuNs, reservedMillisMs: c.cpuMillis * liveInWindow, liveFrom: cursor.meteredUntil.getTime() });

    if (window.hours.length === 0 && deltas.cpuNs === 0 && deltas.rxBytes === 0 && deltas.txBytes === 0) continue;
    // Counter growth with no live time in the window (a container stopped since its last sample) goes to the window's last hour.
    const hoursOut = window.hours.length
      ? window.hours
      : [{ hour: Math.floor((until.getTime() - 1) / 3_600_000) * 3_600_000, runningMs: 0, pausedMs: 0, emergencyPausedMs: 0, planSeq: window.planSeq }];
    const cpu = apportion(deltas.cpuNs, weights.length ? weights : [0]);
    const rx = apportion(deltas.rxBytes, weights.length ? weights : [0]);
    const tx = apportion(deltas.txBytes, weights.length ? weights : [0]);
    hoursOut.forEach((h, i) => {
      usageRows.push({
        instanceId: c.id,
        hour: new Date(h.hour),
        planSeq: h.planSeq,
        userId: c.userId,
        runningMs: h.runningMs,
        pausedMs: h.pausedMs,
        emergencyPausedMs: h.emergencyPausedMs,
        cpuNs: cpu[i]!,
        memoryByteMs: Math.round(memoryBytes * liveMs(h)),
        rxBytes: rx[i]!,
        txBytes: tx[i]!,
      });
    });
  }
  if (cursorRows.length === 0) return;
  await writeWindows(db, cursorRows, usageRows);
  result.windows += cursorRows.length;
}

/**
 * Advances the cursors and adds the usage in one statement. Only cursors
 * still at the version this tick read are advanced, and only their usage is
 * added: a concurrent or repeated tick on the same instance adds nothing.
 */
async function writeWindows(db: Database, cursorRows: Array<Record<string, string | number | Date | null>>, usageRows: Array<Record<string, string | number | Date | null>>): Promise<void> {
  const col = (rows: Array<Record<string, string | number | Date | null>>, key: string) => pgArray(rows.map((r) => r[key] ?? null));
  await db.execute(sql`
    with cursor_in as (
      select * from unnest(
        ${col(cursorRows, "instanceId")}::uuid[], ${col(cursorRows, "version")}::bigint[], ${col(cursorRows, "meteredUntil")}::timestamptz[],
        ${col(cursorRows, "state")}::instance_state[], ${col(cursorRows, "reason")}::text[], ${col(cursorRows, "startSeq")}::bigint[],
        ${col(cursorRows, "sampleStartSeq")}::bigint[], ${col(cursorRows, "containerId")}::text[], ${col(cursorRows, "cpuNs")}::bigint[],
        ${col(cursorRows, "rxBytes")}::bigint[], ${col(cursorRows, "txBytes")}::bigint[], ${col(cursorRows, "memoryBytes")}::bigint[],
        ${col(cursorRows, "sampledAt")}::timestamptz[], ${col(cursorRows, "planSeq")}::int[]
      ) as t(instance_id, version, metered_until, state, reason, start_seq, sample_start_seq, container_id, cpu_ns, rx_bytes, tx_bytes, memory_bytes, sampled_at, plan_seq)
    ),
    advanced as (
      update meter_cursors c set
        version = c.version + 1, metered_until = i.metered_until, state = i.state, reason = i.reason, start_seq = i.start_seq,
        sample_start_seq = i.sample_start_seq, container_id = i.container_id, cpu_ns = i.cpu_ns, rx_bytes = i.rx_bytes,
        tx_bytes = i.tx_bytes, memory_bytes = i.memory_bytes, sampled_at = i.sampled_at, plan_seq = i.plan_seq, updated_at = now()
      from cursor_in i
      where c.instance_id = i.instance_id and c.version = i.version
      returning c.instance_id
    ),
    usage_in as (
      select * from unnest(
        ${col(usageRows, "instanceId")}::uuid[], ${col(usageRows, "hour")}::timestamptz[], ${col(usageRows, "userId")}::uuid[],
        ${col(usageRows, "runningMs")}::bigint[], ${col(usageRows, "pausedMs")}::bigint[], ${col(usageRows, "emergencyPausedMs")}::bigint[],
        ${col(usageRows, "cpuNs")}::bigint[], ${col(usageRows, "memoryByteMs")}::numeric[], ${col(usageRows, "rxBytes")}::bigint[],
        ${col(usageRows, "txBytes")}::bigint[], ${col(usageRows, "planSeq")}::int[]
      ) as u(instance_id, hour, user_id, running_ms, paused_ms, emergency_paused_ms, cpu_ns, memory_byte_ms, rx_bytes, tx_bytes, plan_seq)
    ),
    added as (
      insert into usage_records (instance_id, hour, plan_seq, user_id, running_ms, paused_ms, emergency_paused_ms, cpu_ns, memory_byte_ms, rx_bytes, tx_bytes)
      select u.instance_id, u.hour, u.plan_seq, u.user_id, u.running_ms, u.paused_ms, u.emergency_paused_ms, u.cpu_ns, u.memory_byte_ms, u.rx_bytes, u.tx_bytes
      from usage_in u join advanced a on a.instance_id = u.instance_id
      on conflict (instance_id, hour, plan_seq) do update set
        running_ms = usage_records.running_ms + excluded.running_ms,
        paused_ms = usage_records.paused_ms + excluded.paused_ms,
        emergency_paused_ms = usage_records.emergency_paused_ms + excluded.emergency_paused_ms,
        cpu_ns = usage_records.cpu_ns + excluded.cpu_ns,
        memory_byte_ms = usage_records.memory_byte_ms + excluded.memory_byte_ms,
        rx_bytes = usage_records.rx_bytes + excluded.rx_bytes,
        tx_bytes = usage_records.tx_bytes + excluded.tx_bytes,
        updated_at = now()
      returning 1
    )
    select 1
  `);
}
