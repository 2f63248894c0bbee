-- PgQ's info functions, with its column names.

-- Settings and state of queue i_queue_name (every queue when NULL).
CREATE OR REPLACE FUNCTION pgq.get_queue_info(
    IN i_queue_name text,
    OUT queue_name text,
    OUT queue_ntables integer,
    OUT queue_cur_table integer,
    OUT queue_rotation_period interval,
    OUT queue_switch_time timestamptz,
    OUT queue_external_ticker boolean,
    OUT queue_ticker_paused boolean,
    OUT queue_ticker_max_count integer,
    OUT queue_ticker_max_lag interval,
    OUT queue_ticker_idle_period interval,
    OUT ticker_lag interval,
    OUT ev_per_sec float8,
    OUT ev_new bigint,
    OUT last_tick_id bigint
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
    OUT queue_name text,
    OUT queue_ntables integer,
    OUT queue_cur_table integer,
    OUT queue_rotation_period interval,
    OUT queue_switch_time timestamptz,
    OUT queue_external_ticker boolean,
    OUT queue_ticker_paused boolean,
    OUT queue_ticker_max_count integer,
    OUT queue_ticker_max_lag interval,
    OUT queue_ticker_idle_period interval,
    OUT ticker_lag interval,
    OUT ev_per_sec float8,
    OUT ev_new bigint,
    OUT last_tick_id bigint
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
    IN i_queue_name text,
    IN i_consumer_name text,
    OUT queue_name text,
    OUT consumer_name text,
    OUT lag interval,
    OUT last_seen interval,
    OUT last_tick bigint,
    OUT current_batch bigint,
    OUT next_tick bigint,
    OUT pending_events bigint
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
    IN i_queue_name text,
    OUT queue_name text,
    OUT consumer_name text,
    OUT lag interval,
    OUT last_seen interval,
    OUT last_tick bigint,
    OUT current_batch bigint,
    OUT next_tick bigint,
    OUT pending_events bigint
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
    OUT queue_name text,
    OUT consumer_name text,
    OUT lag interval,
    OUT last_seen interval,
    OUT last_tick bigint,
    OUT current_batch bigint,
    OUT next_tick bigint,
    OUT pending_events bigint
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
    IN x_batch_id bigint,
    OUT queue_name text,
    OUT consumer_name text,
    OUT batch_start timestamptz,
    OUT batch_end timestamptz,
    OUT prev_tick_id bigint,
    OUT tick_id bigint,
    OUT lag interval,
    OUT seq_start bigint,
    OUT seq_end bigint
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
