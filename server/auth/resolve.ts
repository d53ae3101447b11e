import type { Services } from "../services";
import { anonymous, type Actor } from "./actor";

/**
 * Turns request credentials into an actor. A bearer token wins over a cookie
 * (an explicit credential is the caller's intent). A credential that does not
 * resolve yields the anonymous actor; procedures that need more refuse it.
 * `setCookie` is returned when a cookie session's sliding expiry moved.
 */
export async function resolveActor(
  services: Pick<Services, "sessions">,
  headers: Headers,
): Promise<{ actor: Actor; setCookie?: string }> {
  const authorization = headers.get("authorization");
  if (authorization) {
    const match = /^Bearer\s+(\S+)$/i.exec(authorization);
    if (!match) return { actor: anonymous };
    const found = await services.sessions.validate(match[1]!);
    if (!found) return { actor: anonymous };
    return { actor: { kind: "user", user: found.user, sessionId: found.session.id, via: "bearer" } };
  }

  const cookieHeader = headers.get("cookie");
  const token = cookieHeader ? services.sessions.readCookie(cookieHeader) : null;
  if (!token) return { actor: anonymous };
  const found = await services.sessions.validate(token);
  if (!found) return { actor: anonymous, setCookie: services.sessions.blankCookie() };
  return {
    actor: { kind: "user", user: found.user, sessionId: found.session.id, via: "cookie" },
    ...(found.session.refreshed ? { setCookie: services.sessions.cookieFor(token) } : {}),
  };
}
