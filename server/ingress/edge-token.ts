import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * The proxy forwards requests for instances that are not running to the
 * platform's edge endpoints, which are also reachable directly (in compose
 * the API is another container, so a loopback check cannot tell the proxy
 * apart). The route carries a token only the platform can compute: an HMAC,
 * keyed from APP_SECRET, of what the request is about (an instance id, or
 * the fixed purpose `error`). Headers a client sends are overwritten or
 * removed by the route.
 */
export type EdgeTokens = {
  token(subject: string): string;
  verify(subject: string, token: string | undefined | null): boolean;
};

export function createEdgeTokens(appSecret: string): EdgeTokens {
  const key = createHmac("sha256", appSecret).update("sahary ingress edge v1").digest();
  const token = (subject: string) => createHmac("sha256", key).update(subject).digest("base64url").slice(0, 32);
  return {
    token,
    verify(subject, given) {
      if (!given) return false;
      const expected = Buffer.from(token(subject));
      const actual = Buffer.from(given);
      return actual.length === expected.length && timingSafeEqual(actual, expected);
    },
  };
}

export const EDGE_HEADERS = { instance: "x-sahary-instance", token: "x-sahary-edge-token", errorStatus: "x-sahary-error-status" } as const;
