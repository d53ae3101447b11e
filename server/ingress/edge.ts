import { and, eq, inArray, isNotNull, notInArray } from "drizzle-orm";
import { Hono, type Context } from "hono";
import { instanceActions, instances } from "../../db/schema";
import type { InstancePriority } from "../compute/states";
import { estimateRecovery, type RecoveryEstimate } from "../energy/recovery";
import type { Services } from "../services";
import { labelOfHost } from "./addresses";
import { EDGE_HEADERS } from "./edge-token";
import { edgeStateOf, instanceAnswer, notRespondingAnswer, renderAnswer, unknownHostAnswer, type EdgeAnswer } from "./edge-answers";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** The battery estimate changes slowly; a paused site under load must not cost four queries a request. */
const ESTIMATE_TTL_MS = 5000;

type EdgeEnv = { Variables: { requestId: string } };

/**
 * The platform's side of the power-aware edge. The proxy sends here the
 * requests it must not pass to a container: for an instance that is not
 * running (`/_edge/instance`, with the instance id and its token), for a host
 * no instance owns (`/_edge/unknown`) and for errors it met proxying
 * (`/_edge/error`). Requests without the route's token get the unknown-host
 * answer, so nobody can read an instance's state by id through the API.
 * `/_edge/ask` is on-demand TLS's question: may a certificate be issued for
 * this name? 200 only for the host of an instance that is not deleted.
 */
export function edgeRoutes(services: Services) {
  const { db, config } = services;
  const tokens = services.ingress.tokens;
  const app = new Hono<EdgeEnv>();
  const estimates = new Map<InstancePriority, { at: number; value: Promise<RecoveryEstimate> }>();

  const estimate = (priority: InstancePriority) => {
    const cached = estimates.get(priority);
    if (cached && Date.now() - cached.at < ESTIMATE_TTL_MS) return cached.value;
    const value = estimateRecovery(db, config.energy, priority);
    estimates.set(priority, { at: Date.now(), value });
    value.catch(() => estimates.delete(priority));
    return value;
  };

  const respond = (c: Context<EdgeEnv>, answer: EdgeAnswer) => {
    const { body, headers } = renderAnswer(answer, c.req.header("accept"), c.get("requestId") ?? null);
    return c.body(body, answer.status as 404, headers);
  };
  const host = (c: Context<EdgeEnv>) => (c.req.header("host") ?? "").slice(0, 300);

  app.all("/_edge/instance", async (c) => {
    const instanceId = c.req.header(EDGE_HEADERS.instance) ?? "";
    if (!UUID.test(instanceId) || !tokens.verify(instanceId, c.req.header(EDGE_HEADERS.token))) return respond(c, unknownHostAnswer(host(c)));
    const [row] = await db.select({ state: instances.state, stateReason: instances.stateReason, priority: instances.priority }).from(instances).where(eq(instances.id, instanceId));
    if (!row) return respond(c, unknownHostAnswer(host(c)));
    const [open] = await db
      .select({ kind: instanceActions.kind, reason: instanceActions.reason })
      .from(instanceActions)
      .where(and(eq(instanceActions.instanceId, instanceId), inArray(instanceActions.status, ["pending", "running"])));
    const state = edgeStateOf(row, open ?? null);
    if (state === "gone") return respond(c, unknownHostAnswer(host(c)));
    return respond(c, instanceAnswer(host(c), state, state === "power" ? await estimate(row.priority) : null));
  });

  app.all("/_edge/unknown", (c) => respond(c, unknownHostAnswer(host(c))));

  app.all("/_edge/error", (c) => {
    if (!tokens.verify("error", c.req.header(EDGE_HEADERS.token))) return respond(c, unknownHostAnswer(host(c)));
    const status = Number.parseInt(c.req.header(EDGE_HEADERS.errorStatus) ?? "", 10);
    return respond(c, notRespondingAnswer(host(c), Number.isInteger(status) ? status : null));
  });

  app.get("/_edge/ask", async (c) => {
    const label = labelOfHost(config.ingress, c.req.query("domain") ?? "");
    if (!label) return c.body(null, 404);
    const [found] = await db
      .select({ id: instances.id })
      .from(instances)
      .where(and(eq(instances.hostLabel, label), isNotNull(instances.httpPort), notInArray(instances.state, ["deleting", "deleted"])))
      .limit(1);
    return c.body(null, found ? 200 : 404);
  });

  return app;
}
