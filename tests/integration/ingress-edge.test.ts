import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { POWER_EMERGENCY_REASON } from "../../server/compute/states";
import { DEFAULT_POLICY } from "../../hardware/policy";
import { dispatchPowerEmergency, recordLevelChange } from "../../server/energy/power";
import { saveMonitorState } from "../../server/energy/telemetry";
import { actionDone } from "../harness/compute";
import { answers, customer, launch, startIngressRig, type IngressRig } from "../harness/ingress";
import { resetEnergyState } from "../harness/serial";
import { eventually } from "../harness/server";

// A real Caddy programmed by the real platform, real containers behind it:
// what a visitor of an instance's URL gets in each state of the instance.

let rig: IngressRig;
beforeAll(async () => {
  rig = await startIngressRig({ env: { EMERGENCY_RESUME_STAGGER_MS: "0" } });
  await resetEnergyState(rig.app.services.db);
}, 60_000);
afterAll(async () => {
  // Energy state is platform-wide: leave the level at normal for the other files.
  await resetEnergyState(rig.app.services.db);
  await rig.close();
}, 60_000);

const JSON_ACCEPT = { accept: "application/json" };

describe("an instance's URL", () => {
  test("serves the container's page over HTTPS at https://<name>-<short id>.<domain>:<port>, shown by get and list", async () => {
    const { api } = await customer(rig.app);
    const web = await launch(api, { name: "web-1" });
    const { INGRESS_DOMAIN, INGRESS_HTTPS_PORT } = rig.proxy.env;
    expect(web.url).toBe(`https://web-1-${web.id.slice(0, 8)}.${INGRESS_DOMAIN}:${INGRESS_HTTPS_PORT}`);
    expect(web.httpPort).toBe(8080);
    expect(web.urlNote).toBeNull();
    const listed = await api.compute.instances.list.query({});
    expect(listed.items.find((i) => i.id === web.id)?.url).toBe(web.url);

    const page = await answers(rig.proxy, web.url!, 200);
    expect(page.body).toContain("<h1>Sahary</h1>");

    // The same with curl, as the README's Quick start shows it (the local CA trusted), plus --resolve to this run's proxy.
    const ca = `${rig.proxy.dir}/root.crt`;
    await Bun.write(ca, await rig.proxy.rootCertificate());
    const host = new URL(web.url!).hostname;
    const curl = Bun.spawnSync(["curl", "-sS", "--resolve", `${host}:${INGRESS_HTTPS_PORT}:127.0.0.1`, "--cacert", ca, web.url!]);
    expect(curl.stderr.toString()).toBe("");
    expect(curl.stdout.toString()).toContain("<h1>Sahary</h1>");

    // Plain HTTP on the proxy's HTTP port is sent to HTTPS.
    const plain = await fetch(`http://127.0.0.1:${rig.proxy.httpPort}/x?y=1`, { headers: { host }, redirect: "manual" });
    expect(plain.status).toBe(308);
    expect(plain.headers.get("location")).toBe(`https://${host}:${INGRESS_HTTPS_PORT}/x?y=1`);
  }, 60_000);

  test("paused for power: 503 with Retry-After from the battery, a small page or JSON by Accept; back to 200 when the sun returns", async () => {
    const { db, queues } = rig.app.services;
    const { api } = await customer(rig.app);
    const batch = await launch(api, { name: "batch", priority: "interruptible" });
    await answers(rig.proxy, batch.url!, 200);

    // The battery at 27 %, charging at 5 A (100 Ah bank): the level drops to critical and the emergency worker pauses interruptible instances.
    await saveMonitorState(db, {
      protocol: "vedirect",
      startedAt: new Date(),
      updatedAt: new Date(),
      telemetry: "ok",
      lastReadingAt: new Date(),
      lastReading: { at: new Date().toISOString(), soc: 27, batteryCurrent: 5, batteryVoltage: 12.1 },
      bridgeState: "running",
    });
    const down = await recordLevelChange(db, { from: "normal", to: "critical", at: new Date(), soc: 27, reading: {}, policy: DEFAULT_POLICY });
    await dispatchPowerEmergency(db, queues, down!);
    await eventually(
      () => api.compute.instances.get.query({ id: batch.id }),
      (i) => i.state === "paused" && i.stateReason === POWER_EMERGENCY_REASON,
      { timeoutMs: 20_000, what: "the emergency to pause the instance" },
    );

    const html = await answers(rig.proxy, batch.url!, 503, { headers: { accept: "text/html,application/xhtml+xml,*/*;q=0.8" } });
    expect(html.headers["content-type"]).toStartWith("text/html");
    expect(html.body).toContain("Paused while the solar battery recovers");
    expect(html.body).toContain("27 %");
    expect(html.body).toContain("critical");
    expect(html.body).not.toMatch(/<script|<link|src=/i);
    expect(html.body.length).toBeLessThan(2500);
    // Back at 55 % (the conserve threshold plus hysteresis): 28 Ah at 5 A is 5.6 h, plus the 300 s recovery dwell.
    expect(Number(html.headers["retry-after"])).toBe(20_460);
    expect(html.headers["cache-control"]).toBe("no-store");

    const json = await rig.proxy.visit(batch.url!, { headers: JSON_ACCEPT });
    expect(json.status).toBe(503);
    expect(json.headers.get("retry-after")).toBe("20460");
    const body = (await json.json()) as any;
    expect(body.error.data).toMatchObject({ httpStatus: 503, appCode: "INSTANCE_UNAVAILABLE" });
    expect(body.error.data.details).toMatchObject({
      state: "paused_for_power",
      retryAfterSeconds: 20_460,
      power: { level: "critical", batteryPercent: 27, trend: "charging", returnsAtPercent: 55 },
    });
    expect(Date.parse(body.error.data.details.power.expectedBackAt) - Date.now()).toBeGreaterThan(20_000_000);

    const up = await recordLevelChange(db, { from: "critical", to: "normal", at: new Date(), soc: 60, reading: {}, policy: DEFAULT_POLICY });
    await dispatchPowerEmergency(db, queues, up!);
    const back = await answers(rig.proxy, batch.url!, 200, {}, 20_000);
    expect(back.body).toContain("<h1>Sahary</h1>");
  }, 90_000);

  test("stopped by its owner: 503 stopped without Retry-After; started again: 200", async () => {
    const { api } = await customer(rig.app);
    const site = await launch(api, { name: "site" });
    await answers(rig.proxy, site.url!, 200);

    const stop = await api.compute.instances.stop.mutate({ id: site.id });
    expect((await actionDone(api, stop.actionId)).status).toBe("succeeded");
    const stopped = await answers(rig.proxy, site.url!, 503, { headers: JSON_ACCEPT });
    expect(JSON.parse(stopped.body).error.data.details.state).toBe("stopped");
    expect(stopped.headers["retry-after"]).toBeUndefined();
    const page = await rig.proxy.visit(site.url!);
    expect(await page.text()).toContain("stopped by its owner");

    const start = await api.compute.instances.start.mutate({ id: site.id });
    expect((await actionDone(api, start.actionId)).status).toBe("succeeded");
    await answers(rig.proxy, site.url!, 200);
  }, 60_000);

  test("starting: 503 starting with a short Retry-After until the container serves", async () => {
    const { api } = await customer(rig.app);
    const site = await launch(api, { name: "slow" });
    const restart = await api.compute.instances.restart.mutate({ id: site.id });
    // Until the worker has the container back up, the edge answers for it.
    const during = await rig.proxy.visit(site.url!, { headers: JSON_ACCEPT });
    if (during.status === 503) {
      const body = (await during.json()) as any;
      expect(["starting", "stopped"]).toContain(body.error.data.details.state);
    } else {
      expect(during.status).toBe(200);
    }
    expect((await actionDone(api, restart.actionId)).status).toBe("succeeded");
    await answers(rig.proxy, site.url!, 200);
  }, 60_000);

  test("deleted: 404 from the fallback, like any host no instance owns", async () => {
    const { api } = await customer(rig.app);
    const site = await launch(api, { name: "gone" });
    await answers(rig.proxy, site.url!, 200);
    const removal = await api.compute.instances.delete.mutate({ id: site.id });
    expect((await actionDone(api, removal.actionId)).status).toBe("succeeded");
    const gone = await answers(rig.proxy, site.url!, 404, { headers: JSON_ACCEPT });
    expect(JSON.parse(gone.body).error.data).toMatchObject({ httpStatus: 404, appCode: "NOT_FOUND" });

    // A name no instance ever had gets no certificate (the platform's ask endpoint says no), so no page at all.
    const unknown = `https://nobody-00000000.${rig.proxy.env.INGRESS_DOMAIN}:${rig.proxy.httpsPort}/`;
    await expect(rig.proxy.visit(unknown)).rejects.toThrow();
    // Over plain HTTP it reaches the fallback: a redirect, for a name under the domain.
    const plain = await fetch(`http://127.0.0.1:${rig.proxy.httpPort}/`, { headers: { host: new URL(unknown).hostname }, redirect: "manual" });
    expect(plain.status).toBe(308);
  }, 60_000);
});
