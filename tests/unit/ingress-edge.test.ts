import { describe, expect, test } from "bun:test";
import { loadConfig } from "../../server/config";
import type { RecoveryEstimate } from "../../server/energy/recovery";
import { hostLabelOf, INSTANCE_NAME, instanceUrl, labelOfHost, MAX_NAME_LENGTH } from "../../server/ingress/addresses";
import { edgeStateOf, instanceAnswer, renderAnswer, UNKNOWN_RETRY_AFTER_S, wantsJson } from "../../server/ingress/edge-answers";
import { createEdgeTokens } from "../../server/ingress/edge-token";
import { countAccessLine } from "../../server/ingress/traffic-log";
import type { TrafficCount } from "../../server/ingress/traffic";

const ingress = { domain: "sahary.localhost", tls: "internal" as const, httpPort: 8080, httpsPort: 8443 };

describe("addresses", () => {
  test("names fit one DNS label with the 8-digit short id", () => {
    expect(MAX_NAME_LENGTH).toBe(54);
    for (const ok of ["a", "web-1", "x".repeat(54), "a-b-c", "0"]) expect(INSTANCE_NAME.test(ok)).toBe(true);
    for (const bad of ["", "x".repeat(55), "Web", "web_1", "-web", "web-", "xn--abc", "ab--c", "wéb", "a.b"]) expect(INSTANCE_NAME.test(bad)).toBe(false);
    expect(hostLabelOf("x".repeat(54), "4f86ab12-0000-4000-8000-000000000000")).toHaveLength(63);
  });

  test("the URL names the port unless it is the scheme's default; no HTTP port, no URL", () => {
    expect(instanceUrl(ingress, { hostLabel: "web-4f86ab12", httpPort: 8080 })).toBe("https://web-4f86ab12.sahary.localhost:8443");
    expect(instanceUrl({ ...ingress, httpsPort: 443 }, { hostLabel: "web-4f86ab12", httpPort: 80 })).toBe("https://web-4f86ab12.sahary.localhost");
    expect(instanceUrl({ ...ingress, tls: "off", httpPort: 80 }, { hostLabel: "web-4f86ab12", httpPort: 8080 })).toBe("http://web-4f86ab12.sahary.localhost");
    expect(instanceUrl(ingress, { hostLabel: "cache-4f86ab12", httpPort: null })).toBeNull();
  });

  test("a Host is read as the proxy matches it: any case, port ignored; a trailing dot or another domain is nobody's", () => {
    expect(labelOfHost(ingress, "web-4f86ab12.sahary.localhost")).toBe("web-4f86ab12");
    expect(labelOfHost(ingress, "WEB-4F86AB12.Sahary.Localhost:8443")).toBe("web-4f86ab12");
    expect(labelOfHost(ingress, "web-4f86ab12.sahary.localhost.")).toBeNull();
    expect(labelOfHost(ingress, "a.web-4f86ab12.sahary.localhost")).toBeNull();
    expect(labelOfHost(ingress, "web-4f86ab12.evil-sahary.localhost")).toBeNull();
    expect(labelOfHost(ingress, "sahary.localhost")).toBeNull();
  });
});

