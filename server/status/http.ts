import { Hono } from "hono";
import type { AppEnv } from "../app";
import type { Services } from "../services";
import { renderStatusPage } from "./page";
import { publicStatus, type PublicStatus } from "./public-status";

/** Anyone may ask, as often as they like: one computation serves every request for this long. */
const CACHE_MS = 5000;

/**
 * `GET /status`: the public power status page (HTML), or its figures as JSON
 * for a client that asks for `application/json`. No sign-in, nothing about
 * any tenant. STATUS_PAGE_ENABLED=false leaves the route out (404).
 */
export function statusRoutes(services: Services) {
  const routes = new Hono<AppEnv>();
  if (!services.config.energy.statusPage) return routes;
  let cached: { at: number; value: Promise<PublicStatus> } | null = null;
  const current = () => {
    if (!cached || Date.now() - cached.at > CACHE_MS) {
      const value = publicStatus(services.db, services.config.energy);
      cached = { at: Date.now(), value };
      // A failure is not kept: the next request tries again.
      value.catch(() => (cached = null));
    }
    return cached.value;
  };
  routes.get("/status", async (c) => {
    const status = await current();
    c.header("cache-control", `public, max-age=${CACHE_MS / 1000}`);
    c.header("vary", "accept");
    if (wantsJson(c.req.header("accept"))) return c.json(status);
    return c.html(renderStatusPage(status));
  });
  return routes;
}

/** JSON when the client asks for it ahead of (or without) HTML. */
export function wantsJson(accept: string | undefined): boolean {
  if (!accept) return false;
  const json = accept.indexOf("application/json");
  const html = accept.indexOf("text/html");
  return json >= 0 && (html < 0 || json < html);
}
