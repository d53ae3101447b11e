import type { Services } from "../services";
import { anonymous, type Actor } from "./actor";
import { authenticateApiKey, looksLikeApiKey } from "./api-keys";

/**
 * Turns request credentials into an actor. A bearer credential wins over a
 * cookie (an explicit credential is the caller's intent); it is an API key
 * when it carries the key prefix, a session token otherwise. A credential
 * that does not resolve yields the anonymous actor; procedures that need more
 * refuse it. `setCookie` is returned when a cookie session's sliding expiry
 * moved (or the cookie is dead and should be cleared).
 *
 * Cookies are honoured only from the platform's own origins: a browser
 * request that says it comes from elsewhere (`Origin`, `Sec-Fetch-Site`) is
 * treated as anonymous. With SameSite=Lax and JSON-only mutations this is the
 * CSRF defence (docs/api.md, "Auth").
 */
export async function resolveActor(services: Pick<Services, "sessions" | "authCache" | "db" | "config">, headers: Headers): Promise<{ actor: Actor; setCookie?: string }> {
  const authorization = headers.get("authorization");
  if (authorization) {
    const match = /^Bearer\s+(\S+)$/i.exec(authorization);
    if (!match) return { actor: anonymous };
    const credential = match[1]!;
    if (looksLikeApiKey(credential)) {
      const key = await authenticateApiKey(services.db, services.config.secret, credential, services.authCache);
      return { actor: key ? { kind: "apiKey", user: key.user, apiKeyId: key.apiKeyId, scopes: key.scopes } : anonymous };
    }
    const found = await services.sessions.validate(credential);
    if (!found) return { actor: anonymous };
    return { actor: { kind: "user", user: found.user, sessionId: found.session.id, via: "bearer" } };
  }

  const cookieHeader = headers.get("cookie");
  const token = cookieHeader ? services.sessions.readCookie(cookieHeader) : null;
  if (!token || !fromOwnOrigin(headers, services.config)) return { actor: anonymous };
  const found = await services.sessions.validate(token);
  if (!found) return { actor: anonymous, setCookie: services.sessions.blankCookie() };
  return {
    actor: { kind: "user", user: found.user, sessionId: found.session.id, via: "cookie" },
    ...(found.session.refreshed ? { setCookie: services.sessions.cookieFor(token, found.session.expiresAt) } : {}),
  };
}

function fromOwnOrigin(headers: Headers, config: Services["config"]): boolean {
  const origin = headers.get("origin");
  if (origin) return origin === new URL(config.publicUrl).origin || config.http.corsOrigins.includes(origin);
  // Without Origin (same-origin GETs, non-browser clients) a browser still says where it came from.
  return headers.get("sec-fetch-site") !== "cross-site";
}
