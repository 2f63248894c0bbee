-- PgQ 3's tables, with its names and columns: pgqd, londiste and PgQ's clients read
-- some of them directly. Event tables (pgq.event_<id>_<n>) are made by create_queue.
CREATE TABLE pgq.consumer (
    co_id serial,
    co_name text NOT NULL,
    CONSTRAINT consumer_pkey PRIMARY KEY (co_id),
    CONSTRAINT consumer_name_uq UNIQUE (co_name)
);

CREATE TABLE pgq.queue (
    queue_id serial,
    queue_name text NOT NULL,
    queue_ntables integer NOT NULL DEFAULT 3,
    queue_cur_table integer NOT NULL DEFAULT 0,
    queue_rotation_period interval NOT NULL DEFAULT '2 hours',
    queue_switch_step1 bigint NOT NULL DEFAULT txid_current(),
    queue_switch_step2 bigint DEFAULT txid_current(),
    queue_switch_time timestamptz NOT NULL DEFAULT now(),
    queue_external_ticker boolean NOT NULL DEFAULT false,
    queue_disable_insert boolean NOT NULL DEFAULT false,
    queue_ticker_paused boolean NOT NULL DEFAULT false,
    queue_ticker_max_count integer NOT NULL DEFAULT 500,
    queue_ticker_max_lag interval NOT NULL DEFAULT '3 seconds',
    queue_ticker_idle_period interval NOT NULL DEFAULT '1 minute',
    queue_per_tx_limit integer,
    queue_data_pfx text NOT NULL,
    queue_event_seq text NOT NULL,
    queue_tick_seq text NOT NULL,
    queue_extra_maint text[],
    CONSTRAINT queue_pkey PRIMARY KEY (queue_id),
    CONSTRAINT queue_name_uq UNIQUE (queue_name)
);

CREATE TABLE pgq.tick (
    tick_queue int4 NOT NULL,
    tick_id bigint NOT NULL,
    tick_time timestamptz NOT NULL DEFAULT now(),
    tick_snapshot txid_snapshot NOT NULL DEFAULT txid_current_snapshot(),
    tick_event_seq bigint NOT NULL,
    CONSTRAINT tick_pkey PRIMARY KEY (tick_queue, tick_id),
    CONSTRAINT tick_queue_fkey FOREIGN KEY (tick_queue) REFERENCES pgq.queue (queue_id)
);

CREATE SEQUENCE pgq.batch_id_seq;

CREATE TABLE pgq.subscription (
    sub_id serial NOT NULL,
    sub_queue int4 NOT NULL,
    sub_consumer int4 NOT NULL,
    sub_last_tick bigint,
    sub_active timestamptz NOT NULL DEFAULT now(),
    sub_batch bigint,
    sub_next_tick bigint,
    CONSTRAINT subscription_pkey PRIMARY KEY (sub_queue, sub_consumer),
    CONSTRAINT subscription_batch_idx UNIQUE (sub_batch),
    CONSTRAINT sub_queue_fkey FOREIGN KEY (sub_queue) REFERENCES pgq.queue (queue_id),
    CONSTRAINT sub_consumer_fkey FOREIGN KEY (sub_consumer) REFERENCES pgq.consumer (co_id)
);

CREATE TABLE pgq.event_template (
    ev_id bigint NOT NULL,
    ev_time timestamptz NOT NULL,
    ev_txid bigint NOT NULL DEFAULT txid_current(),
    ev_owner int4,
    ev_retry int4,
    ev_type text,
    ev_data text,
    ev_extra1 text,
    ev_extra2 text,
    ev_extra3 text,
    ev_extra4 text
);

CREATE TABLE pgq.retry_queue (
    ev_retry_after timestamptz NOT NULL,
    ev_queue int4 NOT NULL,
    LIKE pgq.event_template,
    CONSTRAINT rq_pkey PRIMARY KEY (ev_owner, ev_id),
    CONSTRAINT rq_queue_id_fkey FOREIGN KEY (ev_queue) REFERENCES pgq.queue (queue_id)
);
ALTER TABLE pgq.retry_queue ALTER COLUMN ev_owner SET NOT NULL;
ALTER TABLE pgq.retry_queue ALTER COLUMN ev_txid DROP NOT NULL;
CREATE INDEX rq_retry_idx ON pgq.retry_queue (ev_retry_after);

-- pg_dump keeps their rows (event tables are ordinary tables, dumped anyway).
SELECT pg_catalog.pg_extension_config_dump('pgq.queue', '');
SELECT pg_catalog.pg_extension_config_dump('pgq.consumer', '');
SELECT pg_catalog.pg_extension_config_dump('pgq.tick', '');
SELECT pg_catalog.pg_extension_config_dump('pgq.subscription', '');
SELECT pg_catalog.pg_extension_config_dump('pgq.event_template', '');
SELECT pg_catalog.pg_extension_config_dump('pgq.retry_queue', '');
SELECT pg_catalog.pg_extension_config_dump('pgq.batch_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pgq.queue_queue_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pgq.consumer_co_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pgq.subscription_sub_id_seq', '');
