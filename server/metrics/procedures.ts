import type { TRPCError } from "@trpc/server";
import { Counter, Histogram, type Registry } from "prom-client";
import { appCodeForTrpcError } from "../errors";
import type { ProcedureInfo } from "../procedures";
import type { ProcedureObserver } from "../trpc";

/** The label of calls to paths the router does not have: request paths are caller input and must not become labels. */
export const UNKNOWN_PROCEDURE = "(unknown)";

/**
 * Per-procedure calls, errors by appCode and latency. Each call of a batch is
 * its own observation (the procedure middleware reports it); errors raised
 * before a procedure runs (unknown path, unparseable body, wrong method) reach
 * only tRPC's onError and are counted from there.
 */
export function createProcedureMetrics(registry: Registry, procedures: readonly Pick<ProcedureInfo, "path" | "type">[]) {
  const known = new Set(procedures.map((p) => p.path));
  const calls = new Counter({
    name: "sahary_trpc_calls_total",
    help: "tRPC procedure calls by procedure, type and result (ok or error)",
    labelNames: ["procedure", "type", "result"] as const,
    registers: [registry],
  });
  const errors = new Counter({
    name: "sahary_trpc_errors_total",
    help: "tRPC procedure errors by procedure and appCode",
    labelNames: ["procedure", "app_code"] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: "sahary_trpc_call_duration_seconds",
    help: "tRPC procedure call duration (inside the batch, from the first middleware to the result)",
    labelNames: ["procedure", "type"] as const,
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  // Every procedure shows from the first scrape, so rates start at zero rather than being absent.
  for (const { path, type } of procedures) for (const result of ["ok", "error"]) calls.inc({ procedure: path, type, result }, 0);

  const counted = new WeakSet<TRPCError>();

  const observe: ProcedureObserver = ({ path, type, seconds, error }) => {
    const procedure = known.has(path) ? path : UNKNOWN_PROCEDURE;
    calls.inc({ procedure, type, result: error ? "error" : "ok" });
    duration.observe({ procedure, type }, seconds);
    if (error) {
      counted.add(error);
      errors.inc({ procedure, app_code: appCodeForTrpcError(error) });
    }
  };

  return {
    observe,
    /** For tRPC's onError: counts the errors no procedure middleware saw. */
    onError(path: string | undefined, type: string, error: TRPCError): void {
      if (counted.has(error)) return;
      const procedure = path && known.has(path) ? path : UNKNOWN_PROCEDURE;
      calls.inc({ procedure, type: type === "query" || type === "mutation" ? type : "unknown", result: "error" });
      errors.inc({ procedure, app_code: appCodeForTrpcError(error) });
    },
  };
}
