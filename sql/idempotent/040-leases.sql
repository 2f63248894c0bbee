-- Lease-based consumption (visibility timeouts, ack, nack, extend, pop, move)
-- and per-queue settings. Consumers run with their own rights.

-- Python half of pg_mq_read: checks the call, dead-letters what is due, and
-- returns the SQL that leases ($1 = n, $2 = visibility timeout, $3 = now).
CREATE OR REPLACE FUNCTION _pg_mq_read_sql(
    in_channel text, n integer, visibility_timeout interval, wait interval, in_as_text boolean, in_beyond boolean
)
RETURNS text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.leases.read_sql(in_channel, n, visibility_timeout, wait, in_as_text, in_beyond)
$python$;
COMMENT ON FUNCTION _pg_mq_read_sql(text, integer, interval, interval, boolean, boolean) IS
'Internal: checks a pg_mq_read call and returns the SQL that runs it (in_beyond: the second statement, for the rest; see _pg_mq_get_sql).';

-- Lease up to n ready messages for visibility_timeout; wait long-polls
-- (polling every 10 ms, backing off to 100 ms, and never for less than three
-- times what the last poll took: a poll behind many messages that others hold
-- tries each of them, and a long poll must not keep a core busy with that).
CREATE OR REPLACE FUNCTION pg_mq_read(
    in_channel text,
    n integer DEFAULT 1,
    visibility_timeout interval DEFAULT '30 seconds',
    wait interval DEFAULT NULL
)
RETURNS SETOF @extschema@.pg_mq_leased
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + wait;
    pause float8 := 0.01;
    polled timestamptz;
BEGIN
    LOOP
        polled := clock_timestamp();
        -- The generated dispatcher: the queue's statement, or the Python path
        -- (see pg_mq_get_msg_text).
        RETURN QUERY SELECT * FROM @extschema@._pg_mq_read_dispatch(
            n, visibility_timeout, polled, in_channel, wait
        );
        EXIT WHEN found OR wait IS NULL OR clock_timestamp() >= deadline;
        PERFORM pg_sleep(least(
            greatest(pause, 3 * extract(EPOCH FROM clock_timestamp() - polled)::float8),
            extract(EPOCH FROM deadline - clock_timestamp())::float8
        ));
        pause := least(pause * 2, 0.1);
    END LOOP;
END
$$;
COMMENT ON FUNCTION pg_mq_read(text, integer, interval, interval) IS
'Lease up to n ready messages of queue in_channel (priority, then oldest first), hidden from others for visibility_timeout; read_count counts deliveries. wait => interval long-polls until a message is ready. Payload as text.';

-- pg_mq_read with the payload as bytea (any queue, bytea queues included; scans as
-- in pg_mq_get_msg_bin).
CREATE OR REPLACE FUNCTION pg_mq_read_bin(
    in_channel text,
    n integer DEFAULT 1,
    visibility_timeout interval DEFAULT '30 seconds',
    wait interval DEFAULT NULL
)
RETURNS SETOF @extschema@.pg_mq_leased_bin
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
SET jit = off
AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + wait;
    pause float8 := 0.01;
    claim_time timestamptz;
    got bigint;
    more bigint;
BEGIN
    LOOP
        claim_time := clock_timestamp();
        RETURN QUERY EXECUTE @extschema@._pg_mq_read_sql(in_channel, n, visibility_timeout, wait, false, false)
        USING n, visibility_timeout, claim_time;
        -- Short: others hold the first candidates; the rest from past them, at the
        -- same time (what the first statement leased must not be due again).
        GET DIAGNOSTICS got = ROW_COUNT;
        IF got < n THEN
            RETURN QUERY EXECUTE @extschema@._pg_mq_read_sql(
                in_channel, n - got::integer, visibility_timeout, wait, false, true
            ) USING n - got::integer, visibility_timeout, claim_time;
            GET DIAGNOSTICS more = ROW_COUNT;
            got := got + more;
        END IF;
        EXIT WHEN got > 0 OR wait IS NULL OR clock_timestamp() >= deadline;
        -- As pg_mq_read: never less than three times what the poll took.
        PERFORM pg_sleep(least(
            greatest(pause, 3 * extract(EPOCH FROM clock_timestamp() - claim_time)::float8),
            extract(EPOCH FROM deadline - clock_timestamp())::float8
        ));
        pause := least(pause * 2, 0.1);
    END LOOP;
END
$$;
COMMENT ON FUNCTION pg_mq_read_bin(text, integer, interval, interval) IS
'As pg_mq_read, payload as bytea (UTF-8 of the text form unless the queue holds bytea).';

