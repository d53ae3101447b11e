import PDFDocument from "pdfkit";
import type { InvoiceLine, Invoice } from "./invoices";

/** `1234` minor units of USD → `USD 12.34` (currencies with two decimals, like every plan we sell). */
export function formatMoney(minor: number, currency: string): string {
  const sign = minor < 0 ? "-" : "";
  const abs = Math.abs(minor);
  return `${sign}${currency} ${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, "0")}`;
}

const formatQuantity = (quantity: number, unit: string) => `${Number(quantity.toFixed(4))} ${unit}${unit === "hour" && quantity !== 1 ? "s" : ""}`;

/**
 * The invoice as a PDF (A4, the built-in Helvetica, no system fonts): number,
 * period, one row per line, subtotal, discounts, credits, tax and total.
 */
export function renderInvoicePdf(invoice: Invoice, lines: InvoiceLine[], customer: { name: string; email: string }): Promise<Buffer> {
  const doc = new PDFDocument({ size: "A4", margin: 50, info: { Title: `Invoice ${invoice.number}`, Author: "Sahary Cloud" } });
  const chunks: Buffer[] = [];
  doc.on("data", (chunk: Buffer) => chunks.push(chunk));
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on("end", () => resolve(Buffer.concat(chunks)));
    doc.on("error", reject);
  });
  const money = (minor: number) => formatMoney(minor, invoice.currency);
  const day = (d: Date) => d.toISOString().slice(0, 10);

  doc.font("Helvetica-Bold").fontSize(20).text("Sahary Cloud");
  doc.font("Helvetica").fontSize(9).fillColor("#555").text("Solar-powered cloud hosting");
  doc.moveDown(1.5).fillColor("#000");
  doc.font("Helvetica-Bold").fontSize(14).text(`Invoice ${invoice.number}`);
  doc.font("Helvetica").fontSize(10);
  doc.text(`Period: ${invoice.period} (${day(invoice.periodStart)} to ${day(new Date(invoice.periodEnd.getTime() - 1))}, UTC)`);
  doc.text(`Issued: ${day(invoice.finalizedAt ?? invoice.createdAt)}`);
  doc.text(`Status: ${invoice.status}`);
  doc.text(`Billed to: ${customer.name} <${customer.email}>`);
  doc.moveDown(1.5);

  const columns = { description: 50, quantity: 300, unitPrice: 390, amount: 470 };
  const row = (cells: { description: string; quantity: string; unitPrice: string; amount: string }, bold = false) => {
    const y = doc.y;
    doc.font(bold ? "Helvetica-Bold" : "Helvetica").fontSize(9);
    doc.text(cells.description, columns.description, y, { width: 245 });
    const after = doc.y;
    doc.text(cells.quantity, columns.quantity, y, { width: 85 });
    doc.text(cells.unitPrice, columns.unitPrice, y, { width: 75 });
    doc.text(cells.amount, columns.amount, y, { width: 75, align: "right" });
    doc.x = columns.description;
    doc.y = Math.max(after, doc.y) + 4;
  };
  row({ description: "Description", quantity: "Quantity", unitPrice: "Unit price", amount: "Amount" }, true);
  for (const line of lines) {
    // The energy line is information, not a charge: no price, no amount.
    const priced = line.kind !== "energy";
    row({ description: line.description, quantity: formatQuantity(line.quantity, line.unit), unitPrice: priced ? money(line.unitPriceMinor) : "", amount: priced ? money(line.amountMinor) : "" });
  }
  doc.moveDown(1);
  const total = (label: string, minor: number, bold = false) => row({ description: "", quantity: "", unitPrice: label, amount: money(minor) }, bold);
  total("Subtotal", invoice.subtotalMinor);
  if (invoice.discountMinor) total("Discounts", -invoice.discountMinor);
  if (invoice.creditMinor) total("Credits", -invoice.creditMinor);
  total(`Tax ${invoice.taxRateBps / 100}%`, invoice.taxMinor);
  total("Total", invoice.totalMinor, true);
  if (invoice.amountPaidMinor) total("Paid", -invoice.amountPaidMinor);
  if (invoice.amountRefundedMinor) total("Refunded", invoice.amountRefundedMinor);

  doc.end();
  return done;
}
