CREATE TYPE "public"."email_token_purpose" AS ENUM('verify_email', 'reset_password');--> statement-breakpoint
CREATE TYPE "public"."user_role" AS ENUM('customer', 'operator', 'admin');--> statement-breakpoint
CREATE TYPE "public"."user_status" AS ENUM('unverified', 'active', 'suspended');--> statement-breakpoint
CREATE TYPE "public"."instance_action_kind" AS ENUM('create', 'start', 'stop', 'restart', 'delete', 'pause', 'resume');--> statement-breakpoint
CREATE TYPE "public"."instance_action_status" AS ENUM('pending', 'running', 'succeeded', 'failed');--> statement-breakpoint
CREATE TYPE "public"."host_status" AS ENUM('active', 'offline');--> statement-breakpoint
CREATE TYPE "public"."instance_priority" AS ENUM('critical', 'standard', 'interruptible');--> statement-breakpoint
CREATE TYPE "public"."instance_state" AS ENUM('pending', 'provisioning', 'running', 'stopping', 'stopped', 'paused', 'deleting', 'deleted', 'error');--> statement-breakpoint
CREATE TYPE "public"."mail_status" AS ENUM('queued', 'sent', 'failed');--> statement-breakpoint
CREATE TYPE "public"."energy_event_kind" AS ENUM('level_changed', 'telemetry_lost', 'telemetry_restored', 'controller_fault', 'controller_fault_cleared', 'bridge_failed', 'instances_shed', 'instances_restored', 'backup_signalled');--> statement-breakpoint
CREATE TYPE "public"."energy_severity" AS ENUM('info', 'warning', 'critical');--> statement-breakpoint
CREATE TYPE "public"."power_level" AS ENUM('normal', 'conserve', 'critical', 'shutdown');--> statement-breakpoint
CREATE TYPE "public"."invoice_line_kind" AS ENUM('compute', 'egress', 'discount', 'credit');--> statement-breakpoint
CREATE TYPE "public"."invoice_status" AS ENUM('draft', 'open', 'paid', 'void', 'uncollectible');--> statement-breakpoint
CREATE TYPE "public"."payment_status" AS ENUM('pending', 'failed', 'succeeded', 'partially_refunded', 'refunded');--> statement-breakpoint
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
CREATE TABLE "api_keys" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"name" text NOT NULL,
	"start" text NOT NULL,
	"key_hash" text NOT NULL,
	"scopes" text[] NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_used_at" timestamp with time zone,
	"revoked_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "email_tokens" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"purpose" "email_token_purpose" NOT NULL,
	"token_hash" text NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"used_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
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
CREATE TABLE "compute_quotas" (
	"user_id" uuid PRIMARY KEY NOT NULL,
	"max_instances" integer,
	"max_cpu_millis" integer,
	"max_memory_mb" integer,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "hosts" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"endpoint" text NOT NULL,
	"status" "host_status" DEFAULT 'offline' NOT NULL,
	"cpu_capacity_millis" integer DEFAULT 0 NOT NULL,
	"memory_capacity_mb" integer DEFAULT 0 NOT NULL,
	"storage_driver" text,
	"disk_limit_supported" boolean,
	"engine_version" text,
	"last_error" text,
	"last_seen_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "images" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"slug" text NOT NULL,
	"name" text NOT NULL,
	"reference" text NOT NULL,
	"description" text NOT NULL,
	"cap_add" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"active" boolean DEFAULT true NOT NULL,
	"sort_order" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "instance_actions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"instance_id" uuid NOT NULL,
	"user_id" uuid NOT NULL,
	"kind" "instance_action_kind" NOT NULL,
	"status" "instance_action_status" DEFAULT 'pending' NOT NULL,
	"reason" text NOT NULL,
	"actor_type" text NOT NULL,
	"actor_id" uuid,
	"error" text,
	"attempts" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "instance_state_history" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"instance_id" uuid NOT NULL,
	"from_state" "instance_state",
	"to_state" "instance_state" NOT NULL,
	"reason" text NOT NULL,
	"actor_type" text NOT NULL,
	"actor_id" uuid,
	"action_id" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"seq" bigint GENERATED ALWAYS AS IDENTITY (sequence name "instance_state_history_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1)
);
--> statement-breakpoint
CREATE TABLE "instances" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"host_id" uuid NOT NULL,
	"name" text NOT NULL,
	"plan_id" uuid NOT NULL,
	"image_id" uuid NOT NULL,
	"image_reference" text NOT NULL,
	"cpu_millis" integer NOT NULL,
	"memory_mb" integer NOT NULL,
	"disk_gb" integer NOT NULL,
	"price_hourly_minor" integer NOT NULL,
	"price_monthly_minor" integer NOT NULL,
	"currency" text NOT NULL,
	"priority" "instance_priority" DEFAULT 'standard' NOT NULL,
	"env" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"state" "instance_state" DEFAULT 'pending' NOT NULL,
	"state_reason" text,
	"state_changed_at" timestamp with time zone DEFAULT now() NOT NULL,
	"container_id" text,
	"ip_address" text,
	"disk_limit_enforced" boolean,
	"idempotency_key" text,
	"request_hash" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"deleted_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "plans" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"slug" text NOT NULL,
	"name" text NOT NULL,
	"cpu_millis" integer NOT NULL,
	"memory_mb" integer NOT NULL,
	"disk_gb" integer NOT NULL,
	"price_hourly_minor" integer NOT NULL,
	"price_monthly_minor" integer NOT NULL,
	"currency" text NOT NULL,
	"active" boolean DEFAULT true NOT NULL,
	"sort_order" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "plans_positive" CHECK ("plans"."cpu_millis" > 0 and "plans"."memory_mb" > 0 and "plans"."disk_gb" > 0 and "plans"."price_hourly_minor" >= 0 and "plans"."price_monthly_minor" >= 0)
);
--> statement-breakpoint
CREATE TABLE "mail_messages" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"to" text NOT NULL,
	"subject" text NOT NULL,
	"text" text NOT NULL,
	"kind" text NOT NULL,
	"sensitive" boolean DEFAULT false NOT NULL,
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
CREATE TABLE "billing_counters" (
	"name" text PRIMARY KEY NOT NULL,
	"value" bigint DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE TABLE "invoice_lines" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"invoice_id" uuid NOT NULL,
	"position" integer NOT NULL,
	"instance_id" uuid,
	"kind" "invoice_line_kind" NOT NULL,
	"description" text NOT NULL,
	"quantity" numeric(20, 6) NOT NULL,
	"unit" text NOT NULL,
	"unit_price_minor" integer NOT NULL,
	"amount_minor" bigint NOT NULL,
	"details" jsonb DEFAULT '{}'::jsonb NOT NULL
);
--> statement-breakpoint
CREATE TABLE "invoices" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"period" text NOT NULL,
	"period_start" timestamp with time zone NOT NULL,
	"period_end" timestamp with time zone NOT NULL,
	"number" text,
	"status" "invoice_status" DEFAULT 'draft' NOT NULL,
	"currency" text NOT NULL,
	"subtotal_minor" bigint NOT NULL,
	"discount_minor" bigint NOT NULL,
	"credit_minor" bigint NOT NULL,
	"tax_rate_bps" integer NOT NULL,
	"tax_minor" bigint NOT NULL,
	"total_minor" bigint NOT NULL,
	"amount_paid_minor" bigint DEFAULT 0 NOT NULL,
	"amount_refunded_minor" bigint DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finalized_at" timestamp with time zone,
	"paid_at" timestamp with time zone,
	"voided_at" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "invoices_amounts" CHECK ("invoices"."total_minor" >= 0 and "invoices"."tax_minor" >= 0 and "invoices"."amount_paid_minor" >= 0 and "invoices"."amount_refunded_minor" >= 0),
	CONSTRAINT "invoices_numbered" CHECK (("invoices"."status" = 'draft') = ("invoices"."number" is null))
);
--> statement-breakpoint
CREATE TABLE "meter_cursors" (
	"instance_id" uuid PRIMARY KEY NOT NULL,
	"version" bigint DEFAULT 0 NOT NULL,
	"metered_until" timestamp with time zone NOT NULL,
	"state" "instance_state" NOT NULL,
	"reason" text NOT NULL,
	"start_seq" bigint,
	"sample_start_seq" bigint,
	"container_id" text,
	"cpu_ns" bigint,
	"rx_bytes" bigint,
	"tx_bytes" bigint,
	"memory_bytes" bigint,
	"sampled_at" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "payment_events" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"payment_id" uuid NOT NULL,
	"from_status" "payment_status",
	"to_status" "payment_status" NOT NULL,
	"provider_event_id" text,
	"note" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "payments" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"invoice_id" uuid NOT NULL,
	"user_id" uuid NOT NULL,
	"provider" text NOT NULL,
	"provider_payment_id" text,
	"status" "payment_status" DEFAULT 'pending' NOT NULL,
	"amount_minor" bigint NOT NULL,
	"amount_refunded_minor" bigint DEFAULT 0 NOT NULL,
	"currency" text NOT NULL,
	"failure_message" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "stripe_events" (
	"id" text PRIMARY KEY NOT NULL,
	"type" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	"outcome" text NOT NULL,
	"payment_id" uuid
);
--> statement-breakpoint
CREATE TABLE "usage_records" (
	"instance_id" uuid NOT NULL,
	"hour" timestamp with time zone NOT NULL,
	"user_id" uuid NOT NULL,
	"running_ms" bigint DEFAULT 0 NOT NULL,
	"paused_ms" bigint DEFAULT 0 NOT NULL,
	"emergency_paused_ms" bigint DEFAULT 0 NOT NULL,
	"cpu_ns" bigint DEFAULT 0 NOT NULL,
	"memory_byte_ms" numeric(30, 0) DEFAULT 0 NOT NULL,
	"rx_bytes" bigint DEFAULT 0 NOT NULL,
	"tx_bytes" bigint DEFAULT 0 NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "usage_records_instance_id_hour_pk" PRIMARY KEY("instance_id","hour")
);
--> statement-breakpoint
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "email_tokens" ADD CONSTRAINT "email_tokens_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "sessions" ADD CONSTRAINT "sessions_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "compute_quotas" ADD CONSTRAINT "compute_quotas_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "instance_actions" ADD CONSTRAINT "instance_actions_instance_id_instances_id_fk" FOREIGN KEY ("instance_id") REFERENCES "public"."instances"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "instance_actions" ADD CONSTRAINT "instance_actions_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "instance_state_history" ADD CONSTRAINT "instance_state_history_instance_id_instances_id_fk" FOREIGN KEY ("instance_id") REFERENCES "public"."instances"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "instances" ADD CONSTRAINT "instances_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "instances" ADD CONSTRAINT "instances_host_id_hosts_id_fk" FOREIGN KEY ("host_id") REFERENCES "public"."hosts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "instances" ADD CONSTRAINT "instances_plan_id_plans_id_fk" FOREIGN KEY ("plan_id") REFERENCES "public"."plans"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "instances" ADD CONSTRAINT "instances_image_id_images_id_fk" FOREIGN KEY ("image_id") REFERENCES "public"."images"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "energy_events" ADD CONSTRAINT "energy_events_level_change_id_energy_level_changes_id_fk" FOREIGN KEY ("level_change_id") REFERENCES "public"."energy_level_changes"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "energy_policies" ADD CONSTRAINT "energy_policies_created_by_users_id_fk" FOREIGN KEY ("created_by") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "invoice_lines" ADD CONSTRAINT "invoice_lines_invoice_id_invoices_id_fk" FOREIGN KEY ("invoice_id") REFERENCES "public"."invoices"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "invoice_lines" ADD CONSTRAINT "invoice_lines_instance_id_instances_id_fk" FOREIGN KEY ("instance_id") REFERENCES "public"."instances"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "invoices" ADD CONSTRAINT "invoices_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "meter_cursors" ADD CONSTRAINT "meter_cursors_instance_id_instances_id_fk" FOREIGN KEY ("instance_id") REFERENCES "public"."instances"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "payment_events" ADD CONSTRAINT "payment_events_payment_id_payments_id_fk" FOREIGN KEY ("payment_id") REFERENCES "public"."payments"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "payments" ADD CONSTRAINT "payments_invoice_id_invoices_id_fk" FOREIGN KEY ("invoice_id") REFERENCES "public"."invoices"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "payments" ADD CONSTRAINT "payments_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "stripe_events" ADD CONSTRAINT "stripe_events_payment_id_payments_id_fk" FOREIGN KEY ("payment_id") REFERENCES "public"."payments"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "usage_records" ADD CONSTRAINT "usage_records_instance_id_instances_id_fk" FOREIGN KEY ("instance_id") REFERENCES "public"."instances"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "usage_records" ADD CONSTRAINT "usage_records_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "audit_log_at_idx" ON "audit_log" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "audit_log_actor_idx" ON "audit_log" USING btree ("actor_id","created_at");--> statement-breakpoint
CREATE INDEX "audit_log_action_idx" ON "audit_log" USING btree ("action","created_at");--> statement-breakpoint
CREATE INDEX "audit_log_target_idx" ON "audit_log" USING btree ("target_id","created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "api_keys_key_hash_key" ON "api_keys" USING btree ("key_hash");--> statement-breakpoint
CREATE INDEX "api_keys_user_idx" ON "api_keys" USING btree ("user_id","created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "email_tokens_token_hash_key" ON "email_tokens" USING btree ("token_hash");--> statement-breakpoint
CREATE INDEX "email_tokens_user_idx" ON "email_tokens" USING btree ("user_id","purpose");--> statement-breakpoint
CREATE INDEX "sessions_user_id_idx" ON "sessions" USING btree ("user_id");--> statement-breakpoint
CREATE UNIQUE INDEX "users_email_key" ON "users" USING btree ("email");--> statement-breakpoint
CREATE INDEX "users_created_idx" ON "users" USING btree ("created_at","id");--> statement-breakpoint
CREATE UNIQUE INDEX "hosts_name_key" ON "hosts" USING btree ("name");--> statement-breakpoint
CREATE UNIQUE INDEX "images_slug_key" ON "images" USING btree ("slug");--> statement-breakpoint
CREATE INDEX "instance_actions_instance_idx" ON "instance_actions" USING btree ("instance_id","created_at");--> statement-breakpoint
CREATE INDEX "instance_actions_open_idx" ON "instance_actions" USING btree ("status","created_at") WHERE "instance_actions"."status" in ('pending', 'running');--> statement-breakpoint
CREATE UNIQUE INDEX "instance_actions_one_open_key" ON "instance_actions" USING btree ("instance_id") WHERE "instance_actions"."status" in ('pending', 'running');--> statement-breakpoint
CREATE INDEX "instance_state_history_instance_idx" ON "instance_state_history" USING btree ("instance_id","seq");--> statement-breakpoint
CREATE INDEX "instances_user_idx" ON "instances" USING btree ("user_id","created_at","id");--> statement-breakpoint
CREATE INDEX "instances_host_state_idx" ON "instances" USING btree ("host_id","state");--> statement-breakpoint
CREATE INDEX "instances_state_idx" ON "instances" USING btree ("state");--> statement-breakpoint
CREATE INDEX "instances_created_idx" ON "instances" USING btree ("created_at","id");--> statement-breakpoint
CREATE UNIQUE INDEX "instances_user_idempotency_key" ON "instances" USING btree ("user_id","idempotency_key");--> statement-breakpoint
CREATE UNIQUE INDEX "instances_user_live_name_key" ON "instances" USING btree ("user_id","name") WHERE "instances"."state" <> 'deleted';--> statement-breakpoint
CREATE UNIQUE INDEX "plans_slug_key" ON "plans" USING btree ("slug");--> statement-breakpoint
CREATE INDEX "mail_messages_status_idx" ON "mail_messages" USING btree ("status","created_at");--> statement-breakpoint
CREATE INDEX "energy_events_at_idx" ON "energy_events" USING btree ("at","id");--> statement-breakpoint
CREATE UNIQUE INDEX "energy_hourly_hour_key" ON "energy_hourly" USING btree ("hour");--> statement-breakpoint
CREATE UNIQUE INDEX "energy_level_changes_seq_key" ON "energy_level_changes" USING btree ("seq");--> statement-breakpoint
CREATE INDEX "energy_policies_created_at_idx" ON "energy_policies" USING btree ("created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "energy_readings_at_key" ON "energy_readings" USING btree ("at");--> statement-breakpoint
CREATE UNIQUE INDEX "invoice_lines_position_key" ON "invoice_lines" USING btree ("invoice_id","position");--> statement-breakpoint
CREATE UNIQUE INDEX "invoices_user_period_key" ON "invoices" USING btree ("user_id","period");--> statement-breakpoint
CREATE UNIQUE INDEX "invoices_number_key" ON "invoices" USING btree ("number");--> statement-breakpoint
CREATE INDEX "invoices_user_created_idx" ON "invoices" USING btree ("user_id","created_at","id");--> statement-breakpoint
CREATE INDEX "invoices_period_status_idx" ON "invoices" USING btree ("period","status");--> statement-breakpoint
CREATE INDEX "payment_events_payment_idx" ON "payment_events" USING btree ("payment_id","created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "payments_provider_payment_key" ON "payments" USING btree ("provider","provider_payment_id");--> statement-breakpoint
CREATE INDEX "payments_user_created_idx" ON "payments" USING btree ("user_id","created_at","id");--> statement-breakpoint
CREATE INDEX "payments_invoice_idx" ON "payments" USING btree ("invoice_id");--> statement-breakpoint
CREATE UNIQUE INDEX "payments_one_pending_key" ON "payments" USING btree ("invoice_id") WHERE "payments"."status" = 'pending';--> statement-breakpoint
CREATE INDEX "usage_records_user_hour_idx" ON "usage_records" USING btree ("user_id","hour");--> statement-breakpoint
CREATE INDEX "usage_records_hour_idx" ON "usage_records" USING btree ("hour");