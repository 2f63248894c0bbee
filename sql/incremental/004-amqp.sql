-- Released in 0.1.0: never edit. Schema amqp, its tables, and the outbox's
-- commit-time trigger (its function's real body is in idempotent/060-amqp.sql).

CREATE SCHEMA amqp;
COMMENT ON SCHEMA amqp IS
'AMQP publishing on commit (pg_amqp''s API). GRANT USAGE on it to the roles that may publish.';

-- pg_amqp's table, column for column; several rows with one broker_id are
-- failover hosts, tried in failover_order. The columns after password are ours.
CREATE TABLE amqp.broker (
    broker_id serial NOT NULL,
    host text NOT NULL,
    port integer NOT NULL DEFAULT 5672,
    vhost text,
    username text,
    password text,
    tls boolean NOT NULL DEFAULT false,
    tls_ca_file text,
    heartbeat integer NOT NULL DEFAULT 30 CHECK (heartbeat >= 0),
    connect_timeout double precision NOT NULL DEFAULT 3 CHECK (connect_timeout > 0),
    confirm_timeout double precision NOT NULL DEFAULT 10 CHECK (confirm_timeout > 0),
    strict boolean NOT NULL DEFAULT false,
    mandatory boolean NOT NULL DEFAULT false,
    failover_order integer NOT NULL DEFAULT 0,
    PRIMARY KEY (broker_id, host, port)
);
SELECT pg_catalog.pg_extension_config_dump('amqp.broker', '');
SELECT pg_catalog.pg_extension_config_dump('amqp.broker_broker_id_seq', '');
COMMENT ON TABLE amqp.broker IS
'AMQP brokers (pg_amqp''s columns plus tls, heartbeat, timeouts, strict, mandatory, failover_order). Rows sharing a broker_id are failover hosts. password is readable by the extension owner only.';

-- Messages published but not yet confirmed by the broker. Rows of a committing
-- transaction normally live only until its commit-time trigger has sent them.
CREATE TABLE amqp.outbox (
    id bigserial PRIMARY KEY,
    broker_id integer NOT NULL,
    exchange text NOT NULL,
    routing_key text NOT NULL,
    message text NOT NULL,
    delivery_mode smallint,
    content_type text,
    reply_to text,
    correlation_id text,
    headers jsonb,
    message_id text NOT NULL,
    expiration text,
    priority smallint,
    mandatory boolean NOT NULL DEFAULT false,
    strict boolean NOT NULL DEFAULT false,
    txid xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    attempts integer NOT NULL DEFAULT 0,
    failed boolean NOT NULL DEFAULT false,
    last_error text,
    last_attempt_at timestamptz
);
SELECT pg_catalog.pg_extension_config_dump('amqp.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('amqp.outbox_id_seq', '');
COMMENT ON TABLE amqp.outbox IS
'Messages not yet confirmed by their broker, in publish order (id). failed = returned, nacked or refused by the broker: the relay skips them until amqp.retry_failed().';

-- Placeholder body, replaced by the idempotent part.
CREATE FUNCTION amqp._outbox_on_commit()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN NULL;
END
$$;

-- One event per transaction instead of one per message: the WHEN is true for the
-- first non-strict row only, and arms pg_message_queue.amqp_armed (SET LOCAL
-- semantics: a rollback to a savepoint that covered that row disarms it again,
-- together with the row and its event). CASE fixes the evaluation order.
CREATE CONSTRAINT TRIGGER outbox_on_commit
AFTER INSERT ON amqp.outbox
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW
WHEN (
    CASE
        WHEN new.strict THEN false
        WHEN pg_catalog.current_setting('pg_message_queue.amqp_armed', true) = 'on' THEN false
        ELSE pg_catalog.set_config('pg_message_queue.amqp_armed', 'on', true) = 'on'
    END
)
EXECUTE FUNCTION amqp._outbox_on_commit();
