import { eq } from "drizzle-orm";
import type { Database } from "../../db/client";
import { users, type MailAttachment } from "../../db/schema";
import { invoiceWithLines } from "../billing/invoices";
import { formatMoney, renderInvoicePdf } from "../billing/pdf";
import type { Config } from "../config";
import type { EventData, EventType } from "../events/catalogue";
import type { OutboxEvent } from "../events/outbox";
import { escapeHtml } from "../html";
import { describeEvent } from "./messages";
import { CHANNEL_POLICY } from "./policy";

export type EventMail = { subject: string; text: string; html: string; attachments: MailAttachment[] };
type Details = { rows: Array<[string, string]>; link: { label: string; path: string } | null };

const day = (iso: string) => iso.slice(0, 10);
const money = (minor: number, currency: string) => formatMoney(minor, currency);

/** The facts each mail lists under its message, and a link where one leads to a page the platform serves. */
function detailsOf<T extends EventType>(type: T, raw: EventData<T>, occurredAt: Date): Details {
  const at = `${occurredAt.toISOString().replace("T", " ").slice(0, 16)} UTC`;
  switch (type) {
    case "instance.state_changed":
    case "instance.failed":
    case "instance.oom_killed":
    case "power.notice":
    case "power.paused":
    case "power.resumed": {
      const d = raw as EventData<"instance.failed">;
      return {
        rows: [
          ["Instance", d.name],
          ["Instance id", d.instanceId],
          ["When", at],
        ],
        link: null,
      };
    }
    case "invoice.issued": {
      const d = raw as EventData<"invoice.issued">;
      return {
        rows: [
          ["Invoice", d.invoiceNumber],
          ["Period", d.period],
          ["Issued", day(d.issuedAt)],
          ["Total", money(d.totalMinor, d.currency)],
          ["Amount due", money(d.amountDueMinor, d.currency)],
        ],
        link: { label: "Download the invoice (PDF)", path: `/billing/invoices/${d.invoiceId}/pdf` },
      };
    }
    case "invoice.overdue": {
      const d = raw as EventData<"invoice.overdue">;
      const rows: Array<[string, string]> = [
        ["Invoice", d.invoiceNumber],
        ["Issued", day(d.issuedAt)],
        ["Amount due", money(d.amountDueMinor, d.currency)],
        ["Reminder", String(d.reminder)],
      ];
      if (d.blocksNewInstancesAt) rows.push(["New instances refused from", day(d.blocksNewInstancesAt)]);
      return { rows, link: { label: "Download the invoice (PDF)", path: `/billing/invoices/${d.invoiceId}/pdf` } };
    }
    case "payment.succeeded": {
      const d = raw as EventData<"payment.succeeded">;
      return {
        rows: [
          ["Receipt for", `invoice ${d.invoiceNumber}`],
          ["Amount paid", money(d.amountMinor, d.currency)],
          ["Paid", at],
          ["Payment reference", d.paymentId],
        ],
        link: null,
      };
    }
    case "payment.failed":
    case "payment.refunded": {
      const d = raw as EventData<"payment.failed">;
      return {
        rows: [
          ["Invoice", d.invoiceNumber],
          ["Amount", money(d.amountMinor, d.currency)],
          ["When", at],
          ["Payment reference", d.paymentId],
        ],
        link: null,
      };
    }
    case "account.security": {
      const d = raw as EventData<"account.security">;
      const rows: Array<[string, string]> = [["When", at]];
      if (d.ip) rows.push(["From address", d.ip]);
      if (d.userAgent) rows.push(["Client", d.userAgent]);
      return { rows, link: null };
    }
    case "webhook.endpoint_disabled": {
      const d = raw as EventData<"webhook.endpoint_disabled">;
      return {
        rows: [
          ["Endpoint", d.url],
          ["When", at],
        ],
        link: null,
      };
    }
  }
  return { rows: [], link: null };
}

/**
 * The mail for an event: plain text and an HTML alternative built from the
 * same facts (inline styles only, no images or remote assets, so it looks the
 * same offline and tracks nobody). Invoices travel as their PDF.
 */
export async function renderEventMail(deps: { db: Database; config: Config }, event: OutboxEvent, recipient: { name: string }): Promise<EventMail> {
  const type = event.type as EventType;
  const data = event.data as EventData<EventType>;
  const message = describeEvent(type, data);
  const details = detailsOf(type, data, event.occurredAt);
  const base = deps.config.publicUrl.replace(/\/+$/, "");
  const link = details.link ? { label: details.link.label, url: `${base}${details.link.path}` } : null;
  const mandatory = (CHANNEL_POLICY[type].mandatory ?? []).includes("email");
  const footer = mandatory ? "This is a security notice about your account; it is always sent." : `You get this mail because of your notification settings: ${base}/settings/notifications`;

  const text = [
    `Hello ${recipient.name},`,
    "",
    message.body,
    "",
    ...details.rows.map(([label, value]) => `${label}: ${value}`),
    ...(link ? ["", `${link.label}: ${link.url}`] : []),
    "",
    "-- ",
    "Sahary Cloud, hosting that runs on sunlight",
    footer,
    "",
  ].join("\n");

  const rows = details.rows
    .map(([label, value]) => `<tr><td style="padding:4px 16px 4px 0;color:#6b7280">${escapeHtml(label)}</td><td style="padding:4px 0;color:#111827">${escapeHtml(value)}</td></tr>`)
    .join("");
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${escapeHtml(message.title)}</title></head>
<body style="margin:0;padding:24px;background:#f9fafb;font-family:Helvetica,Arial,sans-serif;font-size:15px;line-height:1.5;color:#111827">
<table role="presentation" width="100%" style="max-width:560px;margin:0 auto;background:#ffffff;border:1px solid #e5e7eb;border-radius:8px"><tr><td style="padding:24px">
<p style="margin:0 0 16px;font-size:13px;letter-spacing:.05em;color:#b45309;font-weight:bold">SAHARY CLOUD</p>
<h1 style="margin:0 0 16px;font-size:20px">${escapeHtml(message.title)}</h1>
<p style="margin:0 0 16px">Hello ${escapeHtml(recipient.name)},</p>
<p style="margin:0 0 16px">${escapeHtml(message.body)}</p>
${rows ? `<table role="presentation" style="margin:0 0 16px;font-size:14px">${rows}</table>` : ""}
${link ? `<p style="margin:0 0 16px"><a href="${escapeHtml(link.url)}" style="display:inline-block;padding:10px 16px;background:#b45309;color:#ffffff;text-decoration:none;border-radius:6px">${escapeHtml(link.label)}</a></p>` : ""}
<p style="margin:24px 0 0;font-size:12px;color:#6b7280">Sahary Cloud, hosting that runs on sunlight.<br>${escapeHtml(footer)}</p>
</td></tr></table></body></html>`;

  return { subject: message.title, text, html, attachments: await attachmentsFor(deps.db, type, data) };
}

/** The invoice's PDF with the mails about that invoice; nothing with the others. */
async function attachmentsFor(db: Database, type: EventType, data: EventData<EventType>): Promise<MailAttachment[]> {
  if (type !== "invoice.issued" && type !== "invoice.overdue") return [];
  const { invoiceId } = data as EventData<"invoice.issued">;
  const { invoice, lines } = await invoiceWithLines(db, null, invoiceId);
  const [customer] = await db.select({ name: users.name, email: users.email }).from(users).where(eq(users.id, invoice.userId));
  const pdf = await renderInvoicePdf(invoice, lines, customer!);
  return [{ filename: `${invoice.number}.pdf`, contentType: "application/pdf", contentBase64: pdf.toString("base64") }];
}
