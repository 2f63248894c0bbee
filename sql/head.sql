-- Run first by every install and upgrade script: the record of run-once parts.
-- Each part of sql/incremental/ runs once per database, in name order, and is
-- recorded here; parts of sql/idempotent/ run on every install and upgrade.
CREATE TABLE IF NOT EXISTS pg_mq_migration (
    name text PRIMARY KEY,
    applied_at_version text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    body text NOT NULL
);
COMMENT ON TABLE pg_mq_migration IS
'Run-once parts of the extension scripts applied to this database (name, version, time, text).';
