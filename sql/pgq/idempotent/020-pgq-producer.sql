-- Producing events. insert_event is the hot path: a PL/pgSQL body with no SET clause
-- (every name qualified) around one Python call, which runs one cached INSERT.

-- Internal: insert one event into the queue's current table; its ev_id, or NULL when the queue refuses it.
-- No SET clause and not SECURITY DEFINER: it runs inside pgq.insert_event, which is both
-- (one search_path switch per event, not two); its SQL names and operators are qualified.
CREATE OR REPLACE FUNCTION pgq._pg_mq_insert_event(
    queue_name text,
    ev_type text,
    ev_data text,
    ev_extra1 text,
    ev_extra2 text,
    ev_extra3 text,
    ev_extra4 text
)
RETURNS bigint
LANGUAGE plpython3u
AS $python$
#PROLOGUE#
return pgmq.pgq.producer.insert_event(queue_name, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_insert_event(text, text, text, text, text, text, text) IS
'Internal: insert one event into the queue''s current table; its ev_id, or NULL when the queue refuses it.';

-- Internal: why insert_event refused an event, in PgQ's words.
CREATE OR REPLACE FUNCTION pgq._pg_mq_insert_problem(
    queue_name text
)
RETURNS text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.producer.insert_problem(queue_name)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_insert_problem(text) IS
'Internal: why insert_event refused an event, in PgQ''s words.';

-- Insert an event (type, data, extra1..4) into the queue; returns its ev_id.
CREATE OR REPLACE FUNCTION pgq.insert_event(
    queue_name text,
    ev_type text,
    ev_data text,
    ev_extra1 text,
    ev_extra2 text,
    ev_extra3 text,
    ev_extra4 text
)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
AS $$
DECLARE
    id bigint;
BEGIN
    -- No SET clause: every name is qualified (see producer.rebuild_insert).
    -- This body serves until _pg_mq_rebuild_insert (below) writes the one with a static
    -- INSERT per event table (producer.rebuild_insert): Python's rules alone.
    id := pgq._pg_mq_insert_event($1, $2, $3, $4, $5, $6, $7);
    IF id IS NULL THEN
        RAISE EXCEPTION USING MESSAGE = pgq._pg_mq_insert_problem($1), ERRCODE = 'XX000';
    END IF;
    RETURN id;
END
$$;
COMMENT ON FUNCTION pgq.insert_event(text, text, text, text, text, text, text) IS
'Insert an event with ev_type, ev_data and ev_extra1..4 into queue queue_name; returns its ev_id. Visible to consumers after commit and the next tick.';

-- Write pgq.insert_event again for the queues there are (below, at install and upgrade,
-- and whenever a queue is created or dropped).
CREATE OR REPLACE FUNCTION pgq._pg_mq_rebuild_insert()
RETURNS integer
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.producer.rebuild_insert()
$python$;
COMMENT ON FUNCTION pgq._pg_mq_rebuild_insert() IS
'Internal: regenerate pgq.insert_event''s static INSERTs for every queue; returns how many queues it serves.';

SELECT pgq._pg_mq_rebuild_insert();

-- Insert an event (type, data) into the queue; returns its ev_id. One expression,
-- no SET clause: PostgreSQL inlines it into the caller's query (PgQ's own 3-argument
-- form also calls the 7-argument one).
CREATE OR REPLACE FUNCTION pgq.insert_event(queue_name text, ev_type text, ev_data text)
RETURNS bigint
LANGUAGE sql
AS $$
SELECT pgq.insert_event(queue_name, ev_type, ev_data, NULL, NULL, NULL, NULL)
$$;
COMMENT ON FUNCTION pgq.insert_event(text, text, text) IS
'Insert an event with ev_type and ev_data into queue queue_name; returns its ev_id.';

-- Internal: the Python half of pgq.insert_event_raw; NULL when the queue refuses the event.
CREATE OR REPLACE FUNCTION pgq._pg_mq_insert_event_raw(
    queue_name text,
    ev_id bigint,
    ev_time timestamptz,
    ev_owner integer,
    ev_retry integer,
    ev_type text,
    ev_data text,
    ev_extra1 text,
    ev_extra2 text,
    ev_extra3 text,
    ev_extra4 text
)
RETURNS bigint
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.producer.insert_event_raw(queue_name, ev_id, ev_time, ev_owner, ev_retry, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_insert_event_raw(text, bigint, timestamptz, integer, integer, text, text, text, text, text, text) IS
'Internal: the Python half of pgq.insert_event_raw; NULL when the queue refuses the event.';

-- Low-level insert with explicit ev_id (NULL: next), time, owner and retry count.
CREATE OR REPLACE FUNCTION pgq.insert_event_raw(
    queue_name text,
    ev_id bigint,
    ev_time timestamptz,
    ev_owner integer,
    ev_retry integer,
    ev_type text,
    ev_data text,
    ev_extra1 text,
    ev_extra2 text,
    ev_extra3 text,
    ev_extra4 text
)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    id bigint;
BEGIN
    id := pgq._pg_mq_insert_event_raw(
        queue_name, ev_id, ev_time, ev_owner, ev_retry, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4
    );
    IF id IS NULL THEN
        RAISE EXCEPTION USING MESSAGE = pgq._pg_mq_insert_problem(queue_name), ERRCODE = 'XX000';
    END IF;
    RETURN id;
END
$$;
COMMENT ON FUNCTION pgq.insert_event_raw(text, bigint, timestamptz, integer, integer, text, text, text, text, text, text) IS
'Insert an event with explicit ev_id (NULL: the next one), ev_time, ev_owner and ev_retry; returns its ev_id.';

-- Internal: the Python half of pgq.current_event_table.
CREATE OR REPLACE FUNCTION pgq._pg_mq_current_event_table(
    x_queue_name text
)
RETURNS text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.producer.current_event_table(x_queue_name)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_current_event_table(text) IS
'Internal: the Python half of pgq.current_event_table.';

-- The event table inserts into queue x_queue_name go to now (it changes at rotation).
CREATE OR REPLACE FUNCTION pgq.current_event_table(
    x_queue_name text
)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pgq._pg_mq_current_event_table(x_queue_name);
EXCEPTION WHEN OTHERS THEN
    -- PgQ's errors (and its statements') as PgQ gives them: no Python prefix
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.current_event_table(text) IS
'The event table inserts into queue x_queue_name go to now (it changes at rotation).';
