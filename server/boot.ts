import { type Config, ConfigError, loadConfig } from "./config";
import { createApp, serveOptions } from "./app";
import { createLogger, serializeError } from "./log";
import { createServices, type Services } from "./services";
import { startWorkers, type WorkerRunner } from "../workers/runner";
import { processors } from "../workers/processors";
import { startMonitor, type Monitor } from "../hardware/monitor";

/** `monitor`: run the hardware monitor here when a charge controller (or simulator) is configured. */
export type Parts = { api: boolean; workers: boolean; monitor?: boolean };

/**
 * Starts the requested parts of the platform in this process and stops them
 * in order on SIGTERM/SIGINT: stop accepting requests, stop reading the
 * controller, let jobs and requests in flight finish, then close connections.
 */
export async function boot(parts: Parts): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    console.error(JSON.stringify({ level: "error", msg: error instanceof ConfigError ? error.message : String(error) }));
    process.exit(1);
  }
  const log = createLogger({ level: config.logLevel, base: { service: "sahary", pid: process.pid } });

  let services: Services;
  try {
    services = await createServices(config, { log });
  } catch (error) {
    log.error("start-up failed", { error: serializeError(error) });
    process.exit(1);
  }

  // Signals are handled from here on, so a stop that arrives while parts are
  // still starting (background tasks, schedules) is still a graceful one.
  let stopping = false;
  let server: ReturnType<typeof Bun.serve> | undefined;
  let monitor: Promise<Monitor | undefined> = Promise.resolve(undefined);
  let workers: Promise<WorkerRunner | undefined> = Promise.resolve(undefined);
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("shutting down", { signal });
    try {
      await server?.stop();
      await (await monitor.catch(() => undefined))?.stop();
      await (await workers.catch(() => undefined))?.close();
      await services.close();
    } catch (error) {
      log.error("shutdown error", { error: serializeError(error) });
      process.exit(1);
    }
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));

  if (parts.api) {
    server = Bun.serve({
      hostname: config.host,
      port: config.port,
      fetch: createApp(services).fetch,
      ...serveOptions(config),
    });
    log.info("listening", { url: `http://${server.hostname}:${server.port}`, database: services.database.driver });
  }

  if (parts.workers) {
    workers = startWorkers(services, processors);
    await startOrExit(workers, "workers failed to start");
  }

  if (parts.monitor) {
    if (config.energy.monitorEnabled) {
      monitor = startMonitor(services);
      await startOrExit(monitor, "hardware monitor failed to start");
    } else if (!parts.api && !parts.workers) {
      log.error("nothing to monitor: set SERIAL_PORT to the charge controller's serial port, or ENERGY_SIMULATOR to a scenario");
      process.exit(1);
    } else {
      log.info("hardware monitor off: no SERIAL_PORT or ENERGY_SIMULATOR configured");
    }
  }

  async function startOrExit(starting: Promise<unknown>, message: string) {
    try {
      await starting;
    } catch (error) {
      log.error(message, { error: serializeError(error) });
      process.exit(1);
    }
  }
}
