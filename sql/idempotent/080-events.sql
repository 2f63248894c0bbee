-- Change events: watch a table, and every INSERT, UPDATE, DELETE or TRUNCATE
-- on it sends one event per row to a NOTIFY channel, a queue, AMQP or a PgQ queue (see
-- plpython/pg_message_queue/events.py). The watch functions are SECURITY
-- DEFINER: they check that the caller owns the table (and may use the target),
-- record the watch and create the triggers; the trigger function is SECURITY
-- DEFINER too, so roles writing the table need no rights on the target.

-- The trigger of every watch: one call per statement, which builds the events
-- from the transition tables and sends them in one statement. Not executable
-- by PUBLIC, so no role can attach it to a table of its own (CREATE TRIGGER
-- checks EXECUTE); it also fires only for the table its watch names.
-- jit = off: the statement is planned for a transition table whose join estimates
-- (hundreds of thousands of rows for 10,000) would make PostgreSQL compile it, which
-- cost more than the whole statement (80 ms of 240 ms for a 10,000-row UPDATE).
CREATE OR REPLACE FUNCTION _pg_mq_watch_fire()
RETURNS trigger
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $python$
#PROLOGUE#
pgmq.events.fire(TD)
return None
$python$;
COMMENT ON FUNCTION _pg_mq_watch_fire() IS
'Internal: statement-level trigger of a watched table (argument: watch_id); sends the statement''s change events to the watch''s target.';

-- Watch a table: events to a NOTIFY channel (JSON, under 8000 bytes).
CREATE OR REPLACE FUNCTION pg_mq_watch_notify(
    in_table regclass,
    channel text,
    operations text[] DEFAULT '{INSERT,UPDATE,DELETE,TRUNCATE}',
    payload text DEFAULT 'keys',
    columns text[] DEFAULT null,
    ignore_columns text[] DEFAULT null,
    key_columns text[] DEFAULT null
)
RETURNS bigint
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.events.watch(
    "notify", in_table, channel, operations, payload, columns, ignore_columns, key_columns
)
$python$;
COMMENT ON FUNCTION pg_mq_watch_notify(regclass, text, text[], text, text[], text[], text[]) IS
'Watch in_table: every change NOTIFYs channel with a JSON event (payload ''keys'' = primary key, or ''row''); an event over 8000 bytes is sent as keys only with "truncated": true. Only the table''s owner may watch it. Returns the watch_id; watching again replaces the options.';

-- Watch a table: events as messages of a queue (created as jsonb if missing).
CREATE OR REPLACE FUNCTION pg_mq_watch_queue(
    in_table regclass,
    in_channel text,
    operations text[] DEFAULT '{INSERT,UPDATE,DELETE,TRUNCATE}',
    payload text DEFAULT 'row',
    columns text[] DEFAULT null,
    ignore_columns text[] DEFAULT null,
    key_columns text[] DEFAULT null
)
RETURNS bigint
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.events.watch(
    "queue", in_table, in_channel, operations, payload, columns, ignore_columns, key_columns
)
$python$;
COMMENT ON FUNCTION pg_mq_watch_queue(regclass, text, text[], text, text[], text[], text[]) IS
'Watch in_table: every changed row becomes a message of queue in_channel (created as jsonb if missing, by a queue administrator; otherwise the caller must be allowed to send to it). Only the table''s owner may watch it. Returns the watch_id.';

-- Watch a table: events published over AMQP when the transaction commits.
CREATE OR REPLACE FUNCTION pg_mq_watch_amqp(
    in_table regclass,
    broker_id integer,
    exchange text,
    routing_key text DEFAULT '{schema}.{table}.{op}',
    operations text[] DEFAULT '{INSERT,UPDATE,DELETE,TRUNCATE}',
    payload text DEFAULT 'row',
    columns text[] DEFAULT null,
    ignore_columns text[] DEFAULT null,
    key_columns text[] DEFAULT null
)
RETURNS bigint
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.events.watch(
    "amqp", in_table, exchange, operations, payload, columns, ignore_columns, key_columns,
    broker_id, routing_key
)
$python$;
COMMENT ON FUNCTION pg_mq_watch_amqp(regclass, integer, text, text, text[], text, text[], text[], text[]) IS
'Watch in_table: every changed row is published to exchange on broker broker_id when the transaction commits (through amqp.outbox; message_id = event_id; routing_key may use {schema}, {table}, {op}). Only the table''s owner (with USAGE on schema amqp) may watch it. Returns the watch_id.';

-- Watch a table: events into a PgQ queue (the companion pg_message_queue_pgq, or
-- real PgQ), one pgq.insert_event per event.
CREATE OR REPLACE FUNCTION pg_mq_watch_pgq(
    in_table regclass,
    queue_name text,
    operations text[] DEFAULT '{INSERT,UPDATE,DELETE,TRUNCATE}',
    payload text DEFAULT 'row',
    columns text[] DEFAULT null,
    ignore_columns text[] DEFAULT null,
    key_columns text[] DEFAULT null
)
RETURNS bigint
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.events.watch(
    "pgq", in_table, queue_name, operations, payload, columns, ignore_columns, key_columns
)
$python$;
COMMENT ON FUNCTION pg_mq_watch_pgq(regclass, text, text[], text, text[], text[], text[]) IS
'Watch in_table: every changed row becomes a PgQ event of queue queue_name (pgq.insert_event: ev_type = op, ev_data = the event JSON, ev_extra1 = schema.table, ev_extra2 = event_id). Needs schema pgq (pg_message_queue_pgq or PgQ), the queue, and EXECUTE on pgq.insert_event for the caller. Only the table''s owner may watch it. Returns the watch_id.';

