ALTER TYPE "public"."invoice_line_kind" ADD VALUE 'carried_forward';--> statement-breakpoint
ALTER TYPE "public"."invoice_status" ADD VALUE 'carried_forward';--> statement-breakpoint
ALTER TABLE "invoices" DROP CONSTRAINT "invoices_amounts";--> statement-breakpoint
ALTER TABLE "invoices" ADD COLUMN "carried_in_minor" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "invoices" ADD COLUMN "carried_into_invoice_id" uuid;--> statement-breakpoint
ALTER TABLE "payments" ADD COLUMN "review_reason" text;--> statement-breakpoint
ALTER TABLE "payments" ADD COLUMN "review_flagged_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "payments_review_idx" ON "payments" USING btree ("review_flagged_at") WHERE "payments"."review_flagged_at" is not null;--> statement-breakpoint
ALTER TABLE "invoices" ADD CONSTRAINT "invoices_amounts" CHECK ("invoices"."total_minor" >= 0 and "invoices"."tax_minor" >= 0 and "invoices"."amount_paid_minor" >= 0 and "invoices"."amount_refunded_minor" >= 0 and "invoices"."carried_in_minor" >= 0);