-- Instances created before plan history existed get their first row (seq 0), from the plan copy they carry.
INSERT INTO "instance_plans" ("instance_id", "seq", "plan_id", "plan_slug", "cpu_millis", "memory_mb", "disk_gb", "price_hourly_minor", "price_monthly_minor", "currency", "from_at")
SELECT i."id", 0, i."plan_id", p."slug", i."cpu_millis", i."memory_mb", i."disk_gb", i."price_hourly_minor", i."price_monthly_minor", i."currency", i."created_at"
FROM "instances" i JOIN "plans" p ON p."id" = i."plan_id"
WHERE NOT EXISTS (SELECT 1 FROM "instance_plans" ip WHERE ip."instance_id" = i."id");