-- Stop watching a table (every target, or the one named).
CREATE OR REPLACE FUNCTION pg_mq_unwatch(in_table regclass, target text DEFAULT null)
RETURNS integer
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.events.unwatch(in_table, target)
$python$;
COMMENT ON FUNCTION pg_mq_unwatch(regclass, text) IS
'Stop watching in_table: remove its watches (only those to target, a channel, queue or exchange, when given) and their triggers. Returns how many were removed.';

-- Send the rows already in a watched table as op READ events, in key order.
CREATE OR REPLACE FUNCTION pg_mq_watch_snapshot(
    in_table regclass,
    target text DEFAULT null,
    batch_size integer DEFAULT 1000
)
RETURNS bigint
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $python$
#PROLOGUE#
return pgmq.events.snapshot(in_table, target, batch_size)
$python$;
COMMENT ON FUNCTION pg_mq_watch_snapshot(regclass, text, integer) IS
'Send one op "READ" event per row already in in_table, in key order, to the target of its watch (target names it when the table has several), batch_size rows per statement (keyset pagination on the key). Only the table''s owner may. Returns how many events were sent.';

-- What is watched, and where to.
CREATE OR REPLACE VIEW pg_mq_watches AS
SELECT
    w.watch_id,
    w.relid::regclass AS watched_table,
    w.kind,
    w.target,
    w.broker_id,
    w.routing_key,
    w.operations,
    w.payload,
    w.columns,
    w.ignore_columns,
    w.key_columns,
    w.created_by,
    w.created_at
FROM @extschema@.pg_mq_watch AS w;
COMMENT ON VIEW pg_mq_watches IS
'One row per watch: the table, kind (notify, queue, amqp, pgq), target (channel, queue, broker_id/exchange, or PgQ queue) and options.';

-- A dropped table takes its watches along (its triggers go with it anyway).
CREATE OR REPLACE FUNCTION _pg_mq_watch_dropped()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM @extschema@.pg_mq_watch AS w
    USING pg_event_trigger_dropped_objects() AS d
    WHERE
        d.classid = 'pg_catalog.pg_class'::regclass
        AND d.objsubid = 0 AND d.objid = w.relid;
END
$$;
COMMENT ON FUNCTION _pg_mq_watch_dropped() IS
'Internal: event trigger removing the watches of dropped tables.';

DO $watch$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger WHERE evtname = 'pg_mq_watch_dropped') THEN
        CREATE EVENT TRIGGER pg_mq_watch_dropped ON sql_drop
        WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED')
        EXECUTE FUNCTION _pg_mq_watch_dropped();
    END IF;
END
$watch$;

-- A watched partitioned table: its triggers are on every partition too (a statement
-- trigger fires only for the table a statement names). New and attached partitions
-- get them, detached ones lose them. Never fails the DDL: a WARNING says what went wrong.
CREATE OR REPLACE FUNCTION _pg_mq_watch_sync_partitions()
RETURNS void
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
pgmq.events.on_table_ddl()
$python$;
COMMENT ON FUNCTION _pg_mq_watch_sync_partitions() IS
'Internal: gives the partitions of watched partitioned tables the watches'' triggers, and takes them from tables no longer partitions of them.';

-- PL/Python has no event triggers: this one calls the function above, only while a
-- partitioned table is watched.
CREATE OR REPLACE FUNCTION _pg_mq_watch_partitions()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (
        SELECT FROM @extschema@.pg_mq_watch AS w
        INNER JOIN pg_catalog.pg_class AS c ON w.relid = c.oid
        WHERE c.relkind = 'p'
    ) THEN
        PERFORM @extschema@._pg_mq_watch_sync_partitions();
    END IF;
END
$$;
COMMENT ON FUNCTION _pg_mq_watch_partitions() IS
'Internal: event trigger giving new partitions of a watched partitioned table the watch''s triggers (and taking them from detached ones).';

DO $watch$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger WHERE evtname = 'pg_mq_watch_partitions') THEN
        CREATE EVENT TRIGGER pg_mq_watch_partitions ON ddl_command_end
        WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
        EXECUTE FUNCTION _pg_mq_watch_partitions();
    END IF;
END
$watch$;

-- The same events from a trigger written by hand: arguments (kind, target
-- [, options as a JSON object]). Runs with the rights of whoever changes the
-- table (the sending needs theirs: INSERT on the queue, USAGE on schema amqp).
CREATE OR REPLACE FUNCTION pg_mq_change_trigger()
RETURNS trigger
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $python$
#PROLOGUE#
pgmq.events.fire_by_hand(TD)
return None
$python$;
COMMENT ON FUNCTION pg_mq_change_trigger() IS
'Trigger function for hand-written watches: AFTER ... REFERENCING NEW TABLE AS pg_mq_new / OLD TABLE AS pg_mq_old FOR EACH STATEMENT EXECUTE FUNCTION pg_mq_change_trigger(kind, target [, options json]); kind notify, queue or amqp (target = exchange, options.broker_id). Sends with the rights of the role changing the table.';
