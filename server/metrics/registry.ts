import { collectDefaultMetrics, Counter, Histogram, Registry } from "prom-client";
import type { ProcedureInfo } from "../procedures";
import { createProcedureMetrics } from "./procedures";

/**
 * Process metrics (CPU, memory, file descriptors, event-loop lag, GC) describe
 * the process, not an app, so one registry per process holds them.
 */
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** One registry per app instance, so tests can run several apps in one process. */
export function createMetrics(procedureList: readonly Pick<ProcedureInfo, "path" | "type">[]) {
  const registry = new Registry();
  const httpRequests = new Counter({
    name: "http_requests_total",
    help: "HTTP requests by method, route and status",
    labelNames: ["method", "route", "status"] as const,
    registers: [registry],
  });
  const httpDuration = new Histogram({
    name: "http_request_duration_seconds",
    help: "HTTP request duration",
    labelNames: ["method", "route"] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  /**
   * Hook for the ingress: requests the reverse proxy served per tenant
   * instance. Whatever learns the counts (Caddy's access log or metrics) calls
   * `ingressRequests.inc({ instance_id, status_class: "2xx" }, n)`; the
   * Grafana dashboard already charts the family.
   */
  const ingressRequests = new Counter({
    name: "sahary_ingress_requests_total",
    help: "Requests the ingress served per instance and status class",
    labelNames: ["instance_id", "status_class"] as const,
    registers: [registry],
  });
  const procedures = createProcedureMetrics(registry, procedureList);

  return {
    registry,
    httpRequests,
    httpDuration,
    ingressRequests,
    procedures,
    contentType: registry.contentType,
    /** The exposition text: this app's families, then the process's. */
    async render(): Promise<string> {
      return `${await registry.metrics()}\n${await processMetrics().metrics()}`;
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
