-- Raise an error again as PgQ would: the same SQLSTATE, the message without the
-- "pg_message_queue: " PL/Python puts before errors raised in or through Python.
CREATE OR REPLACE FUNCTION pgq._pg_mq_reraise(i_sqlstate text, i_message text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION USING MESSAGE = regexp_replace(i_message, '^pg_message_queue: ', ''), ERRCODE = i_sqlstate;
END
$$;
COMMENT ON FUNCTION pgq._pg_mq_reraise(text, text) IS
'Internal: raise i_message (without PL/Python''s prefix) with SQLSTATE i_sqlstate.';

-- PgQ's queue administration: create, drop, settings, grants, storage, version.
-- Public functions are PL/pgSQL over a Python internal (pgq._pg_mq_*): the
-- wrapper gives PgQ's errors PgQ's exact text; SECURITY DEFINER where PgQ has it.

-- Internal: the Python half of pgq.create_queue.
CREATE OR REPLACE FUNCTION pgq._pg_mq_create_queue(
    i_queue_name text
)
RETURNS integer
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.admin.create_queue(i_queue_name)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_create_queue(text) IS
'Internal: the Python half of pgq.create_queue.';

-- Create queue i_queue_name with its event tables and first tick: 1, or 0 when it exists.
CREATE OR REPLACE FUNCTION pgq.create_queue(
    i_queue_name text
)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pgq._pg_mq_create_queue(i_queue_name);
EXCEPTION WHEN OTHERS THEN
    -- PgQ's errors (and its statements') as PgQ gives them: no Python prefix
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.create_queue(text) IS
'Create queue i_queue_name with its event tables and first tick: 1, or 0 when it exists.';

-- Internal: the Python half of pgq.drop_queue.
CREATE OR REPLACE FUNCTION pgq._pg_mq_drop_queue(
    x_queue_name text,
    x_force bool
)
RETURNS integer
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.admin.drop_queue(x_queue_name, x_force)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_drop_queue(text, bool) IS
'Internal: the Python half of pgq.drop_queue.';

-- Drop queue x_queue_name and its event tables; with consumers attached only when x_force (which unregisters them). Returns 1.
CREATE OR REPLACE FUNCTION pgq.drop_queue(
    x_queue_name text,
    x_force bool
)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pgq._pg_mq_drop_queue(x_queue_name, x_force);
EXCEPTION WHEN OTHERS THEN
    -- PgQ's errors (and its statements') as PgQ gives them: no Python prefix
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.drop_queue(text, bool) IS
'Drop queue x_queue_name and its event tables; with consumers attached only when x_force (which unregisters them). Returns 1.';

-- Drop queue x_queue_name, which must have no consumers. Returns 1.
CREATE OR REPLACE FUNCTION pgq.drop_queue(
    x_queue_name text
)
RETURNS integer
LANGUAGE plpgsql
STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pgq._pg_mq_drop_queue(x_queue_name, false);
EXCEPTION WHEN OTHERS THEN
    -- PgQ's errors (and its statements') as PgQ gives them: no Python prefix
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.drop_queue(text) IS
'Drop queue x_queue_name, which must have no consumers. Returns 1.';

-- Internal: the Python half of pgq.set_queue_config.
CREATE OR REPLACE FUNCTION pgq._pg_mq_set_queue_config(
    x_queue_name text,
    x_param_name text,
    x_param_value text
)
RETURNS integer
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.admin.set_queue_config(x_queue_name, x_param_name, x_param_value)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_set_queue_config(text, text, text) IS
'Internal: the Python half of pgq.set_queue_config.';

-- Set a queue's ticker_max_count, ticker_max_lag, ticker_idle_period, ticker_paused, rotation_period or external_ticker. Returns 1.
CREATE OR REPLACE FUNCTION pgq.set_queue_config(
    x_queue_name text,
    x_param_name text,
    x_param_value text
)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pgq._pg_mq_set_queue_config(x_queue_name, x_param_name, x_param_value);
EXCEPTION WHEN OTHERS THEN
    -- PgQ's errors (and its statements') as PgQ gives them: no Python prefix
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.set_queue_config(text, text, text) IS
'Set a queue''s ticker_max_count, ticker_max_lag, ticker_idle_period, ticker_paused, rotation_period or external_ticker. Returns 1.';

