CREATE TYPE "public"."volume_state" AS ENUM('creating', 'available', 'deleting', 'deleted', 'error');--> statement-breakpoint
ALTER TYPE "public"."instance_action_kind" ADD VALUE 'resize';--> statement-breakpoint
ALTER TYPE "public"."invoice_line_kind" ADD VALUE 'storage';--> statement-breakpoint
CREATE TABLE "instance_plans" (
	"instance_id" uuid NOT NULL,
	"seq" integer NOT NULL,
	"plan_id" uuid NOT NULL,
	"plan_slug" text NOT NULL,
	"cpu_millis" integer NOT NULL,
	"memory_mb" integer NOT NULL,
	"disk_gb" integer NOT NULL,
	"price_hourly_minor" integer NOT NULL,
	"price_monthly_minor" integer NOT NULL,
	"currency" text NOT NULL,
	"from_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "instance_plans_instance_id_seq_pk" PRIMARY KEY("instance_id","seq")
);
--> statement-breakpoint
CREATE TABLE "volume_usage" (
	"volume_id" uuid NOT NULL,
	"hour" timestamp with time zone NOT NULL,
	"user_id" uuid NOT NULL,
	"mb_ms" numeric(30, 0) DEFAULT 0 NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "volume_usage_volume_id_hour_pk" PRIMARY KEY("volume_id","hour")
);
--> statement-breakpoint
CREATE TABLE "volumes" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"host_id" uuid NOT NULL,
	"name" text NOT NULL,
	"size_mb" integer NOT NULL,
	"state" "volume_state" DEFAULT 'creating' NOT NULL,
	"state_reason" text,
	"instance_id" uuid,
	"mount_path" text,
	"price_gb_month_minor" integer NOT NULL,
	"currency" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"available_at" timestamp with time zone,
	"deleted_at" timestamp with time zone,
	"metered_until" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "allowed_registries" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"pattern" text NOT NULL,
	"note" text NOT NULL,
	"created_by" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "usage_records" DROP CONSTRAINT "usage_records_instance_id_hour_pk";--> statement-breakpoint
ALTER TABLE "instances" ALTER COLUMN "image_id" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "compute_quotas" ADD COLUMN "max_volumes" integer;--> statement-breakpoint
ALTER TABLE "compute_quotas" ADD COLUMN "max_volume_mb" integer;--> statement-breakpoint
ALTER TABLE "hosts" ADD COLUMN "userns_remap" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "hosts" ADD COLUMN "userns_root" jsonb;--> statement-breakpoint
ALTER TABLE "hosts" ADD COLUMN "volumes_supported" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "hosts" ADD COLUMN "volumes_note" text;--> statement-breakpoint
ALTER TABLE "hosts" ADD COLUMN "volume_capacity_mb" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "images" ADD COLUMN "writable_paths" jsonb DEFAULT '[]'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "instance_actions" ADD COLUMN "params" jsonb DEFAULT '{}'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "instance_actions" ADD COLUMN "progress" jsonb;--> statement-breakpoint
ALTER TABLE "instances" ADD COLUMN "image_digest" text;--> statement-breakpoint
ALTER TABLE "instances" ADD COLUMN "command" jsonb;--> statement-breakpoint
ALTER TABLE "instances" ADD COLUMN "args" jsonb;--> statement-breakpoint
ALTER TABLE "instances" ADD COLUMN "oom_kills" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "instances" ADD COLUMN "last_oom_killed_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "instances" ADD COLUMN "plan_seq" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "invoice_lines" ADD COLUMN "volume_id" uuid;--> statement-breakpoint
ALTER TABLE "meter_cursors" ADD COLUMN "plan_seq" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "usage_records" ADD COLUMN "plan_seq" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "instance_plans" ADD CONSTRAINT "instance_plans_instance_id_instances_id_fk" FOREIGN KEY ("instance_id") REFERENCES "public"."instances"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "instance_plans" ADD CONSTRAINT "instance_plans_plan_id_plans_id_fk" FOREIGN KEY ("plan_id") REFERENCES "public"."plans"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "volume_usage" ADD CONSTRAINT "volume_usage_volume_id_volumes_id_fk" FOREIGN KEY ("volume_id") REFERENCES "public"."volumes"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "volume_usage" ADD CONSTRAINT "volume_usage_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "volumes" ADD CONSTRAINT "volumes_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "volumes" ADD CONSTRAINT "volumes_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "volumes" ADD CONSTRAINT "volumes_instance_id_instances_id_fk" FOREIGN KEY ("instance_id") REFERENCES "public"."instances"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "allowed_registries" ADD CONSTRAINT "allowed_registries_created_by_users_id_fk" FOREIGN KEY ("created_by") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "volume_usage_user_hour_idx" ON "volume_usage" USING btree ("user_id","hour");--> statement-breakpoint
CREATE INDEX "volumes_user_idx" ON "volumes" USING btree ("user_id","created_at","id");--> statement-breakpoint
CREATE INDEX "volumes_host_idx" ON "volumes" USING btree ("host_id","state");--> statement-breakpoint
CREATE INDEX "volumes_instance_idx" ON "volumes" USING btree ("instance_id");--> statement-breakpoint
CREATE UNIQUE INDEX "volumes_user_live_name_key" ON "volumes" USING btree ("user_id","name") WHERE "volumes"."state" <> 'deleted';--> statement-breakpoint
CREATE UNIQUE INDEX "allowed_registries_pattern_key" ON "allowed_registries" USING btree ("pattern");--> statement-breakpoint
ALTER TABLE "invoice_lines" ADD CONSTRAINT "invoice_lines_volume_id_volumes_id_fk" FOREIGN KEY ("volume_id") REFERENCES "public"."volumes"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "usage_records_instance_hour_plan_key" ON "usage_records" USING btree ("instance_id","hour","plan_seq");--> statement-breakpoint
ALTER TABLE "hosts" DROP COLUMN "disk_limit_supported";--> statement-breakpoint
ALTER TABLE "images" DROP COLUMN "cap_add";