import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { networkInterfaces } from "node:os";
import { eq } from "drizzle-orm";
import { instances } from "../../db/schema";
import { actionDone, execIn } from "../harness/compute";
import { testRun } from "../harness/env";
import { answers, customer, launch, startIngressRig, type IngressRig } from "../harness/ingress";

// Adversarial: a request must reach the container its Host names and no
// other; headers a visitor sends must not speak for the proxy; and a tenant's
// container must not reach another tenant's service by any back door the
// publishing of ports could open.

let rig: IngressRig;
let alice: Awaited<ReturnType<typeof launch>>;
let bob: Awaited<ReturnType<typeof launch>>;
let bobApi: Awaited<ReturnType<typeof customer>>["api"];

const container = (instanceId: string) => `${testRun.dockerNamespace}-${instanceId}`;
const host = (url: string) => new URL(url).hostname;

beforeAll(async () => {
  rig = await startIngressRig();
  const a = await customer(rig.app);
  const b = await customer(rig.app);
  bobApi = b.api;
  // The root is read-only: the site folder is a volume each can write to.
  alice = await launch(a.api, { name: "shop", volumes: [{ name: "shop-www", sizeMb: 32, mountPath: "/www" }] });
  bob = await launch(b.api, { name: "shop", volumes: [{ name: "shop-www", sizeMb: 32, mountPath: "/www" }] });
  // Each container says whose it is.
  for (const [instance, owner] of [
    [alice, "alice"],
    [bob, "bob"],
  ] as const) {
    const wrote = await execIn(rig.app.services.docker, container(instance.id), ["sh", "-c", `echo owner=${owner} > /www/who.txt`]);
    expect(wrote.exitCode).toBe(0);
  }
  await answers(rig.proxy, `${alice.url}/who.txt`, 200);
  await answers(rig.proxy, `${bob.url}/who.txt`, 200);
}, 90_000);
afterAll(() => rig.close(), 60_000);

describe("routing by Host", () => {
  test("two tenants' instances of the same name get distinct hosts, each reaching its own container", async () => {
    expect(host(alice.url!)).not.toBe(host(bob.url!));
    expect(await (await rig.proxy.visit(`${alice.url}/who.txt`)).text()).toBe("owner=alice\n");
    expect(await (await rig.proxy.visit(`${bob.url}/who.txt`)).text()).toBe("owner=bob\n");
  });

  test("a Host naming another tenant's instance on a TLS connection made for this one is refused (421), never routed", async () => {
    const response = await rig.proxy.visit(`${alice.url}/who.txt`, { headers: { host: host(bob.url!) } });
    expect(response.status).toBe(421);
    expect(await response.text()).not.toContain("owner=");
  });

  test("upper case reaches the same instance; a trailing dot reaches none", async () => {
    const upper = host(bob.url!).toUpperCase();
    const shouted = await rig.proxy.visit(`${bob.url}/who.txt`, { headers: { host: `${upper}:${rig.proxy.httpsPort}` } });
    expect(await shouted.text()).toBe("owner=bob\n");

    const dotted = await rig.proxy.visit(`${bob.url}/who.txt`, { headers: { host: `${host(bob.url!)}.` }, sni: host(bob.url!) });
    expect([404, 421]).toContain(dotted.status);
    expect(await dotted.text()).not.toContain("owner=");
  });

  test("X-Sahary-* headers from a visitor are overwritten or dropped by the proxy", async () => {
    const stop = await bobApi.compute.instances.stop.mutate({ id: bob.id });
    expect((await actionDone(bobApi, stop.actionId)).status).toBe("succeeded");
    // Bob's stopped instance, with headers claiming to be Alice's running one and a forged token.
    const spoofed = await answers(rig.proxy, bob.url!, 503, {
      headers: { accept: "application/json", "x-sahary-instance": alice.id, "x-sahary-edge-token": "forged", "x-sahary-error-status": "200" },
    });
    expect(JSON.parse(spoofed.body).error.data.details.state).toBe("stopped");
    // And a running instance's request reaches its own container whatever they say.
    const running = await rig.proxy.visit(`${alice.url}/who.txt`, { headers: { "x-sahary-instance": bob.id } });
    expect(await running.text()).toBe("owner=alice\n");
    const start = await bobApi.compute.instances.start.mutate({ id: bob.id });
    expect((await actionDone(bobApi, start.actionId)).status).toBe("succeeded");
    await answers(rig.proxy, `${bob.url}/who.txt`, 200);
  }, 60_000);

  test("the platform's edge endpoints answer nothing about an instance without the proxy's token for it", async () => {
    const { tokens } = rig.app.services.ingress;
    const edge = (headers: Record<string, string>) => fetch(`${rig.app.url}/_edge/instance`, { headers: { accept: "application/json", ...headers } });
    const attempts: Array<Record<string, string>> = [
      { "x-sahary-instance": bob.id },
      { "x-sahary-instance": bob.id, "x-sahary-edge-token": "forged" },
      { "x-sahary-instance": bob.id, "x-sahary-edge-token": tokens.token(alice.id) },
      { "x-sahary-instance": bob.id, "x-sahary-edge-token": tokens.token("error") },
    ];
    for (const headers of attempts) {
      const response = await edge(headers);
      expect(response.status).toBe(404);
      expect(((await response.json()) as any).error.data.appCode).toBe("NOT_FOUND");
    }
    // The proxy's own token is what opens it.
    expect((await edge({ "x-sahary-instance": bob.id, "x-sahary-edge-token": tokens.token(bob.id) })).status).toBe(503);
    expect((await fetch(`${rig.app.url}/_edge/error`, { headers: { "x-sahary-error-status": "502" } })).status).toBe(404);
  });
});

