-- Statistics and maintenance, for administrators (EXECUTE granted deliberately).

-- What pg_mq_stats returns, one row per queue.
CREATE TYPE pg_mq_queue_stats AS (
    channel text,
    payload_type text,
    depth bigint,
    ready bigint,
    in_flight bigint,
    delayed bigint,
    retained bigint,
    dead_lettered bigint,
    oldest_ready_age interval,
    sent_total bigint,
    removed_total bigint,
    settings jsonb
);

-- Counts of one queue, as an administrator needs them at a glance.
CREATE FUNCTION pg_mq_stats(in_channel text)
RETURNS @extschema@.pg_mq_queue_stats
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.upkeep.stats(in_channel)
$python$;
COMMENT ON FUNCTION pg_mq_stats(text) IS
'Statistics of queue in_channel: depth (undelivered), ready, in_flight (leased), delayed, retained (delivered, kept), dead_lettered (in its DLQ), oldest_ready_age, sent_total/removed_total (rows inserted/deleted since the last statistics reset), settings.';

-- Every queue's statistics.
CREATE VIEW pg_mq_queues AS
SELECT s.*
FROM @extschema@.pg_mq_config_catalog AS c,
    LATERAL @extschema@.pg_mq_stats(c.channel) AS s
-- A queue whose table was dropped by hand is left out instead of failing the view.
WHERE EXISTS (
    SELECT FROM pg_catalog.pg_class AS k
    WHERE
        k.relname = c.table_name
        AND k.relnamespace = (
            SELECT cc.relnamespace FROM pg_catalog.pg_class AS cc
            WHERE cc.oid = c.tableoid
        )
);
COMMENT ON VIEW pg_mq_queues IS 'pg_mq_stats of every queue.';

-- Delete delivered rows past retention, in batches; returns how many.
CREATE FUNCTION pg_mq_maintain(in_channel text DEFAULT NULL, batch_size integer DEFAULT 1000)
RETURNS bigint
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.upkeep.maintain(in_channel, batch_size)
$python$;
COMMENT ON FUNCTION pg_mq_maintain(text, integer) IS
'Delete acknowledged/delivered messages older than their queue''s retention (one queue, or all when in_channel is NULL), batch_size rows per statement. Returns how many were deleted.';

-- The same, forever (or runs times), committing after every batch. No SET
-- clause: PostgreSQL forbids COMMIT in a procedure that has one; every name the
-- code uses is schema-qualified instead.
CREATE PROCEDURE pg_mq_maintenance_loop(
    pause interval DEFAULT '10 seconds', runs integer DEFAULT NULL, batch_size integer DEFAULT 1000
)
LANGUAGE plpython3u
AS $python$
#PROLOGUE#
pgmq.upkeep.maintenance_loop(pause, runs, batch_size)
$python$;
COMMENT ON PROCEDURE pg_mq_maintenance_loop (interval, integer, integer) IS
'CALL outside a transaction block (psql, cron, systemd): run pg_mq_maintain on every queue every pause, committing after each batch, runs times or forever.';
