-- Consumers: subscriptions, batches, events, retries.

-- Internal: the Python half of pgq.register_consumer_at.
CREATE OR REPLACE FUNCTION pgq._pg_mq_register_consumer_at(
    x_queue_name text,
    x_consumer_name text,
    x_tick_pos bigint
)
RETURNS integer
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.consumer.register_consumer_at(x_queue_name, x_consumer_name, x_tick_pos)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_register_consumer_at(text, text, bigint) IS
'Internal: the Python half of pgq.register_consumer_at.';

-- Subscribe a consumer from tick x_tick_pos (or move an existing one there): 1 when new, 0 when it existed.
CREATE OR REPLACE FUNCTION pgq.register_consumer_at(
    x_queue_name text,
    x_consumer_name text,
    x_tick_pos bigint
)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pgq._pg_mq_register_consumer_at(x_queue_name, x_consumer_name, x_tick_pos);
EXCEPTION WHEN OTHERS THEN
    -- PgQ's errors (and its statements') as PgQ gives them: no Python prefix
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.register_consumer_at(text, text, bigint) IS
'Subscribe a consumer from tick x_tick_pos (or move an existing one there): 1 when new, 0 when it existed.';

-- Subscribe consumer x_consumer_id to the queue from its last tick: 1, or 0 when already subscribed.
CREATE OR REPLACE FUNCTION pgq.register_consumer(
    x_queue_name text,
    x_consumer_id text
)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pgq._pg_mq_register_consumer_at(x_queue_name, x_consumer_id, NULL);
EXCEPTION WHEN OTHERS THEN
    -- PgQ's errors (and its statements') as PgQ gives them: no Python prefix
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.register_consumer(text, text) IS
'Subscribe consumer x_consumer_id to the queue from its last tick: 1, or 0 when already subscribed.';

-- Unsubscribe the consumer and drop its pending retries; subscriptions removed (0: there was none).
CREATE OR REPLACE FUNCTION pgq.unregister_consumer(
    x_queue_name text,
    x_consumer_name text
)
RETURNS integer
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.consumer.unregister_consumer(x_queue_name, x_consumer_name)
$python$;
COMMENT ON FUNCTION pgq.unregister_consumer(text, text) IS
'Unsubscribe the consumer and drop its pending retries; subscriptions removed (0: there was none).';

