import type { Config } from "../config";

/**
 * The CSRF rule for cookie sessions, beside SameSite=Lax and the origin check
 * in resolve.ts: a mutation authenticated by the session cookie must say where
 * it comes from (`Origin`, which browsers send with every POST) and be JSON.
 * A request without `Origin` is not a browser on our page, and a form can post
 * multipart or url-encoded bodies cross-site without a preflight — tRPC would
 * hand multipart to a procedure without input (`auth.logoutAll`) and run it.
 * Bearer tokens and API keys are never sent by a browser on its own, so they
 * need none of this.
 */
export function cookieMutationProblem(headers: Headers, config: Pick<Config, "publicUrl" | "http">): string | null {
  const origin = headers.get("origin");
  if (!origin) return "A mutation authenticated by the session cookie needs an Origin header";
  if (origin !== new URL(config.publicUrl).origin && !config.http.corsOrigins.includes(origin)) return "This origin may not use the session cookie";
  const type = headers.get("content-type")?.split(";")[0]?.trim().toLowerCase();
  if (type !== "application/json") return "A mutation authenticated by the session cookie must send a JSON body (content-type: application/json)";
  return null;
}
