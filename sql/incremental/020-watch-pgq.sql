-- Change events into a PgQ queue (pg_mq_watch_pgq): a watch of kind 'pgq', whose
-- target is the PgQ queue's name. Runs on a fresh install after 007 as on an
-- upgrade, so both end with this constraint.
ALTER TABLE pg_mq_watch DROP CONSTRAINT pg_mq_watch_kind_check;
ALTER TABLE pg_mq_watch ADD CONSTRAINT pg_mq_watch_kind_check
CHECK (kind IN ('notify', 'queue', 'amqp', 'pgq'));
