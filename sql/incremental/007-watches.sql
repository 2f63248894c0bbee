-- Change events. One row per watch: a table (by oid), a target (NOTIFY
-- channel, queue, or AMQP broker and exchange) and its options. The triggers on
-- the watched table carry only watch_id; the trigger function reads the rest
-- here, and fires only for the table recorded here.
CREATE TABLE pg_mq_watch (
    watch_id bigserial PRIMARY KEY,
    relid oid NOT NULL,
    kind text NOT NULL CHECK (kind IN ('notify', 'queue', 'amqp')),
    target text NOT NULL,
    broker_id integer,
    routing_key text,
    operations text[] NOT NULL,
    payload text NOT NULL CHECK (payload IN ('keys', 'row')),
    columns text[],
    ignore_columns text[],
    key_columns text[],
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by name NOT NULL DEFAULT session_user,
    UNIQUE (relid, kind, target)
);
SELECT pg_catalog.pg_extension_config_dump('pg_mq_watch', '');
SELECT pg_catalog.pg_extension_config_dump('pg_mq_watch_watch_id_seq', '');
COMMENT ON TABLE pg_mq_watch IS
'One row per watch (pg_mq_watch_notify/_queue/_amqp): the watched table''s oid, the target and the options. Read it through the view pg_mq_watches.';
