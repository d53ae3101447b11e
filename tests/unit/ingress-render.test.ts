import { describe, expect, test } from "bun:test";
import { loadConfig } from "../../server/config";
import { MARKER_PREFIX, renderProxyConfig, type InstanceRoute } from "../../server/ingress/render";

const settings = (env: Record<string, string> = {}) => loadConfig({ INGRESS_DOMAIN: "apps.example.net", ...env }).ingress;
const token = (subject: string) => `token-for-${subject}`;
const ADMIN = "unix//run/sahary/admin.sock";

const A = "11111111-1111-4111-8111-111111111111";
const B = "22222222-2222-4222-8222-222222222222";
const C = "33333333-3333-4333-8333-333333333333";
const routes: InstanceRoute[] = [
  { instanceId: B, hostLabel: "shop-22222222", target: { kind: "edge" } },
  { instanceId: A, hostLabel: "web-11111111", target: { kind: "upstream", dial: "127.0.0.1:49153" } },
  { instanceId: C, hostLabel: "api-33333333", target: { kind: "upstream", dial: "10.0.0.5:32768" } },
];

// The rendered JSON is Caddy's; these tests read it the way Caddy would.
type Json = any;
const render = (env: Record<string, string> = {}, list = routes) => renderProxyConfig(settings(env), ADMIN, token, list);
const httpsRoutes = (config: Json): Json[] => config.apps.http.servers["sahary-https"].routes;