-- Internal: the Python half of pgq.next_batch_custom.
CREATE OR REPLACE FUNCTION pgq._pg_mq_next_batch_custom(
    IN i_queue_name text,
    IN i_consumer_name text,
    IN i_min_lag interval,
    IN i_min_count int4,
    IN i_min_interval interval,
    OUT batch_id int8,
    OUT cur_tick_id int8,
    OUT prev_tick_id int8,
    OUT cur_tick_time timestamptz,
    OUT prev_tick_time timestamptz,
    OUT cur_tick_event_seq int8,
    OUT prev_tick_event_seq int8
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.consumer.next_batch_custom(i_queue_name, i_consumer_name, i_min_lag, i_min_count, i_min_interval)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_next_batch_custom(text, text, interval, int4, interval) IS
'Internal: the Python half of pgq.next_batch_custom.';

-- The consumer's open batch or a new one, ending at the first tick at least i_min_count events or i_min_interval later (and older than i_min_lag); NULLs when none.
CREATE OR REPLACE FUNCTION pgq.next_batch_custom(
    IN i_queue_name text,
    IN i_consumer_name text,
    IN i_min_lag interval,
    IN i_min_count int4,
    IN i_min_interval interval,
    OUT batch_id int8,
    OUT cur_tick_id int8,
    OUT prev_tick_id int8,
    OUT cur_tick_time timestamptz,
    OUT prev_tick_time timestamptz,
    OUT cur_tick_event_seq int8,
    OUT prev_tick_event_seq int8
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT * INTO batch_id, cur_tick_id, prev_tick_id, cur_tick_time, prev_tick_time, cur_tick_event_seq, prev_tick_event_seq FROM pgq._pg_mq_next_batch_custom(i_queue_name, i_consumer_name, i_min_lag, i_min_count, i_min_interval);
    RETURN;
EXCEPTION WHEN OTHERS THEN
    -- PgQ's errors (and its statements') as PgQ gives them: no Python prefix
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.next_batch_custom(text, text, interval, int4, interval) IS
'The consumer''s open batch or a new one, ending at the first tick at least i_min_count events or i_min_interval later (and older than i_min_lag); NULLs when none.';

-- The consumer's open batch, or a new one up to the next tick, with its ticks; NULLs when none.
CREATE OR REPLACE FUNCTION pgq.next_batch_info(
    IN i_queue_name text,
    IN i_consumer_name text,
    OUT batch_id int8,
    OUT cur_tick_id int8,
    OUT prev_tick_id int8,
    OUT cur_tick_time timestamptz,
    OUT prev_tick_time timestamptz,
    OUT cur_tick_event_seq int8,
    OUT prev_tick_event_seq int8
)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
SELECT * FROM pgq.next_batch_custom(i_queue_name, i_consumer_name, NULL, NULL, NULL)
$$;
COMMENT ON FUNCTION pgq.next_batch_info(text, text) IS
'The consumer''s open batch, or a new one up to the next tick: batch_id with its tick ids, times and event sequence values; NULLs when none.';

-- The consumer's open batch id, or a new one up to the next tick; NULL when there is none.
CREATE OR REPLACE FUNCTION pgq.next_batch(IN i_queue_name text, IN i_consumer_name text)
RETURNS int8
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
SELECT f.batch_id FROM pgq.next_batch_custom(i_queue_name, i_consumer_name, NULL, NULL, NULL) AS f
$$;
COMMENT ON FUNCTION pgq.next_batch(text, text) IS
'The consumer''s open batch id, or a new batch up to the next tick; NULL when there is nothing new. Call finish_batch when done.';

-- The first tick after i_prev_tick_id at least i_min_count events or i_min_interval later (next_batch_custom).
CREATE OR REPLACE FUNCTION pgq.find_tick_helper(
    IN i_queue_id int4,
    IN i_prev_tick_id int8,
    IN i_prev_tick_time timestamptz,
    IN i_prev_tick_seq int8,
    IN i_min_count int8,
    IN i_min_interval interval,
    OUT next_tick_id int8,
    OUT next_tick_time timestamptz,
    OUT next_tick_seq int8
)
LANGUAGE plpython3u
STABLE
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.consumer.find_tick_helper(i_queue_id, i_prev_tick_id, i_prev_tick_time, i_prev_tick_seq, i_min_count, i_min_interval)
$python$;
COMMENT ON FUNCTION pgq.find_tick_helper(int4, int8, timestamptz, int8, int8, interval) IS
'The first tick after i_prev_tick_id at least i_min_count events or i_min_interval later (next_batch_custom).';

-- Internal: the Python half of pgq.batch_event_sql.
CREATE OR REPLACE FUNCTION pgq._pg_mq_batch_event_sql(
    x_batch_id bigint
)
RETURNS text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.consumer.batch_event_sql(x_batch_id)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_batch_event_sql(bigint) IS
'Internal: the Python half of pgq.batch_event_sql.';

-- The SELECT of the batch's events (ev_id order).
CREATE OR REPLACE FUNCTION pgq.batch_event_sql(
    x_batch_id bigint
)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pgq._pg_mq_batch_event_sql(x_batch_id);
EXCEPTION WHEN OTHERS THEN
    -- PgQ's errors (and its statements') as PgQ gives them: no Python prefix
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.batch_event_sql(bigint) IS
'The SELECT of the batch''s events (ev_id order).';

-- Internal: the Python half of pgq.batch_event_tables.
CREATE OR REPLACE FUNCTION pgq._pg_mq_batch_event_tables(
    x_batch_id bigint
)
RETURNS SETOF text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.consumer.batch_event_tables(x_batch_id)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_batch_event_tables(bigint) IS
'Internal: the Python half of pgq.batch_event_tables.';

-- The event tables the batch's events can be in.
CREATE OR REPLACE FUNCTION pgq.batch_event_tables(x_batch_id bigint)
RETURNS SETOF text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY SELECT * FROM pgq._pg_mq_batch_event_tables(x_batch_id);
EXCEPTION WHEN OTHERS THEN
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.batch_event_tables(bigint) IS
'The event tables the batch''s events can be in (one, or two across a rotation).';

