-- The NOTIFY -> AMQP bridge: one row per bridged channel. The bridge
-- (python -m pg_message_queue.bridge) LISTENs on every channel here and hands each
-- notification to amqp.publish; pg_mq_notify() records the message in amqp.outbox
-- itself for these channels. routing_key NULL: the payload names it, as
-- pg-amqp-bridge's 'routing_key|message'.
CREATE TABLE pg_mq_bridge_channel (
    channel text PRIMARY KEY,
    broker_id integer NOT NULL,
    exchange text NOT NULL,
    routing_key text,
    delivery_mode smallint NOT NULL DEFAULT 2 CHECK (delivery_mode IN (1, 2)),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by name NOT NULL DEFAULT session_user
);
SELECT pg_catalog.pg_extension_config_dump('pg_mq_bridge_channel', '');
COMMENT ON TABLE pg_mq_bridge_channel IS
'NOTIFY channels bridged to AMQP (pg_mq_bridge_map / pg_mq_bridge_unmap): broker_id, exchange, routing_key (NULL: from the payload, routing_key|message), delivery_mode.';
