-- Every grant of the extension, in one place.

-- Queue administration is for roles an administrator chooses.
REVOKE ALL ON FUNCTION pg_mq_create_queue(text, text) FROM public;
REVOKE ALL ON FUNCTION pg_mq_create_queue(text, regtype) FROM public;
REVOKE ALL ON FUNCTION pg_mq_drop_queue(text, boolean) FROM public;
REVOKE ALL ON FUNCTION pg_mq_purge_queue(text) FROM public;
REVOKE ALL ON FUNCTION pg_mq_rebuild_triggers() FROM public;
REVOKE ALL ON FUNCTION pg_mq_grant(text, name, text) FROM public;
REVOKE ALL ON FUNCTION pg_mq_revoke(text, name, text) FROM public;
REVOKE ALL ON FUNCTION _pg_mq_catalog_changed() FROM public;

-- Sending and receiving run with the caller's rights: anyone may call them, the
-- queue table's privileges (see pg_mq_grant) decide what succeeds.
GRANT SELECT ON pg_mq_config_catalog TO public;

-- Queue settings, statistics and maintenance: administrators only.
REVOKE ALL ON FUNCTION pg_mq_set_queue_config(text, text, text) FROM public;
REVOKE ALL ON FUNCTION pg_mq_stats(text) FROM public;
REVOKE ALL ON pg_mq_queues FROM public;
REVOKE ALL ON FUNCTION pg_mq_maintain(text, integer) FROM public;
REVOKE ALL ON PROCEDURE pg_mq_maintenance_loop(interval, integer, integer) FROM public;

-- AMQP. USAGE on schema amqp (granted by an administrator, never to public) is
-- what lets a role publish: publish, autonomous_publish and disconnect are
-- executable by public behind it. They are SECURITY DEFINER, so publishers need
-- no rights on amqp.outbox and can read amqp.broker's columns except password.
-- exchange_declare, flush, relay and retry_failed are for administrators; a relay
-- role also needs EXECUTE on amqp._flush_batch. amqp.status hides last_error
-- (it names other publishers' exchanges and routing keys) from all but administrators.
REVOKE ALL ON amqp.broker FROM public;
GRANT SELECT (
    broker_id, host, port, vhost, username, tls, tls_ca_file, heartbeat,
    connect_timeout, confirm_timeout, strict, mandatory, failover_order
) ON amqp.broker TO public;
REVOKE ALL ON amqp.outbox FROM public;
REVOKE ALL ON amqp._outbox_rest FROM public;
REVOKE ALL ON amqp.status FROM public;
GRANT SELECT (
    broker_id, hosts, outbox_depth, failed, oldest_kept_at, oldest_kept_age, last_attempt_at
) ON amqp.status TO public;
REVOKE ALL ON amqp._commit_probe FROM public;
REVOKE ALL ON SEQUENCE amqp._broker_flags FROM public;
REVOKE ALL ON FUNCTION amqp._check_headers(jsonb) FROM public;
REVOKE ALL ON FUNCTION amqp._flush_batch(integer, integer) FROM public;
REVOKE ALL ON FUNCTION amqp._send_transaction(bigint) FROM public;
REVOKE ALL ON FUNCTION amqp._outbox_on_commit() FROM public;
REVOKE ALL ON FUNCTION amqp.exchange_declare(integer, varchar, varchar, boolean, boolean, boolean) FROM public;
REVOKE ALL ON FUNCTION amqp.flush(integer, integer, boolean) FROM public;
REVOKE ALL ON FUNCTION amqp.retry_failed(integer) FROM public;
REVOKE ALL ON PROCEDURE amqp.relay(integer, integer, double precision, interval, boolean) FROM public;

-- Change events. Watching is for a table's owner, checked inside against the
-- session's login role (a SECURITY DEFINER function cannot see its caller's role).
-- That check alone would let a role's own SECURITY DEFINER function, called by a
-- table owner, watch the owner's table into a channel the role reads: so EXECUTE on
-- the watch functions is granted deliberately, to the roles that may watch (the
-- caller's EXECUTE is checked against the role really calling). The trigger function
-- is not executable by PUBLIC, so nobody can attach it to a table by hand (CREATE
-- TRIGGER needs EXECUTE). What is watched is visible to everyone, like the queue catalog.
REVOKE ALL ON FUNCTION pg_mq_watch_notify(regclass, text, text[], text, text[], text[], text[]) FROM public;
REVOKE ALL ON FUNCTION pg_mq_watch_queue(regclass, text, text[], text, text[], text[], text[]) FROM public;
REVOKE ALL ON FUNCTION pg_mq_watch_amqp(
    regclass, integer, text, text, text[], text, text[], text[], text[]
) FROM public;
REVOKE ALL ON FUNCTION pg_mq_watch_pgq(regclass, text, text[], text, text[], text[], text[]) FROM public;
REVOKE ALL ON FUNCTION pg_mq_unwatch(regclass, text) FROM public;
REVOKE ALL ON FUNCTION pg_mq_watch_snapshot(regclass, text, integer) FROM public;
REVOKE ALL ON FUNCTION _pg_mq_watch_fire() FROM public;
REVOKE ALL ON FUNCTION _pg_mq_watch_sync_partitions() FROM public;
REVOKE ALL ON pg_mq_watch FROM public;
REVOKE ALL ON SEQUENCE pg_mq_watch_watch_id_seq FROM public;
GRANT SELECT ON pg_mq_watches TO public;

-- The NOTIFY -> AMQP bridge. Mapping a channel decides where anyone's NOTIFY on it
-- goes: administrators only. The map names exchanges and routing keys, so only the
-- roles an administrator chooses (the bridge's) may read it. pg_mq_notify is for
-- everyone, as pg_notify is: it sends only what the map allows.
REVOKE ALL ON FUNCTION pg_mq_bridge_map(text, integer, text, text, integer) FROM public;
REVOKE ALL ON FUNCTION pg_mq_bridge_unmap(text) FROM public;
GRANT EXECUTE ON FUNCTION pg_mq_notify(text, text) TO public;
REVOKE ALL ON FUNCTION _pg_mq_notify(text, text) FROM public;
REVOKE ALL ON pg_mq_bridge_channel FROM public;
