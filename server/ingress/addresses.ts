import type { IngressConfig } from "../config";

/**
 * Instance addresses. Each instance with an HTTP port is served at
 * `<label>.<INGRESS_DOMAIN>`, where the label is `<name>-<first 8 hex digits
 * of its id>`: readable, unique among live instances (a database index holds
 * it), and one DNS label, so the name must leave room for the suffix.
 */

/** A DNS label holds 63 octets (RFC 1035 §2.3.4); `-` and 8 hex digits follow the name. */
export const SHORT_ID_LENGTH = 8;
export const MAX_NAME_LENGTH = 63 - 1 - SHORT_ID_LENGTH;

/**
 * Lower-case letters, digits and inner hyphens only: Caddy 2.6 neither
 * converts IDNs nor matches case-insensitively past 100 hosts, and `--` in
 * the third and fourth places is reserved for internationalised labels (RFC 5891).
 */
export const INSTANCE_NAME = new RegExp(`^(?!..--)[a-z0-9]([a-z0-9-]{0,${MAX_NAME_LENGTH - 2}}[a-z0-9])?$`);

export function hostLabelOf(name: string, instanceId: string): string {
  return `${name}-${instanceId.slice(0, SHORT_ID_LENGTH)}`;
}

export function instanceHost(ingress: Pick<IngressConfig, "domain">, hostLabel: string): string {
  return `${hostLabel}.${ingress.domain}`;
}

/** Where visitors reach the instance, or null when it serves no HTTP. */
export function instanceUrl(ingress: Pick<IngressConfig, "domain" | "tls" | "httpPort" | "httpsPort">, instance: { hostLabel: string; httpPort: number | null }): string | null {
  if (instance.httpPort === null) return null;
  const secure = ingress.tls !== "off";
  const port = secure ? ingress.httpsPort : ingress.httpPort;
  const shown = port === (secure ? 443 : 80) ? "" : `:${port}`;
  return `${secure ? "https" : "http"}://${instanceHost(ingress, instance.hostLabel)}${shown}`;
}

/**
 * The instance label a request's Host names, normalised the way the proxy
 * matches hosts (case-insensitive, port ignored); null for anything else,
 * including a trailing dot, which the proxy does not match either.
 */
export function labelOfHost(ingress: Pick<IngressConfig, "domain">, host: string): string | null {
  const name = host.toLowerCase().replace(/:\d+$/, "");
  const suffix = `.${ingress.domain}`;
  if (!name.endsWith(suffix)) return null;
  const label = name.slice(0, -suffix.length);
  return /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(label) ? label : null;
}
