import { eq } from "drizzle-orm";
import { Hono, type Context } from "hono";
import { users } from "../../db/schema";
import type { AppEnv } from "../app";
import { callerIds } from "../auth/actor";
import { resolveActor } from "../auth/resolve";
import { AppError, errorBody, httpStatusOf, isAppError } from "../errors";
import type { Services } from "../services";
import { invoiceWithLines } from "./invoices";
import { renderInvoicePdf } from "./pdf";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Billing's plain-HTTP routes (files a browser downloads, outside tRPC).
 * `GET /billing/invoices/:id/pdf` serves the owner's invoice as a PDF; anyone
 * else, and any id that is not an invoice of theirs, gets NOT_FOUND.
 */
export function billingRoutes(services: Services) {
  const routes = new Hono<AppEnv>();

  routes.get("/billing/invoices/:id/pdf", async (c) => {
    try {
      const userId = await authorize(services, c);
      const id = c.req.param("id");
      if (!UUID.test(id)) throw new AppError("NOT_FOUND", "No such invoice", { details: { invoiceId: id } });
      const { invoice, lines } = await invoiceWithLines(services.db, userId, id);
      const [customer] = await services.db.select({ name: users.name, email: users.email }).from(users).where(eq(users.id, userId));
      const pdf = await renderInvoicePdf(invoice, lines, customer!);
      return c.body(new Uint8Array(pdf), 200, {
        "content-type": "application/pdf",
        "content-disposition": `inline; filename="${invoice.number}.pdf"`,
        "cache-control": "private, no-store",
      });
    } catch (error) {
      if (!isAppError(error)) throw error;
      return c.json(errorBody(error.appCode, error.message, c.get("requestId") ?? null), httpStatusOf(error.appCode) as 400);
    }
  });

  return routes;
}

/**
 * The same rule as `verifiedProcedure` with scope `billing:read`: a session
 * or an API key holding the scope, of an active, verified account.
 */
async function authorize(services: Services, c: Context<AppEnv>): Promise<string> {
  const { actor, setCookie } = await resolveActor(services, c.req.raw.headers);
  if (setCookie) c.header("Set-Cookie", setCookie, { append: true });
  c.set("caller", callerIds(actor));
  if (actor.kind !== "user" && actor.kind !== "apiKey") throw new AppError("UNAUTHENTICATED", "Authentication required");
  if (actor.user.status === "suspended") throw new AppError("ACCOUNT_SUSPENDED", "This account is suspended");
  if (actor.kind === "apiKey" && !actor.scopes.includes("billing:read"))
    throw new AppError("INSUFFICIENT_SCOPE", "This API key lacks the billing:read scope", { details: { requiredScope: "billing:read" } });
  if (actor.user.status !== "active") throw new AppError("EMAIL_NOT_VERIFIED", "Verify your email address first");
  return actor.user.id;
}
