import type { Services } from "./services";

export type DependencyState = { state: "up" | "down"; required: boolean; latencyMs: number; error?: string };
export type Readiness = { status: "ready" | "not_ready"; checks: Record<string, DependencyState> };

const CHECK_TIMEOUT_MS = 2000;

/**
 * PostgreSQL and Redis are required: without them no request can be served.
 * Docker is reported but not required: the API still accepts work and queues
 * it; workers act on it when the engine answers again. The ingress proxy is
 * reported but not required either: it serves instances' visitors, not the
 * API, and the workers load its whole configuration as soon as it answers.
 */
export async function checkReadiness(services: Pick<Services, "database" | "redis" | "docker" | "ingress">): Promise<Readiness> {
  const [database, redis, docker, proxy] = await Promise.all([
    probe(true, () => services.database.ping()),
    probe(true, async () => {
      await services.redis.ping();
    }),
    probe(false, async () => {
      await services.docker.ping();
    }),
    probe(false, () => services.ingress.admin.ping()),
  ]);
  const checks = { database, redis, docker, proxy };
  const ready = Object.values(checks).every((check) => check.state === "up" || !check.required);
  return { status: ready ? "ready" : "not_ready", checks };
}

async function probe(required: boolean, check: () => Promise<void>): Promise<DependencyState> {
  const started = performance.now();
  let timer: Timer | undefined;
  try {
    await Promise.race([
      check(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
      }),
    ]);
    return { state: "up", required, latencyMs: elapsed(started) };
  } catch (error) {
    return { state: "down", required, latencyMs: elapsed(started), error: describe(error) };
  } finally {
    clearTimeout(timer);
  }
}

const elapsed = (started: number) => Math.round((performance.now() - started) * 100) / 100;

// Only a short reason: readiness is public and must not leak connection strings.
function describe(error: unknown): string {
  const code = (error as { code?: unknown })?.code;
  if (typeof code === "string") return code;
  const message = error instanceof Error ? error.message : String(error);
  return message
    .split("\n")[0]!
    .replace(/\w+:\/\/\S+/g, "<url>")
    .slice(0, 120);
}
