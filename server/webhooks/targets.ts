import { lookup } from "node:dns/promises";
import { networkInterfaces } from "node:os";
import ipaddr from "ipaddr.js";
import type { Config } from "../config";
import { AppError } from "../errors";

/**
 * Where webhooks may go (SSRF protection). A customer chooses the URL, so
 * without checks the platform would POST into its own network on their
 * behalf: the metadata service, Redis, the Docker API, tenant containers.
 *
 * - On save: http(s) only (https only in production), no userinfo, and a
 *   literal address or a name that resolves now must be allowed.
 * - At every attempt (DNS changes over a day of retries): the name is resolved
 *   once, every address it yields must be allowed, and the request is sent to
 *   that checked address (Host header and TLS server name keep the name), so a
 *   second resolution cannot swap in another address (DNS rebinding).
 *
 * Allowed means: ipaddr.js ranks it `unicast` (public), it is not one of this
 * host's own public addresses (where customers' containers publish ports), and
 * it is not in WEBHOOK_DENY_ADDRESSES. WEBHOOK_ALLOW_PRIVATE_TARGETS lifts the
 * range rule (loopback, private, link-local...) for development and tests; the
 * deny list still applies.
 */

export type TargetPolicy = {
  requireHttps: boolean;
  allowPrivate: boolean;
  deny: ReadonlyArray<[ipaddr.IPv4 | ipaddr.IPv6, number]>;
  /** This host's own public addresses. */
  own: ReadonlySet<string>;
};

export function targetPolicy(config: Pick<Config, "webhooks">): TargetPolicy {
  const own = new Set<string>();
  for (const addresses of Object.values(networkInterfaces())) {
    for (const entry of addresses ?? []) {
      const address = ipaddr.process(entry.address.split("%")[0]!);
      if (address.range() === "unicast") own.add(address.toNormalizedString());
    }
  }
  return {
    requireHttps: config.webhooks.requireHttps,
    allowPrivate: config.webhooks.allowPrivateTargets,
    deny: config.webhooks.denyAddresses.map((entry) =>
      entry.includes("/") ? ipaddr.parseCIDR(entry) : ([ipaddr.process(entry), entry.includes(":") ? 128 : 32] as [ipaddr.IPv4 | ipaddr.IPv6, number]),
    ),
    own,
  };
}

/** Why an address may not be a webhook target, or null when it may. */
export function refusedAddress(raw: string, policy: TargetPolicy): string | null {
  if (!ipaddr.isValid(raw)) return `${raw} is not an IP address`;
  // process() turns an IPv4-mapped IPv6 address (::ffff:127.0.0.1) back into the IPv4 one it hides.
  const address = ipaddr.process(raw);
  for (const range of policy.deny) {
    if (address.kind() === range[0].kind() && address.match(range)) return `${raw} is on the platform's deny list`;
  }
  const kind = address.range();
  if (kind !== "unicast" && !policy.allowPrivate) return `${raw} is a ${kind} address, not a public one`;
  if (policy.own.has(address.toNormalizedString())) return `${raw} is this platform's own address`;
  return null;
}

export class TargetRefused extends Error {
  override name = "TargetRefused";
}

/** The host name did not resolve: refused for this attempt, but not a reason to refuse saving it. */
export class TargetUnresolvable extends TargetRefused {
  override name = "TargetUnresolvable";
}

const hostOf = (url: URL) => url.hostname.replace(/^\[(.*)\]$/, "$1");

/** The URL's shape: scheme, no credentials, a host. Throws TargetRefused. */
export function checkUrlShape(raw: string, policy: TargetPolicy): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new TargetRefused("not a valid URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new TargetRefused("only http and https URLs are allowed");
  if (policy.requireHttps && url.protocol !== "https:") throw new TargetRefused("only https URLs are allowed");
  if (url.username || url.password) throw new TargetRefused("URLs may not carry a user name or password");
  if (!url.hostname) throw new TargetRefused("the URL has no host");
  return url;
}

export type ResolvedTarget = { url: URL; address: string; family: 4 | 6 };

export type Resolver = (host: string) => Promise<Array<{ address: string; family: number }>>;
const systemResolver: Resolver = (host) => lookup(host, { all: true });

/**
 * Resolves the URL's host and checks every address it yields; returns the
 * first, which the request must then be sent to. Throws TargetRefused.
 */
export async function resolveTarget(url: URL, policy: TargetPolicy, resolve: Resolver = systemResolver): Promise<ResolvedTarget> {
  const host = hostOf(url);
  let addresses: Array<{ address: string; family: number }>;
  if (ipaddr.isValid(host)) {
    addresses = [{ address: host, family: host.includes(":") ? 6 : 4 }];
  } else {
    try {
      addresses = await resolve(host);
    } catch (error) {
      throw new TargetUnresolvable(`${host} does not resolve (${(error as { code?: string }).code ?? (error as Error).message})`);
    }
    if (addresses.length === 0) throw new TargetUnresolvable(`${host} does not resolve`);
  }
  for (const { address } of addresses) {
    const why = refusedAddress(address, policy);
    if (why) throw new TargetRefused(host === address ? why : `${host} resolves to ${why}`);
  }
  const first = addresses[0]!;
  return { url, address: first.address, family: first.family === 6 ? 6 : 4 };
}

/**
 * The check on save: shape, and the addresses if the name resolves now (a
 * name that does not resolve yet is accepted; every attempt checks again).
 * Refusals are WEBHOOK_URL_REFUSED with the reason.
 */
export async function validateTargetUrl(raw: string, policy: TargetPolicy, resolve: Resolver = systemResolver): Promise<string> {
  try {
    const url = checkUrlShape(raw, policy);
    await resolveTarget(url, policy, resolve).catch((error) => {
      if (error instanceof TargetUnresolvable) return null;
      throw error;
    });
    return url.toString();
  } catch (error) {
    if (!(error instanceof TargetRefused)) throw error;
    throw new AppError("WEBHOOK_URL_REFUSED", `This webhook URL is not allowed: ${error.message}`, { details: { reason: error.message } });
  }
}
