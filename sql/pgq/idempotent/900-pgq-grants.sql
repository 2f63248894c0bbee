-- PgQ's grants (its structure/grants.ini), in one place: info to everyone, consuming
-- to pgq_reader, producing to pgq_writer, the ticker and administration to pgq_admin
-- (a member of both). Each Python internal goes with its public function.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgq FROM public;
REVOKE ALL ON ALL PROCEDURES IN SCHEMA pgq FROM public;
GRANT USAGE ON SCHEMA pgq TO public;

-- 1.public
GRANT EXECUTE ON FUNCTION
pgq.seq_getval(text),
pgq._pg_mq_reraise(text, text),
pgq.get_queue_info(),
pgq.get_queue_info(text),
pgq.get_consumer_info(),
pgq.get_consumer_info(text),
pgq.get_consumer_info(text, text),
pgq.quote_fqname(text),
pgq.version(),
pgq._pg_mq_trigger(text, oid, text, text, text, text[], text, text, text, text, text, text)
TO public;

-- 2.consumer
GRANT EXECUTE ON FUNCTION
pgq.batch_event_sql(bigint),
pgq._pg_mq_batch_event_sql(bigint),
pgq.batch_event_tables(bigint),
pgq._pg_mq_batch_event_tables(bigint),
pgq.find_tick_helper(int4, int8, timestamptz, int8, int8, interval),
pgq.register_consumer(text, text),
pgq.register_consumer_at(text, text, bigint),
pgq._pg_mq_register_consumer_at(text, text, bigint),
pgq.unregister_consumer(text, text),
pgq.next_batch_info(text, text),
pgq.next_batch(text, text),
pgq.next_batch_custom(text, text, interval, int4, interval),
pgq._pg_mq_next_batch_custom(text, text, interval, int4, interval),
pgq.get_batch_events(bigint),
pgq.get_batch_info(bigint),
pgq.get_batch_cursor(bigint, text, int4, text),
pgq.get_batch_cursor(bigint, text, int4),
pgq._pg_mq_batch_cursor_sql(bigint, text, text),
pgq.event_retry(bigint, bigint, timestamptz),
pgq.event_retry(bigint, bigint, integer),
pgq._pg_mq_event_retry(bigint, bigint, timestamptz),
pgq.batch_retry(bigint, integer),
pgq._pg_mq_batch_retry(bigint, integer),
pgq.force_tick(text),
pgq.finish_batch(bigint)
TO pgq_reader;

-- 3.producer
GRANT EXECUTE ON FUNCTION
pgq.insert_event(text, text, text),
pgq.insert_event(text, text, text, text, text, text, text),
pgq._pg_mq_insert_event(text, text, text, text, text, text, text),
pgq._pg_mq_insert_problem(text),
pgq.current_event_table(text),
pgq._pg_mq_current_event_table(text),
pgq.logutriga(),
pgq.sqltriga(),
pgq.jsontriga()
TO pgq_writer;

-- 4.admin
GRANT EXECUTE ON FUNCTION
pgq.ticker(text, bigint, timestamptz, bigint),
pgq._pg_mq_ticker_external(text, bigint, timestamptz, bigint),
pgq.ticker(text),
pgq._pg_mq_ticker(text),
pgq.ticker(),
pgq._pg_mq_ticker_all(),
pgq.maint_retry_events(),
pgq._pg_mq_maint_retry_events(),
pgq.maint_rotate_tables_step1(text),
pgq._pg_mq_maint_rotate_tables_step1(text),
pgq.maint_rotate_tables_step2(),
pgq.maint_tables_to_vacuum(),
pgq.maint_operations(),
pgq.upgrade_schema(),
pgq.grant_perms(text),
pgq._pg_mq_grant_perms(text),
pgq._grant_perms_from(text, text, text, text),
pgq.tune_storage(text),
pgq.seq_setval(text, int8),
pgq.create_queue(text),
pgq._pg_mq_create_queue(text),
pgq._pg_mq_rebuild_insert(),
pgq.drop_queue(text, bool),
pgq.drop_queue(text),
pgq._pg_mq_drop_queue(text, bool),
pgq.set_queue_config(text, text, text),
pgq._pg_mq_set_queue_config(text, text, text),
pgq.insert_event_raw(text, bigint, timestamptz, integer, integer, text, text, text, text, text, text),
pgq._pg_mq_insert_event_raw(text, bigint, timestamptz, integer, integer, text, text, text, text, text, text),
pgq.event_retry_raw(text, text, timestamptz, bigint, timestamptz, integer, text, text, text, text, text, text),
pgq._pg_mq_event_retry_raw(text, text, timestamptz, bigint, timestamptz, integer, text, text, text, text, text, text)
TO pgq_admin;
GRANT EXECUTE ON PROCEDURE pgq.run_ticker(interval, interval, interval) TO pgq_admin;

-- Tables: PgQ's grants. The migration record is ours: superusers only.
REVOKE ALL ON TABLE pgq._pg_mq_migration FROM public;
REVOKE ALL ON TABLE pgq.event_template FROM pgq_reader, pgq_writer, pgq_admin, public;
REVOKE ALL ON TABLE pgq.consumer, pgq.queue, pgq.tick, pgq.subscription FROM pgq_reader, pgq_writer, pgq_admin, public;
REVOKE ALL ON TABLE pgq.retry_queue FROM pgq_reader, pgq_writer, pgq_admin, public;
GRANT SELECT ON TABLE pgq.event_template TO pgq_reader;
GRANT SELECT, INSERT, TRUNCATE ON TABLE pgq.event_template TO pgq_admin;
GRANT SELECT ON TABLE pgq.consumer, pgq.queue, pgq.tick, pgq.subscription TO pgq_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE pgq.consumer, pgq.queue, pgq.tick, pgq.subscription TO pgq_admin;
GRANT SELECT ON TABLE pgq.consumer, pgq.queue, pgq.tick, pgq.subscription TO public;
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE pgq.retry_queue TO pgq_admin;