describe("tenant isolation with published ports", () => {
  test("a tenant's container reaches another tenant's service neither directly, nor through the host's gateway, loopback or public address", async () => {
    const docker = rig.app.services.docker;
    const aliceInfo = await docker.getContainer(container(alice.id)).inspect();
    const bobInfo = await docker.getContainer(container(bob.id)).inspect();
    const aliceIp = Object.values(aliceInfo.NetworkSettings.Networks)[0]!.IPAddress;
    const bobGateway = Object.values(bobInfo.NetworkSettings.Networks)[0]!.Gateway;
    const published = aliceInfo.NetworkSettings.Ports["8080/tcp"]![0]!;
    expect(published.HostIp).toBe("127.0.0.1");
    const [row] = await rig.app.services.db.select({ upstream: instances.upstream }).from(instances).where(eq(instances.id, alice.id));
    // The proxy shares the engine's host: it dials the container on its tenant network, not through the published port.
    expect(row!.upstream).toBe(`${aliceIp}:8080`);
    // Every address of the host but loopback: the engine's bridges' gateways and the public interface.
    const hostAddresses = Object.values(networkInterfaces())
      .flat()
      .filter((a) => a && a.family === "IPv4" && !a.internal)
      .map((a) => a!.address);

    // From Bob's container, with BusyBox wget (`timeout`, because this build's `wget -T` crashes).
    const tryFetch = (target: string) => execIn(docker, container(bob.id), ["sh", "-c", `timeout 3 wget -q -O - http://${target}/who.txt 2>&1; echo "exit=$?"`], 15_000).then((r) => r.output);
    const targets = [`${aliceIp}:8080`, `${bobGateway}:${published.HostPort}`, `127.0.0.1:${published.HostPort}`, ...hostAddresses.map((ip) => `${ip}:${published.HostPort}`)];
    for (const target of targets) {
      const output = await tryFetch(target);
      expect({ target, output }).toEqual({ target, output: expect.not.stringContaining("owner=alice") });
      expect(output).not.toContain("exit=0");
    }
    // The probe works: Bob's container reaches its own service, and the host reaches Alice's published port.
    expect(await tryFetch(`${Object.values(bobInfo.NetworkSettings.Networks)[0]!.IPAddress}:8080`)).toContain("owner=bob");
    expect(await (await fetch(`http://127.0.0.1:${published.HostPort}/who.txt`)).text()).toBe("owner=alice\n");
  }, 90_000);
});
