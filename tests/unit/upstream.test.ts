import { describe, expect, test } from "bun:test";
import type Docker from "dockerode";
import { upstreamOf } from "../../server/compute/containers";

/** The parts of `docker inspect` upstreamOf reads. */
function inspected(opts: { running?: boolean; ip?: string; binding?: { HostIp: string; HostPort: string } }) {
  return {
    State: { Running: opts.running ?? true },
    NetworkSettings: {
      Networks: opts.ip ? { "sahary-tenant-x": { IPAddress: opts.ip } } : {},
      Ports: opts.binding ? { "8080/tcp": [opts.binding] } : {},
    },
  } as unknown as Docker.ContainerInspectInfo;
}

describe("where the proxy dials an instance", () => {
  test("on an engine sharing the proxy's host (published on loopback): the container's tenant address and its HTTP port", () => {
    expect(upstreamOf(inspected({ ip: "10.213.4.2", binding: { HostIp: "127.0.0.1", HostPort: "49153" } }), 8080, "127.0.0.1")).toBe("10.213.4.2:8080");
  });

  test("on a remote engine: the port it published on its private address", () => {
    expect(upstreamOf(inspected({ ip: "10.213.4.2", binding: { HostIp: "10.0.0.7", HostPort: "49153" } }), 8080, "10.0.0.7")).toBe("10.0.0.7:49153");
    // Published on all addresses: the engine's configured upstream address.
    expect(upstreamOf(inspected({ ip: "10.213.4.2", binding: { HostIp: "0.0.0.0", HostPort: "49153" } }), 8080, "10.0.0.7")).toBe("10.0.0.7:49153");
  });

  test("nothing to dial: no HTTP port, a container that is not running, or a remote engine that published nothing", () => {
    expect(upstreamOf(inspected({ ip: "10.213.4.2" }), null, "127.0.0.1")).toBeNull();
    expect(upstreamOf(inspected({ running: false, ip: "10.213.4.2" }), 8080, "127.0.0.1")).toBeNull();
    expect(upstreamOf(inspected({ ip: "10.213.4.2" }), 8080, "10.0.0.7")).toBeNull();
  });
});
