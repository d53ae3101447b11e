import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { watchEngineEvents, type ContainerEvent } from "../../server/compute/events";
import { createLogger } from "../../server/log";
import type { Services } from "../../server/services";
import { testRun } from "../harness/env";
import { eventually, startTestServices } from "../harness/server";

let services: Services;
beforeAll(async () => {
  services = await startTestServices();
});
afterAll(() => services.close());

describe("the Docker event watcher", () => {
  test("keeps delivering this namespace's container events across stream windows", async () => {
    const seen: ContainerEvent[] = [];
    const watcher = watchEngineEvents(services, { name: "local", endpoint: services.config.compute.hosts[0]!.endpoint }, async (event) => void seen.push(event), { windowS: 1 });
    const instanceId = crypto.randomUUID();
    try {
      // Past two windows: the stream has been closed by the engine and reopened at least once.
      await Bun.sleep(2500);
      const container = await services.docker.createContainer({
        name: `${testRun.dockerNamespace}-events-${instanceId}`,
        Image: "sahary/busybox:1.35",
        Labels: { "sahary.namespace": testRun.dockerNamespace, "sahary.instance": instanceId },
        HostConfig: { Init: true, Memory: 32 * 1024 * 1024 },
      });
      await container.start();
      await container.kill();
      const events = await eventually(
        async () => seen.filter((e) => e.instanceId === instanceId).map((e) => e.action),
        (actions) => actions.includes("start") && actions.includes("die"),
        { what: "start and die events" },
      );
      expect(events.indexOf("start")).toBeLessThan(events.indexOf("die"));
      await container.remove({ force: true });
    } finally {
      await watcher.stop();
    }
  });

  test("ignores containers of other namespaces", async () => {
    const seen: ContainerEvent[] = [];
    const watcher = watchEngineEvents(services, { name: "local", endpoint: services.config.compute.hosts[0]!.endpoint }, async (event) => void seen.push(event));
    const foreignId = crypto.randomUUID();
    const container = await services.docker.createContainer({
      name: `${testRun.dockerNamespace}-foreign`,
      Image: "sahary/busybox:1.35",
      Labels: { "sahary.namespace": `${testRun.dockerNamespace}-other`, "sahary.instance": foreignId },
    });
    try {
      await container.start();
      await container.kill();
      await Bun.sleep(500);
      expect(seen.filter((e) => e.instanceId === foreignId)).toEqual([]);
    } finally {
      await container.remove({ force: true });
      await watcher.stop();
    }
  });

  test("an engine that does not answer is retried with backoff, and stopping does not wait for it", async () => {
    const lines: string[] = [];
    const log = createLogger({ level: "warn", sink: (line) => lines.push(line) });
    const watcher = watchEngineEvents({ ...services, log }, { name: "gone", endpoint: `unix://${testRun.dataDir}/nobody.sock` }, async () => {});
    await eventually(
      async () => lines.length,
      (n) => n >= 2,
      { what: "two reconnect attempts" },
    );
    const started = performance.now();
    await watcher.stop();
    expect(performance.now() - started).toBeLessThan(1000);
    const warnings = lines.map((line) => JSON.parse(line));
    expect(warnings[0]).toMatchObject({ msg: "docker event stream failed; reconnecting", host: "gone" });
    expect(warnings[1].retryInMs).toBeGreaterThan(warnings[0].retryInMs);
  });
});
