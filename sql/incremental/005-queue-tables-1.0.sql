-- 1.0.0: bring queue tables made by 0.1.0 to the 1.0.0 layout and privileges.
-- - Readiness is a row's own values: column waiting goes (with the two partial
--   indexes that used it); ready messages (visible_at <= sent_at) are indexed in
--   delivery order, leased, delayed and given-back ones by due time. Queues with
--   priority_ordering off store priority 0, so the ready index is FIFO for them.
-- - One live message per dedup_key: the dedup index becomes unique (older
--   duplicates, possible in 0.1.0 only through a race, lose their key).
-- - Receivers may update delivery state only, and nobody keeps the table-wide
--   INSERT that 0.1.0 gave receivers on dead-letter queues (senders keep their
--   column grants).
DO $queues$
DECLARE
    q record;
    g record;
    tbl text;
    senders text[];
    schema_name name := (
        SELECT c.relnamespace::regnamespace::name FROM pg_catalog.pg_class AS c
        WHERE c.oid = 'pg_mq_config_catalog'::regclass
    );
BEGIN
    FOR q IN SELECT c.table_name, c.settings FROM pg_mq_config_catalog AS c LOOP
        tbl := pg_catalog.format('%I.%I', schema_name, q.table_name);
        IF pg_catalog.to_regclass(tbl) IS NULL THEN
            CONTINUE;
        END IF;
        EXECUTE pg_catalog.format('ALTER TABLE %s DROP COLUMN IF EXISTS waiting', tbl);
        EXECUTE pg_catalog.format(
            'CREATE INDEX ON %s (priority DESC, msg_id) WHERE delivered_at IS NULL AND visible_at <= sent_at', tbl
        );
        EXECUTE pg_catalog.format(
            'CREATE INDEX ON %s (visible_at) WHERE delivered_at IS NULL AND visible_at > sent_at', tbl
        );
        IF q.settings ->> 'priority_ordering' = 'false' THEN
            EXECUTE pg_catalog.format(
                'UPDATE %s SET priority = 0 WHERE delivered_at IS NULL AND priority <> 0', tbl
            );
        END IF;
        EXECUTE pg_catalog.format(
            'UPDATE %s AS m SET dedup_key = NULL WHERE m.dedup_key IS NOT NULL AND m.delivered_at IS NULL'
            ' AND EXISTS (SELECT FROM %s AS o WHERE o.dedup_key = m.dedup_key AND o.delivered_at IS NULL'
            ' AND o.msg_id > m.msg_id)', tbl, tbl
        );
        FOR g IN
            SELECT i.indexrelid::regclass::text AS name FROM pg_catalog.pg_index AS i
            JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            WHERE i.indrelid = tbl::regclass AND a.attname = 'dedup_key' AND NOT i.indisunique
        LOOP
            EXECUTE pg_catalog.format('DROP INDEX %s', g.name);
        END LOOP;
        IF NOT EXISTS (
            SELECT FROM pg_catalog.pg_index AS i
            JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            WHERE i.indrelid = tbl::regclass AND a.attname = 'dedup_key' AND i.indisunique
        ) THEN
            EXECUTE pg_catalog.format(
                'CREATE UNIQUE INDEX ON %s (dedup_key) WHERE dedup_key IS NOT NULL AND delivered_at IS NULL', tbl
            );
        END IF;
        senders := ARRAY(
            SELECT DISTINCT a.grantee::regrole::text
            FROM pg_catalog.pg_attribute AS t, pg_catalog.aclexplode(t.attacl) AS a
            WHERE t.attrelid = tbl::regclass AND t.attname = 'payload' AND a.privilege_type = 'INSERT'
        );
        FOR g IN
            SELECT DISTINCT a.grantee::regrole::text AS role, a.privilege_type AS priv
            FROM pg_catalog.pg_class AS c, pg_catalog.aclexplode(c.relacl) AS a
            WHERE c.oid = tbl::regclass AND a.grantee <> c.relowner AND a.grantee <> 0
            AND a.privilege_type IN ('INSERT', 'UPDATE')
        LOOP
            -- A table-wide REVOKE also takes the column grants: give senders theirs back.
            EXECUTE pg_catalog.format('REVOKE %s ON %s FROM %s', g.priv, tbl, g.role);
            IF g.priv = 'UPDATE' THEN
                EXECUTE pg_catalog.format(
                    'GRANT UPDATE (delivered_at, visible_at, read_count) ON %s TO %s', tbl, g.role
                );
            END IF;
        END LOOP;
        FOR g IN SELECT pg_catalog.unnest(senders) AS role LOOP
            EXECUTE pg_catalog.format(
                'GRANT INSERT (payload, visible_at, priority, dedup_key, headers) ON %s TO %s', tbl, g.role
            );
        END LOOP;
    END LOOP;
END
$queues$;