describe("what the edge says", () => {
  const power = (over: Partial<RecoveryEstimate> = {}): RecoveryEstimate => ({
    level: "critical",
    batteryPercent: 27,
    trend: "charging",
    targetLevel: "normal",
    targetPercent: 55,
    seconds: 2400,
    at: "2026-06-01T14:05:00.000Z",
    ...over,
  });

  test("states: power holds, starts, the owner's stop, errors, deletion", () => {
    const open = (kind: "create" | "start" | "stop" | "pause" | "resume" | "restart" | "delete", reason = "requested") => ({ kind, reason });
    expect(edgeStateOf({ state: "paused", stateReason: "power_emergency" }, null)).toBe("power");
    expect(edgeStateOf({ state: "stopped", stateReason: "power_emergency" }, null)).toBe("power");
    expect(edgeStateOf({ state: "running", stateReason: "created" }, open("pause", "power_emergency"))).toBe("power");
    expect(edgeStateOf({ state: "stopping", stateReason: "power_emergency" }, open("stop", "power_emergency"))).toBe("power");
    expect(edgeStateOf({ state: "paused", stateReason: "power_emergency" }, open("resume", "power_restored"))).toBe("starting");
    expect(edgeStateOf({ state: "pending", stateReason: "created" }, open("create"))).toBe("starting");
    expect(edgeStateOf({ state: "provisioning", stateReason: "requested" }, null)).toBe("starting");
    expect(edgeStateOf({ state: "running", stateReason: "requested" }, null)).toBe("starting");
    expect(edgeStateOf({ state: "stopped", stateReason: "requested" }, null)).toBe("stopped");
    expect(edgeStateOf({ state: "stopped", stateReason: "account_suspended" }, null)).toBe("stopped");
    expect(edgeStateOf({ state: "paused", stateReason: "container was paused outside the platform" }, null)).toBe("paused");
    expect(edgeStateOf({ state: "error", stateReason: "container died (exit code 1)" }, null)).toBe("unavailable");
    expect(edgeStateOf({ state: "deleting", stateReason: "requested" }, open("delete"))).toBe("gone");
  });

  test("paused for power: 503, Retry-After from the estimate (bounded), the battery's facts", () => {
    const now = new Date("2026-06-01T13:25:00Z");
    const answer = instanceAnswer("web-1.sahary.localhost", "power", power(), now);
    expect(answer).toMatchObject({ status: 503, appCode: "INSTANCE_UNAVAILABLE", retryAfter: 2400, title: "Paused while the solar battery recovers" });
    expect(answer.facts).toEqual([
      ["Battery", "27 %"],
      ["Power level", "critical"],
      ["Expected back", "around 14:05 UTC (in about 40 minutes)"],
    ]);
    expect(instanceAnswer("h", "power", power({ seconds: null, at: null }), now).retryAfter).toBe(UNKNOWN_RETRY_AFTER_S);
    expect(instanceAnswer("h", "power", power({ seconds: 5 }), now).retryAfter).toBe(30);
    expect(instanceAnswer("h", "power", power({ seconds: 10 * 86_400 }), now).retryAfter).toBe(86_400);
    expect(instanceAnswer("h", "stopped", null).retryAfter).toBeNull();
    expect(instanceAnswer("h", "starting", null).retryAfter).toBe(5);
  });

  test("JSON for API clients, a small page without assets for browsers and curl, never cached, text escaped", () => {
    expect(wantsJson("application/json")).toBe(true);
    expect(wantsJson("text/html,application/xhtml+xml,application/json;q=0.9")).toBe(false);
    expect(wantsJson("*/*")).toBe(false);
    expect(wantsJson(undefined)).toBe(false);

    const answer = instanceAnswer("<b>evil</b>.sahary.localhost", "power", power());
    const json = renderAnswer(answer, "application/json", "req-1");
    expect(json.headers).toMatchObject({ "content-type": "application/json; charset=utf-8", "retry-after": "2400", "cache-control": "no-store" });
    expect(JSON.parse(json.body).error.data).toMatchObject({
      httpStatus: 503,
      appCode: "INSTANCE_UNAVAILABLE",
      requestId: "req-1",
      details: { state: "paused_for_power", power: { batteryPercent: 27 } },
    });

    const html = renderAnswer(instanceAnswer("h", "stopped", null), "*/*", null);
    expect(html.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(html.headers["retry-after"]).toBeUndefined();
    expect(html.body).toContain("<title>Stopped</title>");
    expect(html.body).not.toMatch(/<script|<link|<img|url\(/i);
    expect(renderAnswer({ ...answer, facts: [["a", "<script>"]] }, "text/html", null).body).toContain("&lt;script&gt;");
  });

  test("edge tokens: only the platform's key makes them, one per subject", () => {
    const tokens = createEdgeTokens("a-secret-of-sufficient-length-0123456789");
    const other = createEdgeTokens("another-secret-of-sufficient-length-0123");
    expect(tokens.verify("x", tokens.token("x"))).toBe(true);
    expect(tokens.verify("y", tokens.token("x"))).toBe(false);
    expect(tokens.verify("x", other.token("x"))).toBe(false);
    expect(tokens.verify("x", undefined)).toBe(false);
    expect(tokens.verify("x", "")).toBe(false);
  });
});

describe("counting the access log", () => {
  test("one entry per line, by instance label and UTC hour; other hosts and garbage ignored", () => {
    const counts = new Map<string, TrafficCount>();
    const line = (host: string, status: number, size: number, ts = 1780318800.5) => JSON.stringify({ level: "info", ts, logger: "http.log.access.sahary", request: { host }, size, status });
    expect(countAccessLine(counts, ingress, line("web-4f86ab12.sahary.localhost:8443", 200, 100))).toBe(true);
    expect(countAccessLine(counts, ingress, line("WEB-4F86AB12.sahary.localhost", 404, 20))).toBe(true);
    expect(countAccessLine(counts, ingress, line("web-4f86ab12.sahary.localhost", 503, 700, 1780318800.5 + 3600))).toBe(true);
    expect(countAccessLine(counts, ingress, line("elsewhere.example", 200, 5))).toBe(false);
    expect(countAccessLine(counts, ingress, "not json")).toBe(false);
    expect([...counts.values()]).toEqual([
      { label: "web-4f86ab12", hour: new Date("2026-06-01T13:00:00Z"), requests: 2, bytesSent: 120, status2xx: 1, status3xx: 0, status4xx: 1, status5xx: 0 },
      { label: "web-4f86ab12", hour: new Date("2026-06-01T14:00:00Z"), requests: 1, bytesSent: 700, status2xx: 0, status3xx: 0, status4xx: 0, status5xx: 1 },
    ]);
  });
});

describe("ingress settings", () => {
  test("development defaults work for a non-root developer; production listens on 80/443 with ACME and an external proxy", () => {
    const dev = loadConfig({ DATA_DIR: "/srv/sahary" }).ingress;
    expect(dev).toMatchObject({
      domain: "sahary.localhost",
      tls: "internal",
      httpPort: 8080,
      httpsPort: 8443,
      proxy: "managed",
      admin: "unix:///srv/sahary/caddy/admin.sock",
      edgeUpstream: "127.0.0.1:3000",
    });
    expect(dev.publishAddresses).toEqual({ local: "127.0.0.1" });
    expect(dev.traffic).toMatchObject({ address: "127.0.0.1:2020", listen: "127.0.0.1:2020" });
    expect(loadConfig({ NODE_ENV: "test" }).ingress.proxy).toBe("external");

    const prod = loadConfig({
      NODE_ENV: "production",
      APP_SECRET: "9f8Kq2LmZx7Vb1Nc4Rt6Yh3Jw5Pd0Gs8Ue2Ia7",
      STRIPE_SECRET_KEY: "sk_live_x",
      STRIPE_WEBHOOK_SECRET: "whsec_x",
      INGRESS_DOMAIN: "apps.sahary.cloud",
      HOST: "0.0.0.0",
    }).ingress;
    expect(prod).toMatchObject({ tls: "acme", httpPort: 80, httpsPort: 443, proxy: "external", edgeUpstream: "127.0.0.1:3000" });
  });

  test("refusals name the variable", () => {
    const production = { NODE_ENV: "production", APP_SECRET: "9f8Kq2LmZx7Vb1Nc4Rt6Yh3Jw5Pd0Gs8Ue2Ia7", STRIPE_SECRET_KEY: "sk_live_x", STRIPE_WEBHOOK_SECRET: "whsec_x" };
    expect(() => loadConfig(production)).toThrow(/INGRESS_DOMAIN is required/);
    expect(() => loadConfig({ ...production, INGRESS_DOMAIN: "sahary.localhost" })).toThrow(/INGRESS_TLS=acme needs a public INGRESS_DOMAIN/);
    expect(() => loadConfig({ INGRESS_DOMAIN: "Sahary.Cloud" })).toThrow(/INGRESS_DOMAIN/);
    expect(() => loadConfig({ INGRESS_DOMAIN: "localhost" })).toThrow(/INGRESS_DOMAIN/);
    expect(() => loadConfig({ INGRESS_TLS: "letsencrypt" })).toThrow(/INGRESS_TLS/);
    expect(() => loadConfig({ INGRESS_ADMIN: "localhost:2019" })).toThrow(/INGRESS_ADMIN/);
    expect(() => loadConfig({ DATA_DIR: `/${"d".repeat(120)}` })).toThrow(/INGRESS_ADMIN/);
    expect(() => loadConfig({ INGRESS_LOG_ADDRESS: "somewhere" })).toThrow(/INGRESS_LOG_ADDRESS/);
  });

  test("remote engines publish on their own address, or the one given; a name instead of an address must be given one", () => {
    const hosts = "local=unix:///var/run/docker.sock,solar-2=tcp://10.0.0.2:2375";
    expect(loadConfig({ DOCKER_HOSTS: hosts }).ingress.publishAddresses).toEqual({ local: "127.0.0.1", "solar-2": "10.0.0.2" });
    expect(loadConfig({ DOCKER_HOSTS: hosts, INGRESS_UPSTREAM_ADDRESSES: "solar-2=192.168.7.2" }).ingress.publishAddresses["solar-2"]).toBe("192.168.7.2");
    expect(() => loadConfig({ DOCKER_HOSTS: "b=tcp://engine-b.internal:2375" })).toThrow(/INGRESS_UPSTREAM_ADDRESSES/);
    expect(loadConfig({ DOCKER_HOSTS: "b=tcp://engine-b.internal:2375", INGRESS_UPSTREAM_ADDRESSES: "b=10.1.1.1" }).ingress.publishAddresses).toEqual({ b: "10.1.1.1" });
    expect(() => loadConfig({ INGRESS_UPSTREAM_ADDRESSES: "nowhere=10.0.0.9" })).toThrow(/not in DOCKER_HOSTS/);
    expect(() => loadConfig({ INGRESS_UPSTREAM_ADDRESSES: "local=not-an-ip" })).toThrow(/INGRESS_UPSTREAM_ADDRESSES/);
  });
});
