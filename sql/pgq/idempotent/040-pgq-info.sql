-- PgQ's info functions, with its column names.

-- Settings and state of queue i_queue_name (every queue when NULL).
CREATE OR REPLACE FUNCTION pgq.get_queue_info(
    in i_queue_name text,
    out queue_name text,
    out queue_ntables integer,
    out queue_cur_table integer,
    out queue_rotation_period interval,
    out queue_switch_time timestamptz,
    out queue_external_ticker boolean,
    out queue_ticker_paused boolean,
    out queue_ticker_max_count integer,
    out queue_ticker_max_lag interval,
    out queue_ticker_idle_period interval,
    out ticker_lag interval,
    out ev_per_sec float8,
    out ev_new bigint,
    out last_tick_id bigint
)
RETURNS SETOF record
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.info.get_queue_info(i_queue_name)
$python$;
COMMENT ON FUNCTION pgq.get_queue_info(text) IS
'Settings and state of queue i_queue_name (every queue when NULL).';

-- Settings and state of every queue.
CREATE OR REPLACE FUNCTION pgq.get_queue_info(
    out queue_name text,
    out queue_ntables integer,
    out queue_cur_table integer,
    out queue_rotation_period interval,
    out queue_switch_time timestamptz,
    out queue_external_ticker boolean,
    out queue_ticker_paused boolean,
    out queue_ticker_max_count integer,
    out queue_ticker_max_lag interval,
    out queue_ticker_idle_period interval,
    out ticker_lag interval,
    out ev_per_sec float8,
    out ev_new bigint,
    out last_tick_id bigint
)
RETURNS SETOF record
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.info.get_queue_info(None)
$python$;
COMMENT ON FUNCTION pgq.get_queue_info() IS
'Settings and state of every queue.';

-- Position of consumer i_consumer_name on queue i_queue_name (NULL: every one).
CREATE OR REPLACE FUNCTION pgq.get_consumer_info(
    in i_queue_name text,
    in i_consumer_name text,
    out queue_name text,
    out consumer_name text,
    out lag interval,
    out last_seen interval,
    out last_tick bigint,
    out current_batch bigint,
    out next_tick bigint,
    out pending_events bigint
)
RETURNS SETOF record
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.info.get_consumer_info(i_queue_name, i_consumer_name)
$python$;
COMMENT ON FUNCTION pgq.get_consumer_info(text, text) IS
'Position of consumer i_consumer_name on queue i_queue_name (NULL: every one).';

-- Position of every consumer of queue i_queue_name (NULL: every queue).
CREATE OR REPLACE FUNCTION pgq.get_consumer_info(
    in i_queue_name text,
    out queue_name text,
    out consumer_name text,
    out lag interval,
    out last_seen interval,
    out last_tick bigint,
    out current_batch bigint,
    out next_tick bigint,
    out pending_events bigint
)
RETURNS SETOF record
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.info.get_consumer_info(i_queue_name, None)
$python$;
COMMENT ON FUNCTION pgq.get_consumer_info(text) IS
'Position of every consumer of queue i_queue_name (NULL: every queue).';

-- Position of every consumer of every queue.
CREATE OR REPLACE FUNCTION pgq.get_consumer_info(
    out queue_name text,
    out consumer_name text,
    out lag interval,
    out last_seen interval,
    out last_tick bigint,
    out current_batch bigint,
    out next_tick bigint,
    out pending_events bigint
)
RETURNS SETOF record
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.info.get_consumer_info(None, None)
$python$;
COMMENT ON FUNCTION pgq.get_consumer_info() IS
'Position of every consumer of every queue.';

-- Queue, consumer, ticks and times of open batch x_batch_id (NULLs when it is not open).
CREATE OR REPLACE FUNCTION pgq.get_batch_info(
    in x_batch_id bigint,
    out queue_name text,
    out consumer_name text,
    out batch_start timestamptz,
    out batch_end timestamptz,
    out prev_tick_id bigint,
    out tick_id bigint,
    out lag interval,
    out seq_start bigint,
    out seq_end bigint
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.pgq.info.get_batch_info(x_batch_id)
$python$;
COMMENT ON FUNCTION pgq.get_batch_info(bigint) IS
'Queue, consumer, ticks and times of open batch x_batch_id (NULLs when it is not open).';
