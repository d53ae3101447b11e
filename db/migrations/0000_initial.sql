CREATE TYPE "public"."user_role" AS ENUM('customer', 'operator', 'admin');--> statement-breakpoint
CREATE TYPE "public"."user_status" AS ENUM('unverified', 'active', 'suspended');--> statement-breakpoint
CREATE TYPE "public"."mail_status" AS ENUM('queued', 'sent', 'failed');--> statement-breakpoint
CREATE TYPE "public"."energy_event_kind" AS ENUM('level_changed', 'telemetry_lost', 'telemetry_restored', 'controller_fault', 'controller_fault_cleared', 'bridge_failed');--> statement-breakpoint
CREATE TYPE "public"."energy_severity" AS ENUM('info', 'warning', 'critical');--> statement-breakpoint
CREATE TYPE "public"."power_level" AS ENUM('normal', 'conserve', 'critical', 'shutdown');--> statement-breakpoint
CREATE TABLE "audit_log" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"actor_type" text NOT NULL,
	"actor_id" uuid,
	"action" text NOT NULL,
	"target_type" text,
	"target_id" text,
	"ip" text,
	"user_agent" text,
	"reason" text,
	"metadata" jsonb
);
--> statement-breakpoint
CREATE TABLE "sessions" (
	"id" text PRIMARY KEY NOT NULL,
	"user_id" uuid NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"absolute_expires_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"ip" text,
	"user_agent" text
);
--> statement-breakpoint
CREATE TABLE "users" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"email" text NOT NULL,
	"name" text NOT NULL,
	"password_hash" text NOT NULL,
	"role" "user_role" DEFAULT 'customer' NOT NULL,
	"status" "user_status" DEFAULT 'unverified' NOT NULL,
	"email_verified_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "mail_messages" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"to" text NOT NULL,
	"subject" text NOT NULL,
	"text" text NOT NULL,
	"kind" text NOT NULL,
	"status" "mail_status" DEFAULT 'queued' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"sent_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "energy_events" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"kind" "energy_event_kind" NOT NULL,
	"severity" "energy_severity" NOT NULL,
	"message" text NOT NULL,
	"level_change_id" uuid,
	"details" jsonb
);
--> statement-breakpoint
CREATE TABLE "energy_hourly" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"hour" timestamp with time zone NOT NULL,
	"samples" integer NOT NULL,
	"seconds" integer NOT NULL,
	"pv_wh" double precision NOT NULL,
	"load_wh" double precision NOT NULL,
	"battery_in_wh" double precision NOT NULL,
	"battery_out_wh" double precision NOT NULL,
	"pv_power_max" double precision,
	"soc_sum" double precision NOT NULL,
	"soc_count" integer NOT NULL,
	"soc_min" double precision,
	"soc_max" double precision,
	"battery_voltage_sum" double precision NOT NULL,
	"battery_voltage_count" integer NOT NULL,
	"battery_voltage_min" double precision,
	"battery_voltage_max" double precision
);
--> statement-breakpoint
CREATE TABLE "energy_level_changes" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"seq" integer NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"from_level" "power_level" NOT NULL,
	"to_level" "power_level" NOT NULL,
	"soc" double precision,
	"reading" jsonb NOT NULL,
	"policy" jsonb NOT NULL,
	"enqueued_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "energy_monitor" (
	"id" text PRIMARY KEY NOT NULL,
	"protocol" text NOT NULL,
	"started_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL,
	"telemetry" text NOT NULL,
	"last_reading_at" timestamp with time zone,
	"last_reading" jsonb,
	"frames_decoded" integer DEFAULT 0 NOT NULL,
	"frames_dropped" integer DEFAULT 0 NOT NULL,
	"bridge_state" text NOT NULL,
	"bridge_restarts" integer DEFAULT 0 NOT NULL,
	"last_bridge_exit" jsonb
);
--> statement-breakpoint
CREATE TABLE "energy_policies" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"conserve_below" double precision NOT NULL,
	"critical_below" double precision NOT NULL,
	"shutdown_below" double precision NOT NULL,
	"hysteresis" double precision NOT NULL,
	"dwell_seconds" integer NOT NULL,
	"recovery_dwell_seconds" integer NOT NULL,
	"created_by" uuid
);
--> statement-breakpoint
CREATE TABLE "energy_readings" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"seconds" integer NOT NULL,
	"samples" integer NOT NULL,
	"source" text NOT NULL,
	"pv_voltage" double precision,
	"pv_current" double precision,
	"pv_power" double precision,
	"battery_voltage" double precision,
	"battery_current" double precision,
	"soc" double precision,
	"load_voltage" double precision,
	"load_current" double precision,
	"load_power" double precision,
	"battery_temperature" double precision,
	"controller_temperature" double precision,
	"pv_power_max" double precision,
	"soc_min" double precision,
	"soc_max" double precision,
	"soc_source" text,
	"charge_state" text,
	"fault" text,
	"yield_today_kwh" double precision,
	"pv_wh" double precision NOT NULL,
	"load_wh" double precision NOT NULL,
	"battery_in_wh" double precision NOT NULL,
	"battery_out_wh" double precision NOT NULL
);
--> statement-breakpoint
ALTER TABLE "sessions" ADD CONSTRAINT "sessions_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "energy_events" ADD CONSTRAINT "energy_events_level_change_id_energy_level_changes_id_fk" FOREIGN KEY ("level_change_id") REFERENCES "public"."energy_level_changes"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "energy_policies" ADD CONSTRAINT "energy_policies_created_by_users_id_fk" FOREIGN KEY ("created_by") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "audit_log_at_idx" ON "audit_log" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "audit_log_actor_idx" ON "audit_log" USING btree ("actor_id","created_at");--> statement-breakpoint
CREATE INDEX "audit_log_action_idx" ON "audit_log" USING btree ("action","created_at");--> statement-breakpoint
CREATE INDEX "sessions_user_id_idx" ON "sessions" USING btree ("user_id");--> statement-breakpoint
CREATE UNIQUE INDEX "users_email_key" ON "users" USING btree ("email");--> statement-breakpoint
CREATE INDEX "mail_messages_status_idx" ON "mail_messages" USING btree ("status","created_at");--> statement-breakpoint
CREATE INDEX "energy_events_at_idx" ON "energy_events" USING btree ("at","id");--> statement-breakpoint
CREATE UNIQUE INDEX "energy_hourly_hour_key" ON "energy_hourly" USING btree ("hour");--> statement-breakpoint
CREATE UNIQUE INDEX "energy_level_changes_seq_key" ON "energy_level_changes" USING btree ("seq");--> statement-breakpoint
CREATE INDEX "energy_policies_created_at_idx" ON "energy_policies" USING btree ("created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "energy_readings_at_key" ON "energy_readings" USING btree ("at");