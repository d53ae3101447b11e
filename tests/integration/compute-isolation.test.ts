import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { syncHosts } from "../../server/compute/hosts";
import { actionDone, execIn } from "../harness/compute";
import { testRun } from "../harness/env";
import { startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

let app: TestServer;

beforeAll(async () => {
  app = await startTestServer({ workers: true });
  await syncHosts(app.services);
});
afterAll(() => app.close());

async function tenantWith(names: string[]) {
  const session = await createUserWithSession(app.services);
  const api = app.client({ token: session.token });
  const instances = [];
  for (const name of names) {
    const { instance, actionId } = await api.compute.instances.create.mutate({ name, planId: "nano", imageId: "busybox" });
    expect((await actionDone(api, actionId)).status).toBe("succeeded");
    instances.push(await api.compute.instances.get.query({ id: instance.id }));
  }
  return { api, instances };
}

/**
 * From inside `from`, fetch the BusyBox httpd page served on port 8080 at `ip`.
 * (`timeout`, because this BusyBox build's `wget -T` crashes.)
 */
const fetchFrom = (from: string, ip: string) =>
  execIn(app.services.docker, `${testRun.dockerNamespace}-${from}`, ["sh", "-c", `timeout 3 wget -q -O - http://${ip}:8080/ 2>&1; echo "exit=$?"`], 15_000);

describe("tenant network isolation", () => {
  test("a tenant's containers reach each other, and never another tenant's", async () => {
    const alice = await tenantWith(["a1", "a2"]);
    const bob = await tenantWith(["b1"]);
    const [a1, a2] = alice.instances;
    const [b1] = bob.instances;

    const sameTenant = await fetchFrom(a1!.id, a2!.ipAddress!);
    expect(sameTenant.output).toContain("<h1>Sahary</h1>");
    expect(sameTenant.output).toContain("exit=0");

    const crossTenant = await fetchFrom(a1!.id, b1!.ipAddress!);
    expect(crossTenant.output).not.toContain("<h1>Sahary</h1>");
    expect(crossTenant.output).not.toContain("exit=0");

    const backwards = await fetchFrom(b1!.id, a1!.ipAddress!);
    expect(backwards.output).not.toContain("<h1>Sahary</h1>");

    // The target was serving all along: the refusal is the network's, not the container's.
    const selfCheck = await fetchFrom(b1!.id, b1!.ipAddress!);
    expect(selfCheck.output).toContain("<h1>Sahary</h1>");

    for (const { api, instances } of [alice, bob]) {
      for (const instance of instances) {
        const { actionId } = await api.compute.instances.delete.mutate({ id: instance.id });
        expect((await actionDone(api, actionId)).status).toBe("succeeded");
      }
    }
  }, 60_000);
});