-- Internal: the Python half of pgq.grant_perms.
CREATE OR REPLACE FUNCTION pgq._pg_mq_grant_perms(
    x_queue_name text
)
RETURNS integer
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.admin.grant_perms(x_queue_name)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_grant_perms(text) IS
'Internal: the Python half of pgq.grant_perms.';

-- Give the queue's sequences and event tables the grants of pgq.event_template. Returns 1.
CREATE OR REPLACE FUNCTION pgq.grant_perms(
    x_queue_name text
)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pgq._pg_mq_grant_perms(x_queue_name);
EXCEPTION WHEN OTHERS THEN
    -- PgQ's errors (and its statements') as PgQ gives them: no Python prefix
    PERFORM pgq._pg_mq_reraise(SQLSTATE, SQLERRM);
END
$$;
COMMENT ON FUNCTION pgq.grant_perms(text) IS
'Give the queue''s sequences and event tables the grants of pgq.event_template. Returns 1.';

-- Copy the grants of table src_schema.src_table to dst_schema.dst_table. Returns 1.
CREATE OR REPLACE FUNCTION pgq._grant_perms_from(
    src_schema text,
    src_table text,
    dst_schema text,
    dst_table text
)
RETURNS integer
LANGUAGE plpython3u
STRICT
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.admin.grant_perms_from(src_schema, src_table, dst_schema, dst_table)
$python$;
COMMENT ON FUNCTION pgq._grant_perms_from(text, text, text, text) IS
'Copy the grants of table src_schema.src_table to dst_schema.dst_table. Returns 1.';

-- Event tables of the queue: fillfactor 100, no autovacuum (they are truncated). 1, or 0 for an unknown queue.
CREATE OR REPLACE FUNCTION pgq.tune_storage(
    i_queue_name text
)
RETURNS integer
LANGUAGE plpython3u
STRICT
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.admin.tune_storage(i_queue_name)
$python$;
COMMENT ON FUNCTION pgq.tune_storage(text) IS
'Event tables of the queue: fillfactor 100, no autovacuum (they are truncated). 1, or 0 for an unknown queue.';

-- last_value of sequence i_seq_name (schema.name, else public).
CREATE OR REPLACE FUNCTION pgq.seq_getval(
    i_seq_name text
)
RETURNS bigint
LANGUAGE plpython3u
STRICT
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.admin.seq_getval(i_seq_name)
$python$;
COMMENT ON FUNCTION pgq.seq_getval(text) IS
'last_value of sequence i_seq_name (schema.name, else public).';

-- Move sequence i_seq_name up to i_new_value (never down); its value after.
CREATE OR REPLACE FUNCTION pgq.seq_setval(
    i_seq_name text,
    i_new_value int8
)
RETURNS bigint
LANGUAGE plpython3u
STRICT
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.admin.seq_setval(i_seq_name, i_new_value)
$python$;
COMMENT ON FUNCTION pgq.seq_setval(text, int8) IS
'Move sequence i_seq_name up to i_new_value (never down); its value after.';

-- schema.name quoted; a name without a schema is in public.
CREATE OR REPLACE FUNCTION pgq.quote_fqname(i_name text)
RETURNS text
LANGUAGE sql
IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
SELECT CASE WHEN position('.' IN i_name) > 0
    THEN quote_ident(substring(i_name FOR position('.' IN i_name) - 1)) || '.'
    || quote_ident(substring(i_name FROM position('.' IN i_name) + 1))
    ELSE 'public.' || quote_ident(i_name) END
$$;
COMMENT ON FUNCTION pgq.quote_fqname(text) IS
'i_name (schema.name, else public) as a quoted qualified name.';

-- The PgQ version whose API this is (pgqd requires 3 or later).
CREATE OR REPLACE FUNCTION pgq.version()
RETURNS text
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
SELECT '3.5'::text
$$;
COMMENT ON FUNCTION pgq.version() IS
'The version of PgQ''s API provided: 3.5.';

-- PgQ's schema upgrade: nothing to do here (the extension's own scripts upgrade it,
-- and made PgQ's roles when they were missing).
CREATE OR REPLACE FUNCTION pgq.upgrade_schema()
RETURNS int4
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
SELECT 0
$$;
COMMENT ON FUNCTION pgq.upgrade_schema() IS
'Nothing to do (ALTER EXTENSION pg_message_queue_pgq UPDATE upgrades the schema); returns 0, as PgQ.';
