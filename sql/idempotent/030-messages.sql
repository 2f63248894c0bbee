-- Sending and receiving with the original pg_message_queue API. These run with
-- the caller's rights: the queue table's privileges decide who may do what.

-- Python half of pg_mq_send_message: the payload arrives as text with its type.
-- A new message comes back with sent_at, sent_by and visible_at NULL: the
-- wrapper fills in what the row's defaults were (see pg_mq_send_message).
CREATE OR REPLACE FUNCTION _pg_mq_send(
    in_channel text, in_type oid, in_payload text, delay interval,
    priority integer, dedup_key text, headers jsonb
)
RETURNS @extschema@.pg_mq_sent
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.messages.send(in_channel, in_type, in_payload, delay, priority, dedup_key, headers)
$python$;
COMMENT ON FUNCTION _pg_mq_send(text, oid, text, interval, integer, text, jsonb) IS
'Internal: the Python half of pg_mq_send_message (a new message''s times come back NULL).';

-- Send one message; returns its msg_id and times. Options: delay, priority
-- (higher first), dedup_key (returns the live duplicate instead), headers.
-- For a new message the times are the ones its INSERT gave the row: sent_at
-- and visible_at from now() (one value per transaction) and delay, sent_by
-- SESSION_USER. Filling them in here instead of reading them back through
-- PL/Python saves a sixth of a send (README, Benchmark). No SET clause (a
-- function's SET costs as much again): every name and operator is qualified.
-- A send without dedup_key whose checks pass runs the queue's generated send
-- function (see queues.build_send_function; about half the cost of the Python
-- path, README Benchmark) through the generated _pg_mq_send_dispatch (a call
-- PL/pgSQL plans once; see queues.build_dispatch), or else through the statement
-- in the catalog. The extension's owner owns and alone writes all three.
CREATE OR REPLACE FUNCTION pg_mq_send_message(
    in_channel text,
    in_payload anyelement,
    delay interval DEFAULT NULL,
    priority integer DEFAULT 0,
    dedup_key text DEFAULT NULL,
    headers jsonb DEFAULT NULL
)
RETURNS @extschema@.pg_mq_sent
LANGUAGE plpgsql
AS $$
DECLARE
    sent @extschema@.pg_mq_sent;
    call text;
BEGIN
    -- The common send: the queue's generated function (no PL/Python). Anything
    -- it does not take (a check that fails, dedup_key, a queue without one, a
    -- catalog row changed since it was built) goes the Python way below.
    IF dedup_key IS NULL AND in_payload IS NOT NULL AND priority IS NOT NULL
        AND (delay IS NULL OR pg_catalog.date_part('epoch', delay) OPERATOR(pg_catalog.>=) 0)
        AND (headers IS NULL OR pg_catalog.jsonb_typeof(headers) OPERATOR(pg_catalog.=) 'object') THEN
        sent.msg_id := @extschema@._pg_mq_send_dispatch(
            in_channel, in_payload::pg_catalog.text, pg_catalog.pg_typeof(in_payload)::pg_catalog.oid, delay, priority, headers
        );
        IF sent.msg_id IS NULL THEN
            -- Not in the dispatcher (an upgraded or restored installation before
            -- pg_mq_rebuild_triggers), or refused: the catalog's call, then Python.
            SELECT c.send_call INTO call FROM @extschema@.pg_mq_config_catalog AS c
            WHERE c.channel OPERATOR(pg_catalog.=) in_channel;
            IF call IS NOT NULL THEN
                EXECUTE call INTO sent.msg_id
                USING in_payload::pg_catalog.text, pg_catalog.pg_typeof(in_payload)::pg_catalog.oid, delay, priority, headers;
            END IF;
        END IF;
        IF sent.msg_id IS NOT NULL THEN
            -- One expression, not one assignment per field: PL/pgSQL prepares
            -- each expression afresh in every transaction.
            RETURN ROW(
                sent.msg_id, pg_catalog.now(), SESSION_USER, NULL, in_channel,
                pg_catalog.now() OPERATOR(pg_catalog.+) COALESCE(delay, '0'::pg_catalog.interval), false
            )::@extschema@.pg_mq_sent;
        END IF;
    END IF;
    sent := @extschema@._pg_mq_send(
        in_channel, pg_catalog.pg_typeof(in_payload)::pg_catalog.oid, in_payload::pg_catalog.text,
        delay, priority, dedup_key, headers
    );
    IF sent.sent_at IS NULL THEN
        sent.sent_at := pg_catalog.now();
        sent.sent_by := SESSION_USER;
        sent.visible_at := pg_catalog.now() OPERATOR(pg_catalog.+) COALESCE(delay, '0'::pg_catalog.interval);
    END IF;
    RETURN sent;
END
$$;
COMMENT ON FUNCTION pg_mq_send_message(text, anyelement, interval, integer, text, jsonb) IS
'Send in_payload (the queue''s type, or text parsed as it) to queue in_channel; NOTIFY fires on commit. Returns msg_id, sent_at, sent_by, delivered_at (as the original), channel, visible_at, deduplicated.';

-- The same for text and untyped literals ('...', or a client's untyped
-- parameter), which a polymorphic argument alone would refuse.
CREATE OR REPLACE FUNCTION pg_mq_send_message(
    in_channel text,
    in_payload text,
    delay interval DEFAULT NULL,
    priority integer DEFAULT 0,
    dedup_key text DEFAULT NULL,
    headers jsonb DEFAULT NULL
)
RETURNS @extschema@.pg_mq_sent
LANGUAGE plpgsql
AS $$
DECLARE
    sent @extschema@.pg_mq_sent;
    call text;
BEGIN
    -- The common send: the queue's generated function (no PL/Python). Anything
    -- it does not take (a check that fails, dedup_key, a queue without one, a
    -- catalog row changed since it was built) goes the Python way below.
    IF dedup_key IS NULL AND in_payload IS NOT NULL AND priority IS NOT NULL
        AND (delay IS NULL OR pg_catalog.date_part('epoch', delay) OPERATOR(pg_catalog.>=) 0)
        AND (headers IS NULL OR pg_catalog.jsonb_typeof(headers) OPERATOR(pg_catalog.=) 'object') THEN
        sent.msg_id := @extschema@._pg_mq_send_dispatch(
            in_channel, in_payload, 'pg_catalog.text'::pg_catalog.regtype::pg_catalog.oid, delay, priority, headers
        );
        IF sent.msg_id IS NULL THEN
            -- Not in the dispatcher (an upgraded or restored installation before
            -- pg_mq_rebuild_triggers), or refused: the catalog's call, then Python.
            SELECT c.send_call INTO call FROM @extschema@.pg_mq_config_catalog AS c
            WHERE c.channel OPERATOR(pg_catalog.=) in_channel;
            IF call IS NOT NULL THEN
                EXECUTE call INTO sent.msg_id
                USING in_payload, 'pg_catalog.text'::pg_catalog.regtype::pg_catalog.oid, delay, priority, headers;
            END IF;
        END IF;
        IF sent.msg_id IS NOT NULL THEN
            -- One expression, not one assignment per field: PL/pgSQL prepares
            -- each expression afresh in every transaction.
            RETURN ROW(
                sent.msg_id, pg_catalog.now(), SESSION_USER, NULL, in_channel,
                pg_catalog.now() OPERATOR(pg_catalog.+) COALESCE(delay, '0'::pg_catalog.interval), false
            )::@extschema@.pg_mq_sent;
        END IF;
    END IF;
    sent := @extschema@._pg_mq_send(
        in_channel, 'pg_catalog.text'::pg_catalog.regtype::pg_catalog.oid, in_payload,
        delay, priority, dedup_key, headers
    );
    IF sent.sent_at IS NULL THEN
        sent.sent_at := pg_catalog.now();
        sent.sent_by := SESSION_USER;
        sent.visible_at := pg_catalog.now() OPERATOR(pg_catalog.+) COALESCE(delay, '0'::pg_catalog.interval);
    END IF;
    RETURN sent;
END
$$;
COMMENT ON FUNCTION pg_mq_send_message(text, text, interval, integer, text, jsonb) IS
'Send in_payload, given as text or an untyped literal and parsed as the queue''s type, to queue in_channel; NOTIFY fires on commit. Returns msg_id, sent_at, sent_by, delivered_at (as the original), channel, visible_at, deduplicated.';

-- The dispatchers are created once (sql/incremental/030-send-dispatch.sql,
-- 041-claim-dispatch.sql) and regenerated by Python; re-running this part must
-- not reset them.
COMMENT ON FUNCTION _pg_mq_send_dispatch(text, text, oid, interval, integer, jsonb) IS
'Internal, generated: calls the send function of queue in_channel (NULL: not known here); regenerated when queues are created or dropped.';
COMMENT ON FUNCTION _pg_mq_get_dispatch(integer, timestamptz, text) IS
'Internal, generated: pg_mq_get_msg_text''s claim ($1 messages, $2 now, $3 the channel): the queue''s statement, or the Python path.';
COMMENT ON FUNCTION _pg_mq_pop_dispatch(integer, timestamptz, text) IS
'Internal, generated: pg_mq_pop''s claim ($1 messages, $2 now, $3 the channel): the queue''s statement, or the Python path.';
COMMENT ON FUNCTION _pg_mq_read_dispatch(integer, interval, timestamptz, text, interval) IS
'Internal, generated: pg_mq_read''s lease ($1 messages, $2 visibility timeout, $3 now, $4 the channel, $5 wait): the queue''s statement, or the Python path.';
COMMENT ON FUNCTION _pg_mq_ack_dispatch(bigint[], text) IS
'Internal, generated: pg_mq_ack ($1 the ids, $2 the channel): the queue''s statement, or the Python half.';
COMMENT ON FUNCTION _pg_mq_send_batch_dispatch(text, anyarray, oid, interval, integer, jsonb) IS
'Internal, generated: calls the batch send function of queue in_channel (NULL: not known here, or not taken); regenerated when queues are created or dropped.';

-- Forget a dedup_key on messages sent before the queue's dedup_window, so a new
-- message may take it. SECURITY DEFINER because senders may not update messages;
-- executable by everyone because the window has already let the key go.
CREATE OR REPLACE FUNCTION _pg_mq_release_dedup(in_channel text, in_dedup_key text)
RETURNS bigint
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.messages.release_dedup(in_channel, in_dedup_key)
$python$;
COMMENT ON FUNCTION _pg_mq_release_dedup(text, text) IS
'Internal: clear dedup_key on live messages of queue in_channel sent before its dedup_window; returns how many.';

-- Python half of pg_mq_send_batch: checks the call (in_type: the array's type,
-- in_count its cardinality, in_first_null the position of its first NULL) and
-- returns the INSERT that pg_mq_send_batch runs on the array itself.
CREATE OR REPLACE FUNCTION _pg_mq_send_batch_sql(
    in_channel text, in_type oid, in_count integer, in_first_null integer,
    delay interval, priority integer, headers jsonb
)
RETURNS text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.messages.send_batch_sql(in_channel, in_type, in_count, in_first_null, delay, priority, headers)
$python$;
COMMENT ON FUNCTION _pg_mq_send_batch_sql(text, oid, integer, integer, interval, integer, jsonb) IS
'Internal: checks a pg_mq_send_batch call and returns the SQL that runs it.';

-- Send many messages in one statement; returns their msg_ids in input order.
-- The INSERT runs on the typed array as it came: payloads of the queue's type
-- never go through text or Python objects (measured: see the README's Benchmark
-- section). A non-empty one-dimensional array without NULLs whose options pass
-- the cheap checks goes to the queue's generated batch function through the
-- generated _pg_mq_send_batch_dispatch (no PL/Python, planned once per backend;
-- see queues.build_dispatch); anything else, or what that refuses, runs the
-- INSERT _pg_mq_send_batch_sql (Python) checks and builds.
CREATE OR REPLACE FUNCTION pg_mq_send_batch(
    in_channel text,
    in_payloads anyarray,
    delay interval DEFAULT NULL,
    priority integer DEFAULT 0,
    headers jsonb DEFAULT NULL
)
RETURNS SETOF bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ids pg_catalog.int8[];
BEGIN
    -- array_position refuses multidimensional arrays: test the dimensions first.
    IF pg_catalog.array_ndims(in_payloads) OPERATOR(pg_catalog.=) 1 THEN
        IF pg_catalog.array_position(in_payloads, NULL) IS NULL AND priority IS NOT NULL
            AND (delay IS NULL OR pg_catalog.date_part('epoch', delay) OPERATOR(pg_catalog.>=) 0)
            AND (headers IS NULL OR pg_catalog.jsonb_typeof(headers) OPERATOR(pg_catalog.=) 'object') THEN
            ids := @extschema@._pg_mq_send_batch_dispatch(
                in_channel, in_payloads, pg_catalog.pg_typeof(in_payloads)::pg_catalog.oid, delay, priority, headers
            );
            IF ids IS NOT NULL THEN
                RETURN QUERY SELECT pg_catalog.unnest(ids);
                RETURN;
            END IF;
        END IF;
    END IF;
    RETURN QUERY EXECUTE @extschema@._pg_mq_send_batch_sql(
        in_channel, pg_catalog.pg_typeof(in_payloads)::pg_catalog.oid, pg_catalog.cardinality(in_payloads),
        CASE WHEN pg_catalog.array_ndims(in_payloads) = 1 THEN
            pg_catalog.array_position(in_payloads, NULL) - pg_catalog.array_lower(in_payloads, 1) + 1
        END,
        delay, priority, headers
    ) USING in_payloads, delay, priority, headers;
END
$$;
COMMENT ON FUNCTION pg_mq_send_batch(text, anyarray, interval, integer, jsonb) IS
'Send every element of in_payloads to queue in_channel in one statement (one NOTIFY); returns the msg_ids in input order.';

-- Python half of the receive functions: checks the call and returns the SQL
-- that claims the messages ($1 = how many); PL/pgSQL runs it, so the rows go to
-- the client without becoming Python objects. $2 is the time the claim counts
-- as now: one value per statement, so due times are index conditions.
-- in_beyond: the claim's second statement, run (with a new snapshot) for the rest
-- when the first locked fewer than asked for: it walks past what others hold.
CREATE OR REPLACE FUNCTION _pg_mq_get_sql(
    in_channel text, in_num_msgs integer, in_as_text boolean, in_beyond boolean
)
RETURNS text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.messages.get_sql(in_channel, in_num_msgs, in_as_text, in_beyond)
$python$;
COMMENT ON FUNCTION _pg_mq_get_sql(text, integer, boolean, boolean) IS
'Internal: checks a pg_mq_get_msg_* call and returns the SQL that runs it (in_beyond: the second statement, for the rest).';

-- Claim the in_num_msgs oldest ready messages, payload as text.
-- jit = off (here and in every claim): a claim touches a few hundred rows, but
-- right after a burst the statistics still count a million ready messages and
-- JIT compiled every claim (~140 ms; README, Benchmark).
-- in_num_msgs is bigint and pg_mq_get_msg_bin's is integer, as in the original.
CREATE OR REPLACE FUNCTION pg_mq_get_msg_text(in_channel name, in_num_msgs bigint)
RETURNS SETOF @extschema@.pg_mq_msg_text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    -- No call can claim more than 2^31-1 messages; NULL stays NULL (refused).
    n integer := CASE
        WHEN in_num_msgs > 2147483647 THEN 2147483647
        WHEN in_num_msgs < -2147483648 THEN -2147483648
        ELSE in_num_msgs
    END;
BEGIN
    -- The generated claim dispatcher (queues.build_dispatch): the queue's claiming
    -- statement, prepared and planned once per backend (a generic plan that walks
    -- the indexes in delivery order); or the Python path. 1.3x the drain rate of
    -- the Python path alone, and twice the rate of one-message claims planned for
    -- each call (README Benchmark).
    RETURN QUERY SELECT * FROM @extschema@._pg_mq_get_dispatch(n, clock_timestamp(), in_channel);
END
$$;
COMMENT ON FUNCTION pg_mq_get_msg_text(name, bigint) IS
'Return up to in_num_msgs undelivered messages of queue in_channel (oldest first, payload as text) and mark them delivered in this transaction; SKIP LOCKED, so consumers never wait or share. A bytea payload comes as its text form (\\x...).';

-- Claim the in_num_msgs oldest ready messages, payload as bytea. Sequential and
-- bitmap scans off, as in the claim dispatchers: a short claim's second statement
-- walks its candidates unbounded, and only an index walk keeps that lazy (planned
-- with them on, it sorted every ready message first).
CREATE OR REPLACE FUNCTION pg_mq_get_msg_bin(in_channel name, in_num_msgs integer)
RETURNS SETOF @extschema@.pg_mq_msg_bin
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
SET jit = off
AS $$
DECLARE
    claim_time timestamptz := clock_timestamp();
    got bigint;
BEGIN
    RETURN QUERY EXECUTE @extschema@._pg_mq_get_sql(in_channel, in_num_msgs, false, false)
    USING in_num_msgs, claim_time;
    -- Short: others hold the first candidates; the rest from past them, at the same
    -- time (so what the first statement took is not due again).
    GET DIAGNOSTICS got = ROW_COUNT;
    IF got < in_num_msgs THEN
        RETURN QUERY EXECUTE @extschema@._pg_mq_get_sql(in_channel, in_num_msgs - got::integer, false, true)
        USING in_num_msgs - got::integer, claim_time;
    END IF;
END
$$;
COMMENT ON FUNCTION pg_mq_get_msg_bin(name, integer) IS
'Return up to in_num_msgs undelivered messages of queue in_channel (oldest first, payload as bytea: UTF-8 of its text form unless the queue holds bytea) and mark them delivered in this transaction.';

-- One message by id, payload as text; marks it delivered.
CREATE OR REPLACE FUNCTION pg_mq_get_msg_id_text(in_channel name, in_msg_id bigint)
RETURNS SETOF @extschema@.pg_mq_msg_text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.messages.get_message_by_id(in_channel, in_msg_id, True)
$python$;
COMMENT ON FUNCTION pg_mq_get_msg_id_text(name, bigint) IS
'Return message in_msg_id of queue in_channel (payload as text), delivered or not, and mark it delivered now (delivered_at), as the original does. No row if there is no such message.';

-- One message by id, payload as bytea; marks it delivered.
CREATE OR REPLACE FUNCTION pg_mq_get_msg_id_bin(in_channel name, in_msg_id bigint)
RETURNS SETOF @extschema@.pg_mq_msg_bin
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.messages.get_message_by_id(in_channel, in_msg_id, False)
$python$;
COMMENT ON FUNCTION pg_mq_get_msg_id_bin(name, bigint) IS
'Return message in_msg_id of queue in_channel (payload as bytea), delivered or not, and mark it delivered now (delivered_at), as the original does. No row if there is no such message.';
