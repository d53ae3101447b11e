ALTER TYPE "public"."instance_action_kind" ADD VALUE 'throttle';--> statement-breakpoint
ALTER TYPE "public"."energy_event_kind" ADD VALUE 'link_degraded';--> statement-breakpoint
ALTER TYPE "public"."energy_event_kind" ADD VALUE 'forecast_warning';--> statement-breakpoint
ALTER TYPE "public"."energy_event_kind" ADD VALUE 'policy_misaligned';--> statement-breakpoint
ALTER TYPE "public"."invoice_line_kind" ADD VALUE 'energy';--> statement-breakpoint
CREATE TABLE "energy_attributions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"from" timestamp with time zone NOT NULL,
	"until" timestamp with time zone NOT NULL,
	"load_wh" double precision NOT NULL,
	"solar_wh" double precision NOT NULL,
	"battery_wh" double precision NOT NULL,
	"backup_wh" double precision NOT NULL,
	"idle_wh" double precision NOT NULL,
	"attributed_wh" double precision NOT NULL,
	"unattributed_wh" double precision NOT NULL,
	"instances" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "usage_energy" (
	"instance_id" uuid NOT NULL,
	"hour" timestamp with time zone NOT NULL,
	"user_id" uuid NOT NULL,
	"load_wh" double precision DEFAULT 0 NOT NULL,
	"solar_wh" double precision DEFAULT 0 NOT NULL,
	"battery_wh" double precision DEFAULT 0 NOT NULL,
	"backup_wh" double precision DEFAULT 0 NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "usage_energy_instance_id_hour_pk" PRIMARY KEY("instance_id","hour")
);
--> statement-breakpoint
ALTER TABLE "instances" ADD COLUMN "cpu_throttle_millis" integer;--> statement-breakpoint
ALTER TABLE "instances" ADD COLUMN "cpu_throttle_reason" text;--> statement-breakpoint
ALTER TABLE "energy_level_changes" ADD COLUMN "cause" text DEFAULT 'soc' NOT NULL;--> statement-breakpoint
ALTER TABLE "energy_monitor" ADD COLUMN "link" jsonb;--> statement-breakpoint
ALTER TABLE "energy_monitor" ADD COLUMN "rejections" jsonb DEFAULT '{}'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "energy_monitor" ADD COLUMN "clock" jsonb;--> statement-breakpoint
ALTER TABLE "energy_monitor" ADD COLUMN "controller_settings" jsonb;--> statement-breakpoint
ALTER TABLE "energy_monitor" ADD COLUMN "forecast" jsonb;--> statement-breakpoint
ALTER TABLE "usage_energy" ADD CONSTRAINT "usage_energy_instance_id_instances_id_fk" FOREIGN KEY ("instance_id") REFERENCES "public"."instances"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "usage_energy" ADD CONSTRAINT "usage_energy_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "energy_attributions_from_key" ON "energy_attributions" USING btree ("from");--> statement-breakpoint
CREATE INDEX "energy_attributions_until_idx" ON "energy_attributions" USING btree ("until");--> statement-breakpoint
CREATE INDEX "usage_energy_user_hour_idx" ON "usage_energy" USING btree ("user_id","hour");