import ipaddr from "ipaddr.js";

/**
 * The client's address. Without trusted proxies it is the TCP peer. Behind
 * `hops` proxies that each append the address they received from to
 * X-Forwarded-For (nginx, Caddy, Traefik, cloud load balancers), the entries
 * the client itself wrote are on the left and cannot be trusted: the client is
 * the entry `hops` places from the right — the one our outermost proxy
 * appended. With fewer entries than hops (a request that reached us bypassing
 * a proxy layer) the leftmost entry is the best there is. An entry that is not
 * an IP address yields the peer address rather than attacker-chosen text.
 */
export function clientAddress(peer: string | null, forwardedFor: string | undefined, hops: number): string | null {
  if (hops <= 0 || !forwardedFor) return normalise(peer);
  const entries = forwardedFor
    .split(",")
    .map((entry) => entry.trim())
    .filter(Boolean);
  if (entries.length === 0) return normalise(peer);
  const chosen = entries[Math.max(0, entries.length - hops)]!;
  return normalise(chosen) ?? normalise(peer);
}

/** A canonical address (IPv4-mapped IPv6 as IPv4), or null when `value` is not one. */
function normalise(value: string | null | undefined): string | null {
  if (!value || !ipaddr.isValid(value)) return null;
  const parsed = ipaddr.parse(value);
  return parsed.kind() === "ipv6" && (parsed as ipaddr.IPv6).isIPv4MappedAddress() ? (parsed as ipaddr.IPv6).toIPv4Address().toString() : parsed.toString();
}
