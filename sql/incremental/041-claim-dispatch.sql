-- pg_mq_get_msg_text, pg_mq_pop, pg_mq_read (the text forms) and pg_mq_ack call
-- these. Python
-- regenerates their bodies whenever a queue is created, dropped or changed and in
-- pg_mq_rebuild_triggers (queues.build_dispatch): each then holds the claiming
-- statement of every queue, written in, so PL/pgSQL prepares it once per backend
-- instead of a PL/Python call and an EXECUTE per claim. Until then (a fresh
-- install, an upgrade, a restore) they take the Python path: the statement the
-- Python half checks and builds, EXECUTEd, as the wrappers did before. Their
-- settings are those queues.CLAIM_SETTINGS gives the generated ones.
CREATE FUNCTION _pg_mq_get_dispatch(integer, timestamptz, text)
RETURNS SETOF @extschema@.pg_mq_msg_text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET jit = off
AS $$
DECLARE
    got bigint;
BEGIN
    RETURN QUERY EXECUTE @extschema@._pg_mq_get_sql($3, $1, true, false) USING $1, $2;
    GET DIAGNOSTICS got = ROW_COUNT;
    IF got < $1 THEN
        RETURN QUERY EXECUTE @extschema@._pg_mq_get_sql($3, $1 - got::integer, true, true) USING $1 - got::integer, $2;
    END IF;
END
$$;

CREATE FUNCTION _pg_mq_pop_dispatch(integer, timestamptz, text)
RETURNS SETOF @extschema@.pg_mq_leased
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET jit = off
AS $$
DECLARE
    got bigint;
BEGIN
    RETURN QUERY EXECUTE @extschema@._pg_mq_pop_sql($3, $1, true, false) USING $1, $2;
    GET DIAGNOSTICS got = ROW_COUNT;
    IF got < $1 THEN
        RETURN QUERY EXECUTE @extschema@._pg_mq_pop_sql($3, $1 - got::integer, true, true) USING $1 - got::integer, $2;
    END IF;
END
$$;

CREATE FUNCTION _pg_mq_read_dispatch(integer, interval, timestamptz, text, interval)
RETURNS SETOF @extschema@.pg_mq_leased
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET jit = off
AS $$
DECLARE
    got bigint;
BEGIN
    RETURN QUERY EXECUTE @extschema@._pg_mq_read_sql($4, $1, $2, $5, true, false) USING $1, $2, $3;
    GET DIAGNOSTICS got = ROW_COUNT;
    IF got < $1 THEN
        RETURN QUERY EXECUTE @extschema@._pg_mq_read_sql($4, $1 - got::integer, $2, $5, true, true) USING $1 - got::integer, $2, $3;
    END IF;
END
$$;

CREATE FUNCTION _pg_mq_ack_dispatch(bigint[], text)
RETURNS SETOF bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET jit = off
AS $$
BEGIN
    RETURN QUERY SELECT * FROM @extschema@._pg_mq_ack($2, $1);
END
$$;
