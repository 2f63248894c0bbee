-- Upgrade from the original pg_message_queue 0.2.1 (its last release): bring its
-- objects to this extension's first layout (what incremental/001 creates, and
-- queue tables as 0.1.0 made them); the run-once parts from 002 on then run as
-- for any earlier release, and the re-run parts create every function anew.
-- Queues, undelivered and delivered messages, channels (LISTEN) and the grants
-- users gave on queue tables all stay.

-- Its functions go: the re-run parts create this extension's, whose signatures
-- and result types differ (a second pg_mq_create_queue would make calls ambiguous).
DROP FUNCTION pg_mq_create_queue(text, regtype);
DROP FUNCTION pg_mq_drop_queue(name);
DROP FUNCTION pg_mq_send_message(text, anyelement);
DROP FUNCTION pg_mq_get_msg_raw(name, integer, anyelement);
DROP FUNCTION pg_mq_get_msg_by_id_raw(name, integer, anyelement);
DROP FUNCTION pg_mq_get_msg_text(name, bigint);
DROP FUNCTION pg_mq_get_msg_bin(name, integer);
DROP FUNCTION pg_mq_get_msg_id_text(name, bigint);
DROP FUNCTION pg_mq_get_msg_id_bin(name, bigint);
DROP FUNCTION pg_mq_rebuild_triggers();

-- The catalog moves aside; incremental/001's layout replaces it (below).
ALTER TABLE pg_mq_config_catalog RENAME TO pg_mq_config_catalog_0_2_1;
ALTER INDEX pg_mq_config_catalog_pkey RENAME TO pg_mq_config_catalog_0_2_1_pkey;
ALTER INDEX pg_mq_config_catalog_table_name_key RENAME TO pg_mq_config_catalog_0_2_1_table_name_key;

-- incremental/001-queue-catalog itself (recorded as applied after this prelude).
-- #PART incremental/001-queue-catalog.sql#

-- The queue tables' trigger function, as idempotent/010-notify.sql makes it (that part
-- replaces it again later; the triggers below need it now).
-- #PART idempotent/010-notify.sql#
-- Each queue table gets the columns, key, indexes, storage settings and the
-- statement-level NOTIFY trigger of a 0.1.0 queue; ids continue from the old
-- shared sequence. Its timestamps (without time zone) are read in the session's
-- time zone, as the original wrote them.
DO $queues$
DECLARE
    q record;
    tbl text;
    sch text := pg_catalog.quote_ident(
        (SELECT c.relnamespace::regnamespace::name FROM pg_catalog.pg_class AS c
            WHERE c.oid = 'pg_mq_config_catalog'::regclass)
    );
    seq text := sch || '.pg_mq_msg_id_seq';
BEGIN
    PERFORM pg_catalog.setval(seq, greatest(1, (SELECT s.last_value FROM pg_mq_base_msg_id_seq AS s)));
    FOR q IN SELECT * FROM pg_mq_config_catalog_0_2_1 ORDER BY channel LOOP
        INSERT INTO pg_mq_config_catalog (channel, table_name, payload_type)
        VALUES (q.channel, q.table_name, q.payload_type);
        tbl := pg_catalog.format('%s.%I', sch, q.table_name);
        IF pg_catalog.to_regclass(tbl) IS NULL THEN
            RAISE WARNING 'pg_message_queue: queue "%" has no table %', q.channel, tbl;
            CONTINUE;
        END IF;
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS pg_mq_notify ON %s', tbl);
        EXECUTE pg_catalog.format(
            'ALTER TABLE %s'
            ' ALTER msg_id SET DEFAULT pg_catalog.nextval(%L::pg_catalog.regclass),'
            ' ALTER sent_at TYPE timestamptz, ALTER sent_at SET DEFAULT pg_catalog.now(),'
            ' ALTER delivered_at TYPE timestamptz,'
            ' ADD visible_at timestamptz NOT NULL DEFAULT pg_catalog.now(),'
            ' ADD waiting boolean NOT NULL DEFAULT false,'
            ' ADD read_count integer NOT NULL DEFAULT 0,'
            ' ADD priority integer NOT NULL DEFAULT 0,'
            ' ADD dedup_key text,'
            ' ADD headers jsonb,'
            ' ADD PRIMARY KEY (msg_id)',
            tbl, seq
        );
        EXECUTE pg_catalog.format('UPDATE %s SET read_count = 1 WHERE delivered_at IS NOT NULL', tbl);
        EXECUTE pg_catalog.format(
            'CREATE INDEX ON %s (priority DESC, msg_id) WHERE delivered_at IS NULL AND NOT waiting', tbl
        );
        EXECUTE pg_catalog.format('CREATE INDEX ON %s (visible_at) WHERE delivered_at IS NULL AND waiting', tbl);
        EXECUTE pg_catalog.format(
            'CREATE INDEX ON %s (dedup_key) WHERE dedup_key IS NOT NULL AND delivered_at IS NULL', tbl
        );
        EXECUTE pg_catalog.format(
            'ALTER TABLE %s SET (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.01,'
            ' autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_insert_scale_factor = 0.05)',
            tbl
        );
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER pg_mq_notify AFTER INSERT ON %s FOR EACH STATEMENT'
            ' EXECUTE FUNCTION %s.pg_mq_notify_trigger(%L, %L)',
            tbl, sch, q.channel, seq
        );
    END LOOP;
END
$queues$;

DROP FUNCTION pg_mq_trigger_notify();
DROP TABLE pg_mq_config_catalog_0_2_1;
DROP TABLE pg_mq_text;
DROP TABLE pg_mq_bin;
DROP TABLE pg_mq_base;
