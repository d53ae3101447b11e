import { createHash } from "node:crypto";
import type { IngressConfig } from "../config";
import { instanceHost } from "./addresses";

/**
 * Renders Caddy's whole JSON configuration from what the database says. Pure:
 * the same routes give byte-identical JSON, so every process renders the same
 * configuration and its hash (the marker) tells whether the proxy holds it.
 *
 * Shape, and why (Caddy 2.6.2, see docs/ingress.md):
 * - one server per port, `automatic_https` off: the platform decides
 *   redirects and certificates; HTTPS certificates come on demand, from the
 *   local CA (`internal`) or ACME (`acme`), only for names the platform's ask
 *   endpoint confirms;
 * - one route per instance, matched by exact host, then a catch-all fallback
 *   last (routes after a catch-all are never reached); the fallback carries
 *   the configuration's marker as its `@id`;
 * - a running instance's route proxies to its published port; any other
 *   state's route proxies to the platform's edge with the instance id and a
 *   token only the platform can make;
 * - `strict_sni_host` so a TLS connection for one instance cannot carry
 *   requests for another; `protocols` h1/h2 (2.6 enables UDP h3 otherwise);
 *   a `grace_period`, because the default waits forever on reload;
 * - `admin.listen` in every configuration, or a load would move the endpoint;
 *   nothing is persisted: the configuration is derived, never the source.
 */

export type RouteTarget = { kind: "upstream"; dial: string } | { kind: "edge" };
export type InstanceRoute = { instanceId: string; hostLabel: string; target: RouteTarget };
export type RenderedConfig = { config: Record<string, unknown>; marker: string };

export type RenderSettings = Pick<IngressConfig, "domain" | "tls" | "httpPort" | "httpsPort" | "edgeUpstream" | "traffic" | "acme">;

/** The access logger whose entries are counted as traffic. */
export const TRAFFIC_LOGGER = "sahary";
export const MARKER_PREFIX = "sahary-config-";
export const GRACE_PERIOD = "10s";
const EDGE_HEADER_NAMES = ["X-Sahary-Instance", "X-Sahary-Edge-Token", "X-Sahary-Error-Status"];

export function renderProxyConfig(settings: RenderSettings, adminListen: string, edgeToken: (subject: string) => string, routes: readonly InstanceRoute[]): RenderedConfig {
  // Headers the route sets overwrite what a client sent; the others are removed, so only the proxy speaks for a request.
  const edge = (uri: string, set: Record<string, string[]>, extra: Record<string, unknown> = {}) => ({
    handler: "reverse_proxy",
    upstreams: [{ dial: settings.edgeUpstream }],
    rewrite: { ...extra, uri },
    headers: { request: { ...(Object.keys(set).length ? { set } : {}), delete: EDGE_HEADER_NAMES.filter((h) => !(h in set)) } },
  });

  const instanceRoutes = [...routes]
    .sort((a, b) => (a.instanceId < b.instanceId ? -1 : a.instanceId > b.instanceId ? 1 : 0))
    .map((route) => ({
      "@id": `sahary-instance-${route.instanceId}`,
      match: [{ host: [instanceHost(settings, route.hostLabel)] }],
      handle: [
        route.target.kind === "upstream"
          ? { handler: "reverse_proxy", upstreams: [{ dial: route.target.dial }] }
          : edge("/_edge/instance", { "X-Sahary-Instance": [route.instanceId], "X-Sahary-Edge-Token": [edgeToken(route.instanceId)] }),
      ],
      terminal: true,
    }));
  const fallback = { handle: [edge("/_edge/unknown", {})] };
  // An upstream that refuses or times out gets the platform's page too; other errors (421 for a Host
  // that differs from the TLS server name) keep the proxy's own bare status.
  const errors = {
    routes: [
      {
        match: [{ expression: "{http.error.status_code} in [502, 503, 504]" }],
        handle: [edge("/_edge/error", { "X-Sahary-Edge-Token": [edgeToken("error")], "X-Sahary-Error-Status": ["{http.error.status_code}"] }, { method: "GET" })],
      },
    ],
  };
  const logs = settings.traffic ? { logs: { default_logger_name: TRAFFIC_LOGGER } } : {};
  const common = { protocols: ["h1", "h2"], automatic_https: { disable: true }, read_header_timeout: "10s" };

  const servers: Record<string, unknown> = {};
  if (settings.tls === "off") {
    servers["sahary-http"] = { listen: [`:${settings.httpPort}`], ...common, routes: [...instanceRoutes, fallback], errors, ...logs };
  } else {
    servers["sahary-https"] = {
      listen: [`:${settings.httpsPort}`],
      ...common,
      strict_sni_host: true,
      tls_connection_policies: [{}],
      routes: [...instanceRoutes, fallback],
      errors,
      ...logs,
    };
    const port = settings.httpsPort === 443 ? "" : `:${settings.httpsPort}`;
    servers["sahary-http"] = {
      listen: [`:${settings.httpPort}`],
      ...common,
      // ACME HTTP-01 challenges are answered before any route.
      routes: [
        {
          match: [{ host: [`*.${settings.domain}`] }],
          handle: [{ handler: "static_response", status_code: 308, headers: { Location: [`https://{http.request.host}${port}{http.request.uri}`] } }],
          terminal: true,
        },
        { handle: [{ handler: "static_response", status_code: 404 }] },
      ],
    };
  }

  const apps: Record<string, unknown> = { http: { http_port: settings.httpPort, https_port: settings.httpsPort, grace_period: GRACE_PERIOD, servers } };
  if (settings.tls !== "off") {
    const issuer = settings.tls === "internal" ? { module: "internal" } : { module: "acme", ca: settings.acme.ca, ...(settings.acme.email ? { email: settings.acme.email } : {}) };
    apps.tls = {
      automation: {
        // Certificates only for names the platform vouches for: existing instances (any state but deleted).
        policies: [{ issuers: [issuer], on_demand: true }],
        on_demand: { ask: `http://${settings.edgeUpstream}/_edge/ask` },
      },
    };
    if (settings.tls === "internal") apps.pki = { certificate_authorities: { local: { install_trust: false } } };
  }

  const logging: Record<string, unknown> = {
    // The admin API logs every call; the reconciler's checks would flood the proxy's log.
    default: { exclude: settings.traffic ? [`http.log.access.${TRAFFIC_LOGGER}`, "admin.api"] : ["admin.api"] },
  };
  if (settings.traffic) {
    logging[TRAFFIC_LOGGER] = {
      // UDP: a TCP log writer that cannot connect makes Caddy 2.6 refuse the whole configuration.
      writer: { output: "net", address: `udp/${settings.traffic.address}` },
      encoder: {
        format: "filter",
        wrap: { format: "json" },
        // Only host, status and size are counted: visitors' headers, addresses and paths never leave the proxy.
        fields: Object.fromEntries(
          ["request>headers", "request>remote_ip", "request>remote_port", "request>uri", "request>proto", "request>tls", "resp_headers", "user_id"].map((field) => [field, { filter: "delete" }]),
        ),
      },
      include: [`http.log.access.${TRAFFIC_LOGGER}`],
    };
  }

  const body = { admin: { listen: adminListen, config: { persist: false } }, logging: { logs: logging }, apps };
  const marker = MARKER_PREFIX + createHash("sha256").update(JSON.stringify(body)).digest("hex").slice(0, 24);
  Object.assign(fallback, { "@id": marker });
  return { config: body, marker };
}
