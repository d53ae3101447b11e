import Docker from "dockerode";
import type { Config } from "../config";

/**
 * Docker clients by engine endpoint, made once per process. Command clients
 * carry DOCKER_TIMEOUT_MS, so a daemon that stops answering fails the call
 * instead of hanging a job. The events stream is long-lived by design and gets
 * its own client without that timeout (the watcher bounds it itself).
 */
export type Engines = {
  /** The client for commands on the engine at `endpoint`. */
  get(endpoint: string): Docker;
  /** A client for the engine's event stream. */
  events(endpoint: string): Docker;
};

export function createEngines(config: Config): Engines {
  const commands = new Map<string, Docker>();
  const streams = new Map<string, Docker>();
  const make = (cache: Map<string, Docker>, endpoint: string, timeout: number | undefined) => {
    let docker = cache.get(endpoint);
    if (!docker) {
      docker = new Docker({ ...connectionOptions(endpoint), ...(timeout ? { timeout } : {}) });
      cache.set(endpoint, docker);
    }
    return docker;
  };
  return {
    get: (endpoint) => make(commands, endpoint, config.compute.dockerTimeoutMs),
    events: (endpoint) => make(streams, endpoint, undefined),
  };
}

function connectionOptions(endpoint: string): Docker.DockerOptions {
  const url = new URL(endpoint);
  if (url.protocol === "unix:") return { socketPath: url.pathname };
  // With a host set, docker-modem ignores its default socket path (stack-pitfalls K-4).
  return { host: url.hostname, port: Number(url.port), protocol: "http" };
}
