CREATE TABLE "usage_monthly" (
	"instance_id" uuid NOT NULL,
	"period_start" timestamp with time zone NOT NULL,
	"plan_seq" integer NOT NULL,
	"user_id" uuid NOT NULL,
	"running_ms" bigint DEFAULT 0 NOT NULL,
	"paused_ms" bigint DEFAULT 0 NOT NULL,
	"emergency_paused_ms" bigint DEFAULT 0 NOT NULL,
	"tx_bytes" bigint DEFAULT 0 NOT NULL,
	"price_hourly_minor" integer NOT NULL,
	"price_monthly_minor" integer NOT NULL,
	"currency" text NOT NULL,
	CONSTRAINT "usage_monthly_instance_id_period_start_plan_seq_pk" PRIMARY KEY("instance_id","period_start","plan_seq")
);
--> statement-breakpoint
CREATE TABLE "usage_period_totals" (
	"period_start" timestamp with time zone NOT NULL,
	"currency" text NOT NULL,
	"compute_minor" bigint DEFAULT 0 NOT NULL,
	"tx_bytes" numeric(30, 0) DEFAULT 0 NOT NULL,
	CONSTRAINT "usage_period_totals_period_start_currency_pk" PRIMARY KEY("period_start","currency")
);
--> statement-breakpoint
CREATE INDEX "usage_monthly_period_user_idx" ON "usage_monthly" USING btree ("period_start","user_id");