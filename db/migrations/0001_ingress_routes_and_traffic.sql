CREATE TABLE "instance_traffic" (
	"instance_id" uuid NOT NULL,
	"hour" timestamp with time zone NOT NULL,
	"requests" bigint DEFAULT 0 NOT NULL,
	"bytes_sent" bigint DEFAULT 0 NOT NULL,
	"status_2xx" bigint DEFAULT 0 NOT NULL,
	"status_3xx" bigint DEFAULT 0 NOT NULL,
	"status_4xx" bigint DEFAULT 0 NOT NULL,
	"status_5xx" bigint DEFAULT 0 NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "instance_traffic_instance_id_hour_pk" PRIMARY KEY("instance_id","hour")
);
--> statement-breakpoint
ALTER TABLE "images" ADD COLUMN "http_port" integer;--> statement-breakpoint
ALTER TABLE "instances" ADD COLUMN "http_port" integer;--> statement-breakpoint
ALTER TABLE "instances" ADD COLUMN "host_label" text GENERATED ALWAYS AS (name || '-' || left(id::text, 8)) STORED NOT NULL;--> statement-breakpoint
ALTER TABLE "instances" ADD COLUMN "upstream" text;--> statement-breakpoint
ALTER TABLE "instance_traffic" ADD CONSTRAINT "instance_traffic_instance_id_instances_id_fk" FOREIGN KEY ("instance_id") REFERENCES "public"."instances"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "instances_live_host_label_key" ON "instances" USING btree ("host_label") WHERE "instances"."state" <> 'deleted';--> statement-breakpoint
ALTER TABLE "images" ADD CONSTRAINT "images_http_port_range" CHECK ("images"."http_port" between 1 and 65535);--> statement-breakpoint
ALTER TABLE "instances" ADD CONSTRAINT "instances_http_port_range" CHECK ("instances"."http_port" between 1 and 65535);