-- Every grant of the extension, in one place.

-- Queue administration is for roles an administrator chooses.
REVOKE ALL ON FUNCTION pg_mq_create_queue(text, text) FROM public;
REVOKE ALL ON FUNCTION pg_mq_drop_queue(text, boolean) FROM public;
REVOKE ALL ON FUNCTION pg_mq_purge_queue(text) FROM public;
REVOKE ALL ON FUNCTION pg_mq_rebuild_triggers() FROM public;
REVOKE ALL ON FUNCTION pg_mq_grant(text, name, text) FROM public;
REVOKE ALL ON FUNCTION pg_mq_revoke(text, name, text) FROM public;

-- Sending and receiving run with the caller's rights: anyone may call them, the
-- queue table's privileges (see pg_mq_grant) decide what succeeds.
GRANT SELECT ON pg_mq_config_catalog TO public;

-- Queue settings, statistics and maintenance: administrators only.
REVOKE ALL ON FUNCTION pg_mq_set_queue_config(text, text, text) FROM public;
REVOKE ALL ON FUNCTION pg_mq_stats(text) FROM public;
REVOKE ALL ON pg_mq_queues FROM public;
REVOKE ALL ON FUNCTION pg_mq_maintain(text, integer) FROM public;
REVOKE ALL ON PROCEDURE pg_mq_maintenance_loop(interval, integer, integer) FROM public;
