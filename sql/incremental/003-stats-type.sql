-- Released in 0.1.0: never edit. Result type of pg_mq_stats.

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
