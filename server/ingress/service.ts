import type { Database } from "../../db/client";
import type { Config } from "../config";
import type { Logger } from "../log";
import { createCaddyAdmin, type CaddyAdmin } from "./caddy-admin";
import { createEdgeTokens, type EdgeTokens } from "./edge-token";
import { createRouteSync, type RouteSync } from "./sync";

/** The ingress proxy as a process sees it: its admin API, the route sync, the edge's tokens. */
export type Ingress = { admin: CaddyAdmin; routes: RouteSync; tokens: EdgeTokens };

export function createIngress(deps: { db: Database; config: Config; log: Logger }): Ingress {
  const admin = createCaddyAdmin(deps.config.ingress);
  const tokens = createEdgeTokens(deps.config.secret);
  const routes = createRouteSync({ db: deps.db, settings: deps.config.ingress, admin, tokens, log: deps.log.child({ component: "ingress" }) });
  return { admin, routes, tokens };
}