-- Move messages that used up max_deliveries (and whose lease expired) to the
-- queue's dead-letter queue. SECURITY DEFINER so that consumers need no rights
-- on the dead-letter queue; executable by everyone because it only does what
-- the next read of the queue would do anyway, with values taken from the queue.
CREATE OR REPLACE FUNCTION _pg_mq_dead_letter(in_channel text, msg_ids bigint[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.leases.dead_letter_due(in_channel, msg_ids)
$python$;
COMMENT ON FUNCTION _pg_mq_dead_letter(text, bigint[]) IS
'Internal: move messages of queue in_channel (all, or msg_ids) that were read max_deliveries times and are not leased to its dead-letter queue; returns how many.';

-- Acknowledge messages: delete them, or archive them when the queue retains.
-- Python half of pg_mq_ack: checks the call and acknowledges.
CREATE OR REPLACE FUNCTION _pg_mq_ack(in_channel text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.leases.ack(in_channel, msg_ids)
$python$;
COMMENT ON FUNCTION _pg_mq_ack(text, bigint[]) IS
'Internal: the Python half of pg_mq_ack.';

-- Acknowledge: a one-dimensional array without NULLs goes to the queue's
-- statement in the generated _pg_mq_ack_dispatch (no PL/Python; see
-- pg_mq_get_msg_text), anything else to the Python half.
CREATE OR REPLACE FUNCTION pg_mq_ack(in_channel text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY SELECT * FROM @extschema@._pg_mq_ack_dispatch(msg_ids, in_channel);
END
$$;
COMMENT ON FUNCTION pg_mq_ack(text, bigint[]) IS
'Acknowledge msg_ids of queue in_channel: deleted, or kept as delivered while the queue''s retention lasts. Returns the ids acknowledged; unknown or already acknowledged ids are skipped.';

-- Give leased messages back, visible again after delay.
CREATE OR REPLACE FUNCTION pg_mq_nack(in_channel text, msg_ids bigint[], delay interval DEFAULT '0')
RETURNS SETOF bigint
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.leases.nack(in_channel, msg_ids, delay)
$python$;
COMMENT ON FUNCTION pg_mq_nack(text, bigint[], interval) IS
'Return msg_ids of queue in_channel to the queue, visible again after delay. Messages already read max_deliveries times go to the dead-letter queue instead. Returns the ids given back.';

-- Keep a lease longer.
CREATE OR REPLACE FUNCTION pg_mq_extend(in_channel text, msg_ids bigint[], visibility_timeout interval)
RETURNS SETOF bigint
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.leases.extend(in_channel, msg_ids, visibility_timeout)
$python$;
COMMENT ON FUNCTION pg_mq_extend(text, bigint[], interval) IS
'Extend the lease of in-flight msg_ids of queue in_channel to now + visibility_timeout. Returns the ids extended (expired leases are not revived).';

-- Python half of pg_mq_pop: checks the call and returns the SQL ($1 = n, $2 = now).
CREATE OR REPLACE FUNCTION _pg_mq_pop_sql(in_channel text, n integer, in_as_text boolean, in_beyond boolean)
RETURNS text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.leases.pop_sql(in_channel, n, in_as_text, in_beyond)
$python$;
COMMENT ON FUNCTION _pg_mq_pop_sql(text, integer, boolean, boolean) IS
'Internal: checks a pg_mq_pop call and returns the SQL that runs it (in_beyond: the second statement, for the rest; see _pg_mq_get_sql).';

-- Read and acknowledge at once.
CREATE OR REPLACE FUNCTION pg_mq_pop(in_channel text, n integer DEFAULT 1)
RETURNS SETOF @extschema@.pg_mq_leased
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
BEGIN
    -- The generated dispatcher: the queue's statement, or the Python path (see
    -- pg_mq_get_msg_text).
    RETURN QUERY SELECT * FROM @extschema@._pg_mq_pop_dispatch(n, clock_timestamp(), in_channel);
END
$$;
COMMENT ON FUNCTION pg_mq_pop(text, integer) IS
'Take up to n ready messages of queue in_channel and acknowledge them in the same statement (at-most-once; a rollback returns them). Payload as text.';

-- pg_mq_pop with the payload as bytea (scans as in pg_mq_get_msg_bin).
CREATE OR REPLACE FUNCTION pg_mq_pop_bin(in_channel text, n integer DEFAULT 1)
RETURNS SETOF @extschema@.pg_mq_leased_bin
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
    RETURN QUERY EXECUTE @extschema@._pg_mq_pop_sql(in_channel, n, false, false) USING n, claim_time;
    -- Short: others hold the first candidates; the rest from past them (same time).
    GET DIAGNOSTICS got = ROW_COUNT;
    IF got < n THEN
        RETURN QUERY EXECUTE @extschema@._pg_mq_pop_sql(in_channel, n - got::integer, false, true)
        USING n - got::integer, claim_time;
    END IF;
END
$$;
COMMENT ON FUNCTION pg_mq_pop_bin(text, integer) IS
'As pg_mq_pop, payload as bytea.';

-- Move undelivered messages between queues of one payload type (DLQ replay).
CREATE OR REPLACE FUNCTION pg_mq_move(
    in_source text, in_target text, n integer DEFAULT NULL, msg_ids bigint[] DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.leases.move(in_source, in_target, n, msg_ids)
$python$;
COMMENT ON FUNCTION pg_mq_move(text, text, integer, bigint[]) IS
'Move undelivered messages (all, the oldest n, or msg_ids) from queue in_source to in_target, keeping msg_id, headers and payload, ready at once with read_count 0. Returns how many moved.';

-- Change one setting of a queue.
CREATE OR REPLACE FUNCTION pg_mq_set_queue_config(in_channel text, in_key text, in_value text)
RETURNS jsonb
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.configure.set_queue_config(in_channel, in_key, in_value)
$python$;
COMMENT ON FUNCTION pg_mq_set_queue_config(text, text, text) IS
'Set in_key of queue in_channel to in_value (NULL resets it): max_deliveries, dead_letter_queue, retention, priority_ordering, fifo_group_header, dedup_window. Returns the queue''s settings.';
