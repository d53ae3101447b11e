-- One channel, `sahary_changes`, for every in-process cache (db/invalidation.ts): a process
-- holds one listening connection and one kind of barrier for all of them.
-- The credential triggers (0006) move to it unchanged.
CREATE OR REPLACE FUNCTION sahary_notify_auth_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_LEVEL = 'STATEMENT' THEN
    PERFORM pg_notify('sahary_changes', '*');
  ELSE
    PERFORM pg_notify('sahary_changes', TG_ARGV[0] || ':' || OLD.id::text);
  END IF;
  RETURN NULL;
END
$$;
--> statement-breakpoint
-- Instance lists (server/compute/list-cache.ts): `i:<user id>` for each owner whose instances a
-- statement inserted, updated or deleted (both owners when one changes hands), once per
-- statement; `i:*` (forget every list) past 100 owners, on a truncate, and when a host's
-- status changes (a list shows whether each instance's host answers; hosts are never deleted
-- while instances reference them).
CREATE OR REPLACE FUNCTION sahary_notify_instances_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  owners text[];
BEGIN
  IF TG_OP = 'TRUNCATE' OR TG_TABLE_NAME = 'hosts' THEN
    PERFORM pg_notify('sahary_changes', 'i:*');
    RETURN NULL;
  END IF;
  IF TG_OP = 'INSERT' THEN
    SELECT array_agg(o) INTO owners FROM (SELECT DISTINCT user_id::text AS o FROM new_rows LIMIT 101) d;
  ELSIF TG_OP = 'DELETE' THEN
    SELECT array_agg(o) INTO owners FROM (SELECT DISTINCT user_id::text AS o FROM old_rows LIMIT 101) d;
  ELSE
    SELECT array_agg(o) INTO owners FROM (
      SELECT DISTINCT o FROM (SELECT user_id::text AS o FROM new_rows UNION ALL SELECT user_id::text FROM old_rows) b LIMIT 101
    ) d;
  END IF;
  IF owners IS NULL THEN
    RETURN NULL;
  ELSIF cardinality(owners) > 100 THEN
    PERFORM pg_notify('sahary_changes', 'i:*');
  ELSE
    PERFORM pg_notify('sahary_changes', 'i:' || o) FROM unnest(owners) o;
  END IF;
  RETURN NULL;
END
$$;
--> statement-breakpoint
DROP TRIGGER IF EXISTS instances_list_insert ON instances;
--> statement-breakpoint
CREATE TRIGGER instances_list_insert AFTER INSERT ON instances REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION sahary_notify_instances_change();
--> statement-breakpoint
DROP TRIGGER IF EXISTS instances_list_update ON instances;
--> statement-breakpoint
CREATE TRIGGER instances_list_update AFTER UPDATE ON instances REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION sahary_notify_instances_change();
--> statement-breakpoint
DROP TRIGGER IF EXISTS instances_list_delete ON instances;
--> statement-breakpoint
CREATE TRIGGER instances_list_delete AFTER DELETE ON instances REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION sahary_notify_instances_change();
--> statement-breakpoint
DROP TRIGGER IF EXISTS instances_list_truncate ON instances;
--> statement-breakpoint
CREATE TRIGGER instances_list_truncate AFTER TRUNCATE ON instances
  FOR EACH STATEMENT EXECUTE FUNCTION sahary_notify_instances_change();
--> statement-breakpoint
DROP TRIGGER IF EXISTS hosts_list_change ON hosts;
--> statement-breakpoint
CREATE TRIGGER hosts_list_change AFTER UPDATE ON hosts
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION sahary_notify_instances_change();