describe("the proxy configuration rendered from the database", () => {
  test("every configuration keeps the admin endpoint where it is and persists nothing", () => {
    for (const tls of ["internal", "acme", "off"]) {
      const { config } = render({ INGRESS_TLS: tls }) as { config: Json };
      expect(config.admin).toEqual({ listen: ADMIN, config: { persist: false } });
    }
  });

  test("one route per instance, by exact lower-case host, in id order, and the catch-all fallback last", () => {
    const { config, marker } = render() as { config: Json; marker: string };
    const list = httpsRoutes(config);
    expect(list.map((r) => r["@id"])).toEqual([`sahary-instance-${A}`, `sahary-instance-${B}`, `sahary-instance-${C}`, marker]);
    expect(list[0].match).toEqual([{ host: ["web-11111111.apps.example.net"] }]);
    expect(list.slice(0, 3).every((r) => r.terminal === true)).toBe(true);
    const fallback = list.at(-1);
    expect(fallback.match).toBeUndefined();
    expect(fallback.handle[0].rewrite.uri).toBe("/_edge/unknown");
    expect(marker.startsWith(MARKER_PREFIX)).toBe(true);
  });

  test("a running instance's route proxies to its published port; any other goes to the edge with its id and token, visitors' X-Sahary-* dropped", () => {
    const { config } = render() as { config: Json };
    const [web, shop] = httpsRoutes(config);
    expect(web.handle).toEqual([{ handler: "reverse_proxy", upstreams: [{ dial: "127.0.0.1:49153" }] }]);
    const edge = shop.handle[0];
    expect(edge.upstreams).toEqual([{ dial: "127.0.0.1:3000" }]);
    expect(edge.rewrite).toEqual({ uri: "/_edge/instance" });
    expect(edge.headers.request.set).toEqual({ "X-Sahary-Instance": [B], "X-Sahary-Edge-Token": [`token-for-${B}`] });
    expect(edge.headers.request.delete).toEqual(["X-Sahary-Error-Status"]);
    const fallback = httpsRoutes(config).at(-1).handle[0];
    expect(fallback.headers.request).toEqual({ delete: ["X-Sahary-Instance", "X-Sahary-Edge-Token", "X-Sahary-Error-Status"] });
  });

  test("the same database state renders byte-identical JSON whatever the order; any change moves the marker", () => {
    const one = render();
    const two = render({}, [...routes].reverse());
    expect(JSON.stringify(two.config)).toBe(JSON.stringify(one.config));
    expect(two.marker).toBe(one.marker);
    const changed = render({}, [{ ...routes[0]!, target: { kind: "upstream", dial: "127.0.0.1:1" } }, ...routes.slice(1)]);
    expect(changed.marker).not.toBe(one.marker);
    expect(render({ INGRESS_HTTPS_PORT: "9443" }).marker).not.toBe(one.marker);
  });

  test("internal TLS: on-demand certificates from the local CA for names the ask endpoint confirms, trust store untouched", () => {
    const { config } = render({ INGRESS_TLS: "internal", INGRESS_HTTP_PORT: "8080", INGRESS_HTTPS_PORT: "8443" }) as { config: Json };
    expect(config.apps.tls.automation).toEqual({
      policies: [{ issuers: [{ module: "internal" }], on_demand: true }],
      on_demand: { ask: "http://127.0.0.1:3000/_edge/ask" },
    });
    expect(config.apps.pki.certificate_authorities.local.install_trust).toBe(false);
    const https = config.apps.http.servers["sahary-https"];
    expect(https).toMatchObject({ listen: [":8443"], protocols: ["h1", "h2"], strict_sni_host: true, automatic_https: { disable: true }, tls_connection_policies: [{}] });
    expect(config.apps.http.grace_period).toBe("10s");
    const http = config.apps.http.servers["sahary-http"];
    expect(http.listen).toEqual([":8080"]);
    expect(http.routes[0].match).toEqual([{ host: ["*.apps.example.net"] }]);
    expect(http.routes[0].handle[0]).toEqual({ handler: "static_response", status_code: 308, headers: { Location: ["https://{http.request.host}:8443{http.request.uri}"] } });
  });

  test("acme TLS: the ACME issuer with the configured CA and email, no local CA, redirects to the default port", () => {
    const { config } = render({
      NODE_ENV: "production",
      APP_SECRET: "9f8Kq2LmZx7Vb1Nc4Rt6Yh3Jw5Pd0Gs8Ue2Ia7",
      INGRESS_ACME_EMAIL: "ops@example.net",
      INGRESS_ACME_CA: "https://acme-staging-v02.api.letsencrypt.org/directory",
      STRIPE_SECRET_KEY: "sk_test_x",
      STRIPE_WEBHOOK_SECRET: "whsec_x",
    }) as { config: Json };
    expect(config.apps.tls.automation.policies).toEqual([{ issuers: [{ module: "acme", ca: "https://acme-staging-v02.api.letsencrypt.org/directory", email: "ops@example.net" }], on_demand: true }]);
    expect(config.apps.pki).toBeUndefined();
    expect(config.apps.http.servers["sahary-https"].listen).toEqual([":443"]);
    expect(config.apps.http.servers["sahary-http"].routes[0].handle[0].headers.Location).toEqual(["https://{http.request.host}{http.request.uri}"]);
  });

  test("TLS off: one plain HTTP server carries the routes; no TLS app", () => {
    const { config } = render({ INGRESS_TLS: "off", INGRESS_HTTP_PORT: "8080" }) as { config: Json };
    expect(Object.keys(config.apps.http.servers)).toEqual(["sahary-http"]);
    expect(config.apps.http.servers["sahary-http"].routes).toHaveLength(4);
    expect(config.apps.tls).toBeUndefined();
  });

  test("only upstream failures get the edge's error page; the proxy's own 4xx (421) stay bare", () => {
    const { config } = render() as { config: Json };
    const [route] = config.apps.http.servers["sahary-https"].errors.routes;
    expect(route.match).toEqual([{ expression: "{http.error.status_code} in [502, 503, 504]" }]);
    expect(route.handle[0].rewrite).toEqual({ method: "GET", uri: "/_edge/error" });
    expect(route.handle[0].headers.request.set["X-Sahary-Edge-Token"]).toEqual(["token-for-error"]);
  });

  test("access logs go over UDP to the traffic counter with headers, addresses and paths removed; none when counting is off", () => {
    const { config } = render({ INGRESS_LOG_ADDRESS: "127.0.0.1:2020" }) as { config: Json };
    expect(config.apps.http.servers["sahary-https"].logs).toEqual({ default_logger_name: "sahary" });
    const log = config.logging.logs.sahary;
    expect(log.writer).toEqual({ output: "net", address: "udp/127.0.0.1:2020" });
    expect(Object.keys(log.encoder.fields)).toEqual(expect.arrayContaining(["request>headers", "request>remote_ip", "request>uri", "resp_headers"]));
    expect(log.include).toEqual(["http.log.access.sahary"]);
    expect(config.logging.logs.default.exclude).toEqual(["http.log.access.sahary", "admin.api"]);

    const { config: quiet } = render({ INGRESS_LOG_ADDRESS: "off" }) as { config: Json };
    expect(quiet.apps.http.servers["sahary-https"].logs).toBeUndefined();
    expect(quiet.logging.logs.sahary).toBeUndefined();
  });
});