-- The events of a batch: the rows go to the caller without passing through Python.
CREATE OR REPLACE FUNCTION pgq.get_batch_events(
    IN x_batch_id bigint,
    OUT ev_id bigint,
    OUT ev_time timestamptz,
    OUT ev_txid bigint,
    OUT ev_retry int4,
    OUT ev_type text,
    OUT ev_data text,
    OUT ev_extra1 text,
    OUT ev_extra2 text,
    OUT ev_extra3 text,
    OUT ev_extra4 text
)
RETURNS SETOF record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY EXECUTE pgq.batch_event_sql(x_batch_id);
END
$$;
COMMENT ON FUNCTION pgq.get_batch_events(bigint) IS
'The events of batch x_batch_id in ev_id order: committed after its start tick and by its end tick (plus this consumer''s retried events).';

-- Internal: the DECLARE of pgq.get_batch_cursor.
CREATE OR REPLACE FUNCTION pgq._pg_mq_batch_cursor_sql(
    i_batch_id bigint,
    i_cursor_name text,
    i_extra_where text
)
RETURNS text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.consumer.batch_cursor_sql(i_batch_id, i_cursor_name, i_extra_where)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_batch_cursor_sql(bigint, text, text) IS
'Internal: the DECLARE of pgq.get_batch_cursor.';

-- Open cursor i_cursor_name on the batch's events (filtered by i_extra_where, the
-- caller's SQL, run with the caller's rights) and return its first i_quick_limit rows.
CREATE OR REPLACE FUNCTION pgq.get_batch_cursor(
    IN i_batch_id bigint,
    IN i_cursor_name text,
    IN i_quick_limit int4,
    IN i_extra_where text,
    OUT ev_id bigint,
    OUT ev_time timestamptz,
    OUT ev_txid bigint,
    OUT ev_retry int4,
    OUT ev_type text,
    OUT ev_data text,
    OUT ev_extra1 text,
    OUT ev_extra2 text,
    OUT ev_extra3 text,
    OUT ev_extra4 text
)
RETURNS SETOF record
LANGUAGE plpgsql
AS $$
DECLARE
    declare_sql text;
BEGIN
    IF i_batch_id IS NULL OR i_cursor_name IS NULL OR i_quick_limit IS NULL THEN
        RETURN;
    END IF;
    BEGIN
        declare_sql := pgq._pg_mq_batch_cursor_sql(i_batch_id, i_cursor_name, i_extra_where);
    EXCEPTION WHEN OTHERS THEN
        PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
    END;
    EXECUTE declare_sql;
    IF i_quick_limit <= 0 THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE pg_catalog.format('FETCH %s FROM %I', i_quick_limit, i_cursor_name);
END
$$;
COMMENT ON FUNCTION pgq.get_batch_cursor(bigint, text, int4, text) IS
'Open cursor i_cursor_name on the batch''s events matching i_extra_where (SQL, run with the caller''s rights); returns the first i_quick_limit.';

-- The same without a filter.
CREATE OR REPLACE FUNCTION pgq.get_batch_cursor(
    IN i_batch_id bigint,
    IN i_cursor_name text,
    IN i_quick_limit int4,
    OUT ev_id bigint,
    OUT ev_time timestamptz,
    OUT ev_txid bigint,
    OUT ev_retry int4,
    OUT ev_type text,
    OUT ev_data text,
    OUT ev_extra1 text,
    OUT ev_extra2 text,
    OUT ev_extra3 text,
    OUT ev_extra4 text
)
RETURNS SETOF record
LANGUAGE sql
STRICT
AS $$
SELECT * FROM pgq.get_batch_cursor(i_batch_id, i_cursor_name, i_quick_limit, NULL)
$$;
COMMENT ON FUNCTION pgq.get_batch_cursor(bigint, text, int4) IS
'Open cursor i_cursor_name on the batch''s events; returns the first i_quick_limit.';

-- Internal: the Python half of pgq.event_retry.
CREATE OR REPLACE FUNCTION pgq._pg_mq_event_retry(
    x_batch_id bigint,
    x_event_id bigint,
    x_retry_time timestamptz
)
RETURNS integer
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.consumer.event_retry(x_batch_id, x_event_id, x_retry_time)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_event_retry(bigint, bigint, timestamptz) IS
'Internal: the Python half of pgq.event_retry.';

-- Give the event back to this consumer alone at x_retry_time, with ev_retry + 1: 1, or 0 when already retried.
CREATE OR REPLACE FUNCTION pgq.event_retry(
    x_batch_id bigint,
    x_event_id bigint,
    x_retry_time timestamptz
)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pgq._pg_mq_event_retry(x_batch_id, x_event_id, x_retry_time);
EXCEPTION WHEN OTHERS THEN
    -- PgQ's errors (and its statements') as PgQ gives them: no Python prefix
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.event_retry(bigint, bigint, timestamptz) IS
'Give the event back to this consumer alone at x_retry_time, with ev_retry + 1: 1, or 0 when already retried.';

