import { syncHosts } from "../../server/compute/hosts";
import { actionDone } from "./compute";
import { freePort } from "./process";
import { startTestProxy, type TestProxy } from "./proxy";
import { eventually, startTestServer, type TestServer } from "./server";
import { createUserWithSession } from "./users";

/** `app` may be replaced by a test that restarts the platform; `close` closes whichever is current. */
export type IngressRig = { app: TestServer; proxy: TestProxy; close(): Promise<void> };

/**
 * A real Caddy and the real platform (API and workers) programming it: the
 * API on a known port (the proxy's routes reach its edge there), the proxy's
 * admin API, ports and access log wired through INGRESS_* variables.
 */
export async function startIngressRig(opts: { env?: Record<string, string> } = {}): Promise<IngressRig> {
  const port = await freePort();
  const proxy = await startTestProxy({ apiPort: port });
  const app = await startTestServer({ workers: true, port, env: { ...proxy.env, ...opts.env } });
  await syncHosts(app.services);
  const rig: IngressRig = {
    app,
    proxy,
    // The platform may have been replaced by a test (a restart): close the current one.
    async close() {
      await rig.app.close();
      await proxy.stop();
    },
  };
  return rig;
}

type Client = ReturnType<TestServer["client"]>;

/** A verified customer with a typed client. */
export async function customer(app: TestServer) {
  const session = await createUserWithSession(app.services);
  return { ...session, api: app.client({ token: session.token }) };
}

/** Creates an instance and waits until its action finished; returns the instance as `get` shows it. */
export async function launch(
  api: Client,
  input: { name: string; imageId?: string; priority?: "critical" | "standard" | "interruptible"; volumes?: Array<{ name: string; sizeMb: number; mountPath: string }> },
) {
  const { instance, actionId } = await api.compute.instances.create.mutate({ planId: "nano", imageId: "busybox", ...input });
  const action = await actionDone(api, actionId);
  if (action.status !== "succeeded") throw new Error(`create ${input.name} failed: ${action.error}`);
  return api.compute.instances.get.query({ id: instance.id });
}

/**
 * Polls the URL through the proxy until its status is `status`; returns the
 * response's status, headers and body. A request that fails (no listener, no
 * certificate) reads as status 0.
 */
export function answers(proxy: TestProxy, url: string, status: number, init: Parameters<TestProxy["visit"]>[1] = {}, timeoutMs = 15_000) {
  return eventually(
    async () => {
      try {
        const response = await proxy.visit(url, init);
        return { status: response.status, headers: Object.fromEntries(response.headers), body: await response.text() };
      } catch (error) {
        return { status: 0, headers: {} as Record<string, string>, body: (error as Error).message };
      }
    },
    (r) => r.status === status,
    { timeoutMs, intervalMs: 50, what: `${url} to answer ${status}` },
  );
}
