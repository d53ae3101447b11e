import { createHash, timingSafeEqual } from "node:crypto";
import { Hono } from "hono";
import type { AppEnv } from "../app";
import { errorBody, httpStatusOf } from "../errors";
import type { Metrics } from "./registry";

const digest = (value: string) => createHash("sha256").update(value).digest();

/** `Authorization: Bearer <token>`, compared in constant time. */
function presents(header: string | undefined, token: string): boolean {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return match !== null && timingSafeEqual(digest(match[1]!), digest(token));
}

/** GET /metrics in Prometheus text format; with METRICS_TOKEN set, only for a scraper that presents it. */
export function metricsRoute(metrics: Metrics, token: string | undefined) {
  return new Hono<AppEnv>().get("/metrics", async (c) => {
    if (token && !presents(c.req.header("authorization"), token)) {
      return c.json(errorBody("UNAUTHENTICATED", "This endpoint needs the metrics token: Authorization: Bearer <METRICS_TOKEN>", c.get("requestId") ?? null), httpStatusOf("UNAUTHENTICATED") as 401, {
        "www-authenticate": 'Bearer realm="metrics"',
      });
    }
    return c.text(await metrics.render(), 200, { "content-type": metrics.contentType, "cache-control": "no-store" });
  });
}
