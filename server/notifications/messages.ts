import { formatMoney } from "../billing/pdf";
import type { EventData, EventType } from "../events/catalogue";

export type Message = { title: string; body: string };

const when = (iso: string) => `${iso.replace("T", " ").slice(0, 16)} UTC`;
const day = (iso: string) => iso.slice(0, 10);

const DESCRIBE: { [T in EventType]: (data: EventData<T>) => Message } = {
  "instance.state_changed": (d) => ({ title: `${d.name} is ${d.to}`, body: `Instance ${d.name} moved from ${d.from ?? "nothing"} to ${d.to} (${d.reason}).` }),
  "instance.failed": (d) => ({ title: `${d.name} failed`, body: `Instance ${d.name} stopped working and is in the error state: ${d.reason}. Start it again, or delete it.` }),
  "instance.oom_killed": (d) => ({
    title: `${d.name} ran out of memory`,
    body: `Instance ${d.name} was killed for using more than its ${d.memoryMb} MB of memory (${d.reason}). Start it again, or move it to a larger plan.`,
  }),
  "power.notice": (d) => ({
    title: `${d.name} will be ${d.action === "stop" ? "stopped" : "paused"} to save power`,
    body:
      `The platform's battery is low (power level ${d.level}). To protect ${d.priority === "interruptible" ? "more important workloads" : "critical workloads"}, ` +
      `instance ${d.name} (${d.priority}) will be ${d.action === "stop" ? "stopped" : "paused"} around ${when(d.expectedAt)}. ` +
      `It comes back by itself when the battery recovers; paused and stopped time is not charged.`,
  }),
  "power.paused": (d) => ({
    title: `${d.name} was ${d.state} to save power`,
    body: `Instance ${d.name} (${d.priority}) was ${d.state} because the platform's battery is low. It comes back by itself when the battery recovers; this time is not charged.`,
  }),
  "power.resumed": (d) => ({ title: `${d.name} is running again`, body: `Power recovered: instance ${d.name} (${d.priority}), paused or stopped to save power, runs again.` }),
  "invoice.issued": (d) => ({
    title: `Invoice ${d.invoiceNumber} for ${d.period}: ${formatMoney(d.totalMinor, d.currency)}`,
    body:
      d.status === "carried_forward"
        ? `Your invoice ${d.invoiceNumber} for ${d.period} is ${formatMoney(d.totalMinor, d.currency)}, below the smallest amount a card can be charged; it is carried forward to your next invoice and there is nothing to pay now.`
        : d.amountDueMinor > 0
          ? `Your invoice ${d.invoiceNumber} for ${d.period} is ${formatMoney(d.totalMinor, d.currency)}, due now. Pay it through the billing API (billing.invoices.pay).`
          : `Your invoice ${d.invoiceNumber} for ${d.period} is ${formatMoney(d.totalMinor, d.currency)}; there is nothing to pay.`,
  }),
  "invoice.overdue": (d) => ({
    title: `Reminder: invoice ${d.invoiceNumber} is unpaid`,
    body:
      `Invoice ${d.invoiceNumber}, issued ${day(d.issuedAt)}, still has ${formatMoney(d.amountDueMinor, d.currency)} to pay (${d.daysOverdue} days). ` +
      (d.blocksNewInstancesAt ? `If it is still unpaid on ${day(d.blocksNewInstancesAt)}, no new instances can be created until it is paid. ` : "") +
      `Running instances are not affected.`,
  }),
  "payment.succeeded": (d) => ({
    title: `Payment received: ${formatMoney(d.amountMinor, d.currency)}`,
    body: `We received ${formatMoney(d.amountMinor, d.currency)} for invoice ${d.invoiceNumber}. Thank you.`,
  }),
  "payment.failed": (d) => ({
    title: `Payment for invoice ${d.invoiceNumber} failed`,
    body: `A payment of ${formatMoney(d.amountMinor, d.currency)} for invoice ${d.invoiceNumber} failed${d.failureMessage ? `: ${d.failureMessage}` : ""}. Try again (billing.invoices.pay) with the same or another card.`,
  }),
  "payment.refunded": (d) => ({
    title: `Refund: ${formatMoney(d.amountRefundedMinor, d.currency)}`,
    body: `${d.fullyRefunded ? "Your payment" : "Part of your payment"} for invoice ${d.invoiceNumber} was refunded: ${formatMoney(d.amountRefundedMinor, d.currency)} of ${formatMoney(d.amountMinor, d.currency)}.`,
  }),
  "account.security": (d) => {
    const from = d.ip ? ` from ${d.ip}` : "";
    switch (d.kind) {
      case "password_changed":
        return { title: "Your password was changed", body: `The password of your account was changed${from}. If this was not you, reset it at once.` };
      case "password_reset":
        return { title: "Your password was reset", body: `The password of your account was reset with an emailed link${from}. If this was not you, reset it at once.` };
      case "api_key_created":
        return { title: `New API key: ${d.apiKeyName ?? "unnamed"}`, body: `An API key named "${d.apiKeyName ?? ""}" was created${from}. If this was not you, revoke it and change your password.` };
      case "api_key_revoked":
        return { title: `API key revoked: ${d.apiKeyName ?? "unnamed"}`, body: `The API key named "${d.apiKeyName ?? ""}" was revoked${from}; programs using it can no longer sign in.` };
      case "webhook_endpoint_created":
        return {
          title: "New webhook endpoint",
          body: `A webhook endpoint was added${from}: events about your account will be sent to ${d.endpointUrl ?? "it"}. If this was not you, delete it and change your password.`,
        };
    }
  },
  "webhook.endpoint_disabled": (d) => ({
    title: "A webhook endpoint was disabled",
    body: `Deliveries to ${d.url} stopped: ${d.reason}. Fix the receiver, then enable the endpoint again and redeliver what it missed.`,
  }),
};

/** The title and text of an event, for the notification centre and as the core of its mail. */
export function describeEvent<T extends EventType>(type: T, data: EventData<T>): Message {
  return (DESCRIBE[type] as (data: EventData<T>) => Message)(data);
}
