import type { Readable } from "node:stream";
import type { Config } from "../config";
import type { Logger } from "../log";
import { interruptibleSleep } from "../waits";
import { LABELS } from "./containers";
import type { Engines } from "./engines";

/** Container events that can mean an instance's container is no longer what its state says. */
const WATCHED_ACTIONS = ["die", "oom", "destroy", "pause", "unpause", "start"];

export type ContainerEvent = { instanceId: string; action: string; timeNano: string };

/**
 * Follows one engine's container events for this namespace and hands each to
 * `onEvent`. The stream is requested in windows (`since`/`until`), so Docker
 * closes it by itself every WINDOW_S and a connection that silently died is
 * noticed within a window; a watchdog destroys a stream that outlives its
 * window. Each new window starts where the last one ended, so a reconnect
 * replays what happened meanwhile (handlers must be idempotent). Errors back
 * off exponentially up to 30 s.
 */
export function watchEngineEvents(
  deps: { config: Config; engines: Engines; log: Logger },
  host: { name: string; endpoint: string },
  onEvent: (event: ContainerEvent) => Promise<void>,
  opts: { windowS?: number } = {},
): { stop(): Promise<void> } {
  const windowS = opts.windowS ?? 60;
  const log = deps.log.child({ host: host.name, component: "docker-events" });
  const docker = deps.engines.events(host.endpoint);
  let stopped = false;
  let current: Readable | undefined;
  const { sleep, wake } = interruptibleSleep();

  const loop = async () => {
    let since = Math.floor(Date.now() / 1000) - 1;
    let failures = 0;
    while (!stopped) {
      const until = Math.floor(Date.now() / 1000) + windowS;
      try {
        await readWindow(since, until);
        // A stream the engine closed early must not move `since` past now.
        since = Math.min(until, Math.floor(Date.now() / 1000));
        failures = 0;
      } catch (error) {
        if (stopped) break;
        failures += 1;
        const backoff = Math.min(30_000, 500 * 2 ** Math.min(failures, 6));
        log.warn("docker event stream failed; reconnecting", { error: (error as Error).message, retryInMs: backoff });
        await sleep(backoff);
      }
    }
  };

  const readWindow = async (since: number, until: number) => {
    const stream = (await docker.getEvents({
      since,
      until,
      filters: { type: ["container"], label: [`${LABELS.namespace}=${deps.config.docker.namespace}`], event: WATCHED_ACTIONS },
    } as object)) as unknown as Readable;
    current = stream;
    if (stopped) stream.destroy();
    await new Promise<void>((resolve, reject) => {
      let buffered = "";
      const watchdog = setTimeout(() => stream.destroy(new Error(`event stream outlived its window by 15 s`)), (until - Date.now() / 1000) * 1000 + 15_000);
      const done = (error?: Error) => {
        clearTimeout(watchdog);
        current = undefined;
        if (error && !stopped) reject(error);
        else resolve();
      };
      stream.on("data", (chunk: Buffer) => {
        buffered += chunk.toString("utf8");
        const lines = buffered.split("\n");
        buffered = lines.pop() ?? "";
        for (const line of lines) if (line.trim()) dispatch(line);
      });
      stream.on("end", () => done());
      stream.on("close", () => done());
      stream.on("error", (error: Error) => done(error));
    });
  };

  const dispatch = (line: string) => {
    let event: { Action?: string; timeNano?: number | string; Actor?: { Attributes?: Record<string, string> } };
    try {
      event = JSON.parse(line);
    } catch {
      log.warn("unparseable docker event", { line: line.slice(0, 200) });
      return;
    }
    const instanceId = event.Actor?.Attributes?.[LABELS.instance];
    if (!instanceId || !event.Action) return;
    onEvent({ instanceId, action: event.Action, timeNano: String(event.timeNano ?? Date.now() * 1e6) }).catch((error) =>
      log.warn("docker event handler failed", { instanceId, action: event.Action, error: (error as Error).message }),
    );
  };

  const running = loop();
  return {
    async stop() {
      stopped = true;
      current?.destroy();
      wake();
      await running;
    },
  };
}
