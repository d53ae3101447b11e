-- usage_monthly is kept equal to the sum of usage_records per (instance, UTC month, plan), and
-- usage_period_totals to the compute charge and bytes sent of usage_monthly per (month, currency),
-- by statement-level triggers on usage_records with transition tables: one pass per statement,
-- however many hourly rows it wrote (metering writes a tick's rows in one statement). Keys are
-- upserted in order, so concurrent statements lock shared rows in the same order. Each monthly row
-- carries its plan segment's prices (an instance_plans row never changes); usage without a plan
-- row is left out, as invoicing's join leaves it out.

-- A monthly row's compute charge: billable time × hourly price, rounded half up, capped at the
-- monthly price (server/billing/pricing.ts, chargeInstance). Exact in bigint: round(n × p / d) =
-- (n div d) × p + round((n mod d) × p / d), and (n mod d) × p × 2 fits for any int4 price.
CREATE FUNCTION usage_compute_minor(billable_ms bigint, price_hourly_minor integer, price_monthly_minor integer) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT least((billable_ms / 3600000) * price_hourly_minor + ((billable_ms % 3600000) * price_hourly_minor * 2 + 3600000) / 7200000, price_monthly_minor::bigint)
$$;
--> statement-breakpoint
-- Adds per-key deltas (a temporary table `usage_deltas` the caller filled) to usage_monthly, and the
-- change in each touched row's charge and bytes to usage_period_totals.
CREATE FUNCTION usage_apply_deltas() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  WITH up AS (
    INSERT INTO usage_monthly AS m (instance_id, period_start, plan_seq, user_id, running_ms, paused_ms, emergency_paused_ms, tx_bytes, price_hourly_minor, price_monthly_minor, currency)
    SELECT d.instance_id, d.period_start, d.plan_seq, d.user_id, d.running_ms, d.paused_ms, d.emergency_paused_ms, d.tx_bytes, p.price_hourly_minor, p.price_monthly_minor, p.currency
    FROM usage_deltas d
    JOIN instance_plans p ON p.instance_id = d.instance_id AND p.seq = d.plan_seq
    ORDER BY 1, 2, 3
    ON CONFLICT (instance_id, period_start, plan_seq) DO UPDATE SET
      running_ms = m.running_ms + excluded.running_ms,
      paused_ms = m.paused_ms + excluded.paused_ms,
      emergency_paused_ms = m.emergency_paused_ms + excluded.emergency_paused_ms,
      tx_bytes = m.tx_bytes + excluded.tx_bytes
    RETURNING m.*
  ), charged AS (
    -- The row before this statement is the row after it less the delta.
    SELECT up.period_start, up.currency,
           usage_compute_minor(up.running_ms + up.paused_ms + up.emergency_paused_ms, up.price_hourly_minor, up.price_monthly_minor)
           - usage_compute_minor((up.running_ms - d.running_ms) + (up.paused_ms - d.paused_ms) + (up.emergency_paused_ms - d.emergency_paused_ms), up.price_hourly_minor, up.price_monthly_minor) AS compute_minor,
           d.tx_bytes
    FROM up JOIN usage_deltas d ON d.instance_id = up.instance_id AND d.period_start = up.period_start AND d.plan_seq = up.plan_seq
  )
  INSERT INTO usage_period_totals AS t (period_start, currency, compute_minor, tx_bytes)
  SELECT period_start, currency, sum(compute_minor), sum(tx_bytes) FROM charged GROUP BY 1, 2 ORDER BY 1, 2
  ON CONFLICT (period_start, currency) DO UPDATE SET
    compute_minor = t.compute_minor + excluded.compute_minor,
    tx_bytes = t.tx_bytes + excluded.tx_bytes;
  -- A month whose hourly rows are all gone leaves no row behind (its charge is 0 by then).
  DELETE FROM usage_monthly m
  USING usage_deltas d
  WHERE m.instance_id = d.instance_id AND m.period_start = d.period_start AND m.plan_seq = d.plan_seq
    AND m.running_ms = 0 AND m.paused_ms = 0 AND m.emergency_paused_ms = 0 AND m.tx_bytes = 0
    AND NOT EXISTS (
      SELECT 1 FROM usage_records u
      WHERE u.instance_id = d.instance_id AND u.plan_seq = d.plan_seq AND u.hour >= d.period_start AND u.hour < d.period_start + interval '1 month'
    );
  DROP TABLE usage_deltas;
END $$;
--> statement-breakpoint
CREATE FUNCTION usage_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  CREATE TEMPORARY TABLE usage_deltas ON COMMIT DROP AS
  SELECT instance_id, date_trunc('month', hour, 'UTC') AS period_start, plan_seq, user_id,
         sum(running_ms)::bigint AS running_ms, sum(paused_ms)::bigint AS paused_ms, sum(emergency_paused_ms)::bigint AS emergency_paused_ms, sum(tx_bytes)::bigint AS tx_bytes
  FROM new_rows
  GROUP BY 1, 2, 3, 4;
  PERFORM usage_apply_deltas();
  RETURN NULL;
END $$;
--> statement-breakpoint
-- An update adds its new rows and takes its old rows away (metering's upsert adds to an hour's row).
CREATE FUNCTION usage_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  CREATE TEMPORARY TABLE usage_deltas ON COMMIT DROP AS
  SELECT instance_id, date_trunc('month', hour, 'UTC') AS period_start, plan_seq, user_id,
         sum(running_ms)::bigint AS running_ms, sum(paused_ms)::bigint AS paused_ms, sum(emergency_paused_ms)::bigint AS emergency_paused_ms, sum(tx_bytes)::bigint AS tx_bytes
  FROM (
    SELECT instance_id, hour, plan_seq, user_id, running_ms, paused_ms, emergency_paused_ms, tx_bytes FROM new_rows
    UNION ALL
    SELECT instance_id, hour, plan_seq, user_id, -running_ms, -paused_ms, -emergency_paused_ms, -tx_bytes FROM old_rows
  ) changes
  GROUP BY 1, 2, 3, 4
  HAVING sum(running_ms) <> 0 OR sum(paused_ms) <> 0 OR sum(emergency_paused_ms) <> 0 OR sum(tx_bytes) <> 0;
  PERFORM usage_apply_deltas();
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE FUNCTION usage_on_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  CREATE TEMPORARY TABLE usage_deltas ON COMMIT DROP AS
  SELECT instance_id, date_trunc('month', hour, 'UTC') AS period_start, plan_seq, user_id,
         -sum(running_ms)::bigint AS running_ms, -sum(paused_ms)::bigint AS paused_ms, -sum(emergency_paused_ms)::bigint AS emergency_paused_ms, -sum(tx_bytes)::bigint AS tx_bytes
  FROM old_rows
  GROUP BY 1, 2, 3, 4;
  PERFORM usage_apply_deltas();
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER usage_aggregates_insert AFTER INSERT ON usage_records REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_on_insert();
--> statement-breakpoint
CREATE TRIGGER usage_aggregates_update AFTER UPDATE ON usage_records REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_on_update();
--> statement-breakpoint
CREATE TRIGGER usage_aggregates_delete AFTER DELETE ON usage_records REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_on_delete();
--> statement-breakpoint
-- Existing usage, summed once; the lock keeps metering from writing between the sums and the triggers taking over.
LOCK TABLE usage_records IN SHARE ROW EXCLUSIVE MODE;
--> statement-breakpoint
INSERT INTO usage_monthly (instance_id, period_start, plan_seq, user_id, running_ms, paused_ms, emergency_paused_ms, tx_bytes, price_hourly_minor, price_monthly_minor, currency)
SELECT n.*, p.price_hourly_minor, p.price_monthly_minor, p.currency
FROM (
  SELECT instance_id, date_trunc('month', hour, 'UTC') AS period_start, plan_seq, user_id, sum(running_ms), sum(paused_ms), sum(emergency_paused_ms), sum(tx_bytes)
  FROM usage_records
  GROUP BY 1, 2, 3, 4
) n
JOIN instance_plans p ON p.instance_id = n.instance_id AND p.seq = n.plan_seq;
--> statement-breakpoint
INSERT INTO usage_period_totals (period_start, currency, compute_minor, tx_bytes)
SELECT period_start, currency, sum(usage_compute_minor(running_ms + paused_ms + emergency_paused_ms, price_hourly_minor, price_monthly_minor)), sum(tx_bytes)
FROM usage_monthly
GROUP BY 1, 2;
