-- Every change to what a credential resolves to (a session, its user, an API key)
-- is announced on the `sahary_auth` channel when its transaction commits, whoever
-- made it: the API, a worker, a script or psql. API processes drop their cached
-- copy on the message (server/auth/cache.ts). Payload: `s:<session id>`,
-- `u:<user id>`, `k:<api key id>`, or `*` (forget everything). The processes
-- also use the channel for their own `b:`/`a:` (barrier, acknowledgement) messages.
-- Idempotent, so it applies after other branches' migrations in any order.
CREATE OR REPLACE FUNCTION sahary_notify_auth_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_LEVEL = 'STATEMENT' THEN
    PERFORM pg_notify('sahary_auth', '*');
  ELSE
    PERFORM pg_notify('sahary_auth', TG_ARGV[0] || ':' || OLD.id::text);
  END IF;
  RETURN NULL;
END
$$;
--> statement-breakpoint
DROP TRIGGER IF EXISTS sessions_auth_change ON sessions;
--> statement-breakpoint
CREATE TRIGGER sessions_auth_change AFTER UPDATE OR DELETE ON sessions
  FOR EACH ROW EXECUTE FUNCTION sahary_notify_auth_change('s');
--> statement-breakpoint
DROP TRIGGER IF EXISTS users_auth_change ON users;
--> statement-breakpoint
CREATE TRIGGER users_auth_change AFTER UPDATE OR DELETE ON users
  FOR EACH ROW EXECUTE FUNCTION sahary_notify_auth_change('u');
--> statement-breakpoint
DROP TRIGGER IF EXISTS api_keys_auth_change ON api_keys;
--> statement-breakpoint
CREATE TRIGGER api_keys_auth_change AFTER UPDATE OR DELETE ON api_keys
  FOR EACH ROW EXECUTE FUNCTION sahary_notify_auth_change('k');
--> statement-breakpoint
DROP TRIGGER IF EXISTS sessions_auth_truncate ON sessions;
--> statement-breakpoint
CREATE TRIGGER sessions_auth_truncate AFTER TRUNCATE ON sessions
  FOR EACH STATEMENT EXECUTE FUNCTION sahary_notify_auth_change();
--> statement-breakpoint
DROP TRIGGER IF EXISTS users_auth_truncate ON users;
--> statement-breakpoint
CREATE TRIGGER users_auth_truncate AFTER TRUNCATE ON users
  FOR EACH STATEMENT EXECUTE FUNCTION sahary_notify_auth_change();
--> statement-breakpoint
DROP TRIGGER IF EXISTS api_keys_auth_truncate ON api_keys;
--> statement-breakpoint
CREATE TRIGGER api_keys_auth_truncate AFTER TRUNCATE ON api_keys
  FOR EACH STATEMENT EXECUTE FUNCTION sahary_notify_auth_change();
