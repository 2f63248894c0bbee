-- Released in 0.1.0: never edit. The shared id sequence, the catalog, and the
-- result types of the original API.

-- All queues draw msg_id from one sequence, as in the original.
CREATE SEQUENCE pg_mq_msg_id_seq;
SELECT pg_catalog.pg_extension_config_dump('pg_mq_msg_id_seq', '');

-- One row per queue. pg_dump keeps its rows (extension configuration table).
CREATE TABLE pg_mq_config_catalog (
    channel text PRIMARY KEY,
    table_name name NOT NULL UNIQUE,
    payload_type regtype NOT NULL,
    settings jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by name NOT NULL DEFAULT session_user
);
SELECT pg_catalog.pg_extension_config_dump('pg_mq_config_catalog', '');
COMMENT ON TABLE pg_mq_config_catalog IS
'One row per queue: its channel, table (pg_mq_queue_<channel>), payload type and settings.';

-- What pg_mq_send_message returns.
CREATE TYPE pg_mq_sent AS (
    msg_id bigint,
    channel text,
    sent_at timestamptz,
    sent_by name,
    visible_at timestamptz,
    deduplicated boolean
);

-- What pg_mq_get_msg_text / pg_mq_get_msg_id_text return.
CREATE TYPE pg_mq_msg_text AS (
    msg_id bigint,
    sent_at timestamptz,
    sent_by name,
    was_delivered boolean,
    payload text
);

-- What pg_mq_get_msg_bin / pg_mq_get_msg_id_bin return.
CREATE TYPE pg_mq_msg_bin AS (
    msg_id bigint,
    sent_at timestamptz,
    sent_by name,
    was_delivered boolean,
    payload bytea
);
