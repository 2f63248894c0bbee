-- Ticks and maintenance: what pgqd calls, and run_ticker, which does it without a daemon.

-- Internal: the Python half of pgq.ticker(text).
CREATE OR REPLACE FUNCTION pgq._pg_mq_ticker(
    i_queue_name text
)
RETURNS bigint
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.ticker.tick(i_queue_name)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_ticker(text) IS
'Internal: the Python half of pgq.ticker(text).';

-- Tick the queue if ticker_max_count, ticker_max_lag or ticker_idle_period call for it: the new tick_id, else NULL.
CREATE OR REPLACE FUNCTION pgq.ticker(
    i_queue_name text
)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pgq._pg_mq_ticker(i_queue_name);
EXCEPTION WHEN OTHERS THEN
    -- PgQ's errors (and its statements') as PgQ gives them: no Python prefix
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.ticker(text) IS
'Tick the queue if ticker_max_count, ticker_max_lag or ticker_idle_period call for it: the new tick_id, else NULL.';

-- Internal: the Python half of pgq.ticker(text, bigint, timestamptz, bigint).
CREATE OR REPLACE FUNCTION pgq._pg_mq_ticker_external(
    i_queue_name text,
    i_tick_id bigint,
    i_orig_timestamp timestamptz,
    i_event_seq bigint
)
RETURNS bigint
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.ticker.tick_external(i_queue_name, i_tick_id, i_orig_timestamp, i_event_seq)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_ticker_external(text, bigint, timestamptz, bigint) IS
'Internal: the Python half of pgq.ticker(text, bigint, timestamptz, bigint).';

-- Record tick i_tick_id from an external source on a queue with external_ticker; returns it.
CREATE OR REPLACE FUNCTION pgq.ticker(
    i_queue_name text,
    i_tick_id bigint,
    i_orig_timestamp timestamptz,
    i_event_seq bigint
)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pgq._pg_mq_ticker_external(i_queue_name, i_tick_id, i_orig_timestamp, i_event_seq);
EXCEPTION WHEN OTHERS THEN
    -- PgQ's errors (and its statements') as PgQ gives them: no Python prefix
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.ticker(text, bigint, timestamptz, bigint) IS
'Record tick i_tick_id from an external source on a queue with external_ticker; returns it.';

-- Internal: the Python half of pgq.ticker().
CREATE OR REPLACE FUNCTION pgq._pg_mq_ticker_all()
RETURNS bigint
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.ticker.tick_all()
$python$;
COMMENT ON FUNCTION pgq._pg_mq_ticker_all() IS
'Internal: the Python half of pgq.ticker().';

-- Tick every queue with its own ticker where its settings call for it; how many ticked.
CREATE OR REPLACE FUNCTION pgq.ticker()
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pgq._pg_mq_ticker_all();
EXCEPTION WHEN OTHERS THEN
    -- PgQ's errors (and its statements') as PgQ gives them: no Python prefix
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.ticker() IS
'Tick every queue with its own ticker where its settings call for it; how many ticked.';

-- Make the next ticker() call tick the queue; returns the last tick_id.
CREATE OR REPLACE FUNCTION pgq.force_tick(
    i_queue_name text
)
RETURNS bigint
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.ticker.force_tick(i_queue_name)
$python$;
COMMENT ON FUNCTION pgq.force_tick(text) IS
'Make the next ticker() call tick the queue; returns the last tick_id.';

-- Internal: the Python half of pgq.maint_retry_events.
CREATE OR REPLACE FUNCTION pgq._pg_mq_maint_retry_events()
RETURNS integer
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.ticker.maint_retry_events()
$python$;
COMMENT ON FUNCTION pgq._pg_mq_maint_retry_events() IS
'Internal: the Python half of pgq.maint_retry_events.';

-- Move up to 10 due retry events back into their queues; how many (call again while > 0).
CREATE OR REPLACE FUNCTION pgq.maint_retry_events()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pgq._pg_mq_maint_retry_events();
EXCEPTION WHEN OTHERS THEN
    -- PgQ's errors (and its statements') as PgQ gives them: no Python prefix
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.maint_retry_events() IS
'Move up to 10 due retry events back into their queues; how many (call again while > 0).';

-- Internal: the Python half of pgq.maint_rotate_tables_step1.
CREATE OR REPLACE FUNCTION pgq._pg_mq_maint_rotate_tables_step1(
    i_queue_name text
)
RETURNS integer
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.ticker.rotate_step1(i_queue_name)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_maint_rotate_tables_step1(text) IS
'Internal: the Python half of pgq.maint_rotate_tables_step1.';

-- Switch the queue to its next event table (truncated) when rotation_period passed and no consumer needs it; 0.
CREATE OR REPLACE FUNCTION pgq.maint_rotate_tables_step1(
    i_queue_name text
)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pgq._pg_mq_maint_rotate_tables_step1(i_queue_name);
EXCEPTION WHEN OTHERS THEN
    -- PgQ's errors (and its statements') as PgQ gives them: no Python prefix
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.maint_rotate_tables_step1(text) IS
'Switch the queue to its next event table (truncated) when rotation_period passed and no consumer needs it; 0.';

-- Second transaction of a rotation (records its txid); 0.
CREATE OR REPLACE FUNCTION pgq.maint_rotate_tables_step2()
RETURNS integer
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.ticker.rotate_step2()
$python$;
COMMENT ON FUNCTION pgq.maint_rotate_tables_step2() IS
'Second transaction of a rotation (records its txid); 0.';

-- Busy PgQ tables to VACUUM (only when autovacuum is off).
CREATE OR REPLACE FUNCTION pgq.maint_tables_to_vacuum()
RETURNS SETOF text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.ticker.tables_to_vacuum()
$python$;
COMMENT ON FUNCTION pgq.maint_tables_to_vacuum() IS
'Busy PgQ tables to VACUUM (only when autovacuum is off).';

-- The maintenance calls due now (func_name, func_arg), as pgqd runs them.
CREATE OR REPLACE FUNCTION pgq.maint_operations(
    OUT func_name text,
    OUT func_arg text
)
RETURNS SETOF record
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.ticker.maint_operations()
$python$;
COMMENT ON FUNCTION pgq.maint_operations() IS
'The maintenance calls due now (func_name, func_arg), as pgqd runs them.';

-- The ticker, retries and rotation in a loop with commits: no daemon needed.
CREATE OR REPLACE PROCEDURE pgq.run_ticker(
    loop_delay interval DEFAULT '1 second',
    maint_period interval DEFAULT '2 minutes',
    max_runtime interval DEFAULT NULL
)
LANGUAGE plpython3u
AS $python$
#PROLOGUE#
pgmq._db.pin_search_path()
return pgmq.pgq.ticker.run_ticker(loop_delay, maint_period, max_runtime)
$python$;
COMMENT ON PROCEDURE pgq.run_ticker (interval, interval, interval) IS
'Tick every queue, move due retries and rotate event tables every loop_delay (maintenance every maint_period), committing after each step, until max_runtime passes (NULL: until cancelled). CALL it outside a transaction block.';
