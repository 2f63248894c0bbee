-- Released in 0.1.0: never edit. Result types of the lease functions.

-- What pg_mq_read / pg_mq_pop return.
CREATE TYPE pg_mq_leased AS (
    msg_id bigint,
    read_count integer,
    enqueued_at timestamptz,
    visible_at timestamptz,
    priority integer,
    headers jsonb,
    payload text
);

-- What pg_mq_read_bin / pg_mq_pop_bin return.
CREATE TYPE pg_mq_leased_bin AS (
    msg_id bigint,
    read_count integer,
    enqueued_at timestamptz,
    visible_at timestamptz,
    priority integer,
    headers jsonb,
    payload bytea
);
