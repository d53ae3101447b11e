-- The default catalogue's images declare the port they serve HTTP on. Seeding
-- only inserts missing images, so databases created before images had a port
-- learn it here, once; an operator's later change is never overwritten.
UPDATE "images" SET "http_port" = 8080 WHERE "slug" = 'busybox' AND "http_port" IS NULL;--> statement-breakpoint
UPDATE "images" SET "http_port" = 80 WHERE "slug" = 'nginx' AND "http_port" IS NULL;