-- Give the event back to this consumer alone after x_retry_seconds, with ev_retry + 1: 1, or 0 when already retried.
CREATE OR REPLACE FUNCTION pgq.event_retry(
    x_batch_id bigint,
    x_event_id bigint,
    x_retry_seconds integer
)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pgq._pg_mq_event_retry(
        x_batch_id, x_event_id, current_timestamp + (x_retry_seconds::text || ' seconds')::interval
    );
EXCEPTION WHEN OTHERS THEN
    -- PgQ's errors (and its statements') as PgQ gives them: no Python prefix
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.event_retry(bigint, bigint, integer) IS
'Give the event back to this consumer alone after x_retry_seconds, with ev_retry + 1: 1, or 0 when already retried.';

-- Internal: the Python half of pgq.batch_retry.
CREATE OR REPLACE FUNCTION pgq._pg_mq_batch_retry(
    i_batch_id bigint,
    i_retry_seconds integer
)
RETURNS integer
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.consumer.batch_retry(i_batch_id, i_retry_seconds)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_batch_retry(bigint, integer) IS
'Internal: the Python half of pgq.batch_retry.';

-- Give every event of the batch back to this consumer after i_retry_seconds; how many.
CREATE OR REPLACE FUNCTION pgq.batch_retry(
    i_batch_id bigint,
    i_retry_seconds integer
)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pgq._pg_mq_batch_retry(i_batch_id, i_retry_seconds);
EXCEPTION WHEN OTHERS THEN
    -- PgQ's errors (and its statements') as PgQ gives them: no Python prefix
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.batch_retry(bigint, integer) IS
'Give every event of the batch back to this consumer after i_retry_seconds; how many.';

-- Close the batch (the consumer moves to its end tick): 1, or 0 with a WARNING when it is not open.
CREATE OR REPLACE FUNCTION pgq.finish_batch(
    x_batch_id bigint
)
RETURNS integer
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.consumer.finish_batch(x_batch_id)
$python$;
COMMENT ON FUNCTION pgq.finish_batch(bigint) IS
'Close the batch (the consumer moves to its end tick): 1, or 0 with a WARNING when it is not open.';

-- Internal: the Python half of pgq.event_retry_raw.
CREATE OR REPLACE FUNCTION pgq._pg_mq_event_retry_raw(
    x_queue text,
    x_consumer text,
    x_retry_after timestamptz,
    x_ev_id bigint,
    x_ev_time timestamptz,
    x_ev_retry integer,
    x_ev_type text,
    x_ev_data text,
    x_ev_extra1 text,
    x_ev_extra2 text,
    x_ev_extra3 text,
    x_ev_extra4 text
)
RETURNS bigint
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.consumer.event_retry_raw(x_queue, x_consumer, x_retry_after, x_ev_id, x_ev_time, x_ev_retry, x_ev_type, x_ev_data, x_ev_extra1, x_ev_extra2, x_ev_extra3, x_ev_extra4)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_event_retry_raw(text, text, timestamptz, bigint, timestamptz, integer, text, text, text, text, text, text) IS
'Internal: the Python half of pgq.event_retry_raw.';

-- Put an event straight into the consumer's retry queue, due at x_retry_after; its ev_id.
CREATE OR REPLACE FUNCTION pgq.event_retry_raw(
    x_queue text,
    x_consumer text,
    x_retry_after timestamptz,
    x_ev_id bigint,
    x_ev_time timestamptz,
    x_ev_retry integer,
    x_ev_type text,
    x_ev_data text,
    x_ev_extra1 text,
    x_ev_extra2 text,
    x_ev_extra3 text,
    x_ev_extra4 text
)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pgq._pg_mq_event_retry_raw(x_queue, x_consumer, x_retry_after, x_ev_id, x_ev_time, x_ev_retry, x_ev_type, x_ev_data, x_ev_extra1, x_ev_extra2, x_ev_extra3, x_ev_extra4);
EXCEPTION WHEN OTHERS THEN
    -- PgQ's errors (and its statements') as PgQ gives them: no Python prefix
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.event_retry_raw(text, text, timestamptz, bigint, timestamptz, integer, text, text, text, text, text, text) IS
'Put an event straight into the consumer''s retry queue, due at x_retry_after; its ev_id.';
