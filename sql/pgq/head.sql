-- Run first by every install and upgrade script of pg_message_queue_pgq.
-- Schema pgq is PgQ's: one made by the real pgq extension (or by hand) is not taken
-- over. An empty one is used (CREATE EXTENSION makes it when missing, and DROP EXTENSION
-- leaves it, empty, behind); one holding anything belongs to someone else.
DO $pgq$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pgq') THEN
        RAISE EXCEPTION 'pg_message_queue_pgq: the pgq extension (PgQ) is installed in this database'
            USING ERRCODE = '42710',
            DETAIL = 'pg_message_queue_pgq provides PgQ''s SQL API in a schema pgq of its own; the two cannot share it.',
            HINT = 'Use one or the other: DROP EXTENSION pgq (after draining its queues) or stay with PgQ.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_class WHERE oid = to_regclass('pgq._pg_mq_migration'))
        AND (
            EXISTS (
                SELECT FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON c.relnamespace = n.oid
                WHERE n.nspname = 'pgq'
            )
            OR EXISTS (
                SELECT FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON p.pronamespace = n.oid
                WHERE n.nspname = 'pgq'
            )
            OR EXISTS (
                SELECT FROM pg_catalog.pg_type AS t JOIN pg_catalog.pg_namespace AS n ON t.typnamespace = n.oid
                WHERE n.nspname = 'pgq'
            )
        ) THEN
        RAISE EXCEPTION 'pg_message_queue_pgq: schema "pgq" already exists (PgQ''s, or made by hand)'
            USING ERRCODE = '42P06',
            DETAIL = 'pg_message_queue_pgq creates schema pgq with PgQ''s tables and functions itself.',
            HINT = 'Drop or rename the existing schema pgq first (ALTER SCHEMA pgq RENAME TO pgq_old).';
    END IF;
END
$pgq$;

CREATE TABLE IF NOT EXISTS pgq._pg_mq_migration (
    name text PRIMARY KEY,
    applied_at_version text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    body text NOT NULL
);
COMMENT ON TABLE pgq._pg_mq_migration IS
'Run-once parts of the pg_message_queue_pgq scripts applied to this database (name, version, time, text).';
