import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eq, inArray } from "drizzle-orm";
import { instanceActions, instances } from "../../db/schema";
import { syncHosts } from "../../server/compute/hosts";
import { expectAppError } from "../harness/expect";
import { startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// What the API says about addresses, without a proxy or workers: names that
// must be DNS labels, images with and without an HTTP port, the on-demand TLS
// question, and readiness reporting the proxy.

let app: TestServer;
type Api = ReturnType<TestServer["client"]>;
const users: string[] = [];

beforeAll(async () => {
  app = await startTestServer({ env: { INGRESS_DOMAIN: "apps.sahary.test", INGRESS_HTTPS_PORT: "443" } });
  await syncHosts(app.services);
});
afterAll(async () => {
  // Nothing here reaches a worker; withdraw the queued work so later files' workers do not build it.
  await app.services.queues.queue("lifecycle").obliterate({ force: true });
  if (users.length) {
    await app.services.db.update(instanceActions).set({ status: "failed", error: "test cleanup", finishedAt: new Date() }).where(inArray(instanceActions.userId, users));
    await app.services.db.update(instances).set({ state: "deleted" }).where(inArray(instances.userId, users));
  }
  await app.close();
});

async function customer() {
  const session = await createUserWithSession(app.services);
  users.push(session.user.id);
  return app.client({ token: session.token });
}
const create = (api: Api, name: string, extra: Record<string, unknown> = {}) =>
  api.compute.instances.create.mutate({ name, planId: "nano", imageId: "busybox", ...extra } as Parameters<Api["compute"]["instances"]["create"]["mutate"]>[0]);

describe("names are DNS labels", () => {
  test("a name that cannot be one label with the short id is 400 VALIDATION_FAILED naming the field", async () => {
    const api = await customer();
    for (const name of ["Web-1", "web_1", "web.1", "-web", "web-", "ab--cd", "x".repeat(55), "", "wéb"]) {
      const error = await expectAppError(create(api, name), "VALIDATION_FAILED");
      expect(error.data.httpStatus).toBe(400);
      expect(error.data.issues.map((i: { path: string }) => i.path)).toEqual(["name"]);
    }
    const longest = await create(api, "x".repeat(54));
    expect(new URL(longest.instance.url!).hostname.split(".")[0]).toHaveLength(63);
    expect(longest.instance.url).toBe(`https://${"x".repeat(54)}-${longest.instance.id.slice(0, 8)}.apps.sahary.test`);
  });
});

describe("images and ports", () => {
  test("the catalogue says which images serve HTTP, and on which port", async () => {
    const api = await customer();
    const images = Object.fromEntries((await api.compute.images.list.query()).map((i) => [i.slug, i.httpPort]));
    expect(images).toMatchObject({ busybox: 8080, nginx: 80, redis: null });
  });

  test("an image that serves no HTTP still runs, without a URL, and the view says why", async () => {
    const api = await customer();
    const { instance } = await create(api, "cache", { imageId: "redis" });
    expect(instance).toMatchObject({ url: null, httpPort: null });
    expect(instance.urlNote).toContain("no URL");
    expect((await api.compute.instances.get.query({ id: instance.id })).url).toBeNull();
  });

  test("asking for a port such an image does not serve is a clear 400 naming httpPort; null opts out of a URL", async () => {
    const api = await customer();
    const noHttp = await expectAppError(create(api, "cache", { imageId: "redis", httpPort: 6379 }), "HTTP_PORT_INVALID");
    expect(noHttp.data).toMatchObject({ httpStatus: 400, details: { field: "httpPort", imageHttpPort: null } });
    const wrong = await expectAppError(create(api, "web", { httpPort: 9090 }), "HTTP_PORT_INVALID");
    expect(wrong.data.details).toMatchObject({ field: "httpPort", imageHttpPort: 8080 });
    await expectAppError(create(api, "web", { httpPort: 0 }), "VALIDATION_FAILED");
    await expectAppError(create(api, "web", { httpPort: "8080" }), "VALIDATION_FAILED");
    expect((await api.compute.instances.list.query({})).items).toHaveLength(0);

    expect((await create(api, "private", { httpPort: null })).instance).toMatchObject({ url: null, httpPort: null });
    expect((await create(api, "public", { httpPort: 8080 })).instance.httpPort).toBe(8080);
  });
});

describe("the on-demand TLS question (/_edge/ask)", () => {
  test("yes only for the host of an instance that exists, has a URL and is not deleted", async () => {
    const api = await customer();
    const ask = (domain: string) => fetch(`${app.url}/_edge/ask?domain=${encodeURIComponent(domain)}`).then((r) => r.status);
    const { instance } = await create(api, "asked");
    const host = new URL(instance.url!).hostname;
    expect(await ask(host)).toBe(200);
    expect(await ask(host.toUpperCase())).toBe(200);
    expect(await ask(`${host}.`)).toBe(404);
    expect(await ask(host.replace("apps.sahary.test", "apps.sahary.example"))).toBe(404);
    expect(await ask(`other-${host}`)).toBe(404);
    expect(await ask("apps.sahary.test")).toBe(404);
    expect(await fetch(`${app.url}/_edge/ask`).then((r) => r.status)).toBe(404);

    const { instance: cache } = await create(api, "cache", { imageId: "redis" });
    expect(await ask(`cache-${cache.id.slice(0, 8)}.apps.sahary.test`)).toBe(404);

    await app.services.db.update(instances).set({ state: "deleted" }).where(eq(instances.id, instance.id));
    expect(await ask(host)).toBe(404);
  });
});

describe("without a proxy", () => {
  test("/ready reports the proxy down but not required", async () => {
    const response = await fetch(`${app.url}/ready`);
    const body = (await response.json()) as any;
    expect(response.status).toBe(200);
    expect(body.checks.proxy).toMatchObject({ state: "down", required: false });
    expect(body.checks.proxy.error).toBeString();
  });

  test("the unknown-host answer is a page for browsers and the error envelope for API clients", async () => {
    const page = await fetch(`${app.url}/_edge/unknown`, { headers: { accept: "text/html" } });
    expect(page.status).toBe(404);
    expect(page.headers.get("content-type")).toStartWith("text/html");
    const json = await fetch(`${app.url}/_edge/unknown`, { headers: { accept: "application/json" } });
    expect(((await json.json()) as any).error.data).toMatchObject({ httpStatus: 404, appCode: "NOT_FOUND" });
  });
});
