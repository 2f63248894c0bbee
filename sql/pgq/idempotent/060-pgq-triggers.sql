-- PgQ's row-change triggers (PgQ's C: triggers/*.c): pgq.logutriga, pgq.sqltriga and
-- pgq.jsontriga. Each is PL/pgSQL around one Python call (pgq/triggers.py), so PgQ's
-- errors keep PgQ's exact text. Like PgQ's, they are not SECURITY DEFINER and have no
-- SET clause: they run as the role changing the table, with its search_path, which is
-- what a when= or ev_*= expression sees; every name of ours below is qualified.

-- Internal: one firing of pgq.<kind>: NULL, {skip}, {error, sqlstate, message} or {event[-skip], queue, fields}.
CREATE OR REPLACE FUNCTION pgq._pg_mq_trigger(
    kind text,
    relid oid,
    op text,
    tg_when text,
    tg_level text,
    argv text[],
    stmt text,
    replication_role text,
    old_row text,
    new_row text,
    old_json text,
    new_json text
)
RETURNS text[]
LANGUAGE plpython3u
AS $python$
#PROLOGUE#
return pgmq.pgq.triggers.fire(
    kind, relid, op, tg_when, tg_level, argv, stmt, replication_role, old_row, new_row, old_json, new_json
)
$python$;
COMMENT ON FUNCTION pgq._pg_mq_trigger(text, oid, text, text, text, text[], text, text, text, text, text, text) IS
'Internal: one firing of pgq.<kind>: NULL, {skip}, {error, sqlstate, message} or {event[-skip], queue, fields}.';

-- Trigger: each row change as an event, ev_type I/U/D:pkeys, ev_data the row urlencoded (PgQ's logutriga).
CREATE OR REPLACE FUNCTION pgq.logutriga()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    r pg_catalog.text[];
BEGIN
    r := pgq._pg_mq_trigger(
        'logutriga', TG_RELID, TG_OP, TG_WHEN, TG_LEVEL, TG_ARGV,
        pg_catalog.statement_timestamp()::pg_catalog.text,
        pg_catalog.current_setting('session_replication_role'),
        CASE WHEN TG_OP OPERATOR(pg_catalog.=) ANY ('{UPDATE,DELETE}') THEN OLD::pg_catalog.text END,
        CASE WHEN TG_OP OPERATOR(pg_catalog.=) ANY ('{INSERT,UPDATE}') THEN NEW::pg_catalog.text END,
        NULL,
        NULL
    );
    IF r[1] OPERATOR(pg_catalog.=) 'error' THEN
        RAISE EXCEPTION USING MESSAGE = r[3], ERRCODE = r[2];
    ELSIF r[1] OPERATOR(pg_catalog.=) ANY ('{event,event-skip}') THEN
        PERFORM pgq.insert_event(r[2], r[3], r[4], r[5], r[6], r[7], r[8]);
    END IF;
    IF r[1] OPERATOR(pg_catalog.=) ANY ('{skip,event-skip}')
        OR TG_WHEN OPERATOR(pg_catalog.=) 'AFTER' OR TG_LEVEL OPERATOR(pg_catalog.=) 'STATEMENT' THEN
        RETURN NULL;
    ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION pgq.logutriga() IS
'Trigger: each row change as an event, ev_type I/U/D:pkeys, ev_data the row urlencoded (PgQ''s logutriga).';

-- Trigger: each row change as an event, ev_type I/U/D, ev_data an SQL fragment replaying it (PgQ's sqltriga).
CREATE OR REPLACE FUNCTION pgq.sqltriga()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    r pg_catalog.text[];
BEGIN
    r := pgq._pg_mq_trigger(
        'sqltriga', TG_RELID, TG_OP, TG_WHEN, TG_LEVEL, TG_ARGV,
        pg_catalog.statement_timestamp()::pg_catalog.text,
        pg_catalog.current_setting('session_replication_role'),
        CASE WHEN TG_OP OPERATOR(pg_catalog.=) ANY ('{UPDATE,DELETE}') THEN OLD::pg_catalog.text END,
        CASE WHEN TG_OP OPERATOR(pg_catalog.=) ANY ('{INSERT,UPDATE}') THEN NEW::pg_catalog.text END,
        NULL,
        NULL
    );
    IF r[1] OPERATOR(pg_catalog.=) 'error' THEN
        RAISE EXCEPTION USING MESSAGE = r[3], ERRCODE = r[2];
    ELSIF r[1] OPERATOR(pg_catalog.=) ANY ('{event,event-skip}') THEN
        PERFORM pgq.insert_event(r[2], r[3], r[4], r[5], r[6], r[7], r[8]);
    END IF;
    IF r[1] OPERATOR(pg_catalog.=) ANY ('{skip,event-skip}')
        OR TG_WHEN OPERATOR(pg_catalog.=) 'AFTER' OR TG_LEVEL OPERATOR(pg_catalog.=) 'STATEMENT' THEN
        RETURN NULL;
    ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION pgq.sqltriga() IS
'Trigger: each row change as an event, ev_type I/U/D, ev_data an SQL fragment replaying it (PgQ''s sqltriga).';

-- Trigger: each row change as an event, ev_type and ev_data JSON (PgQ's jsontriga).
CREATE OR REPLACE FUNCTION pgq.jsontriga()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    r pg_catalog.text[];
BEGIN
    r := pgq._pg_mq_trigger(
        'jsontriga', TG_RELID, TG_OP, TG_WHEN, TG_LEVEL, TG_ARGV,
        pg_catalog.statement_timestamp()::pg_catalog.text,
        pg_catalog.current_setting('session_replication_role'),
        CASE WHEN TG_OP OPERATOR(pg_catalog.=) ANY ('{UPDATE,DELETE}') THEN OLD::pg_catalog.text END,
        CASE WHEN TG_OP OPERATOR(pg_catalog.=) ANY ('{INSERT,UPDATE}') THEN NEW::pg_catalog.text END,
        CASE WHEN TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN pg_catalog.to_json(OLD)::pg_catalog.text END,
        CASE WHEN TG_OP OPERATOR(pg_catalog.=) ANY ('{INSERT,UPDATE}') THEN pg_catalog.to_json(NEW)::pg_catalog.text
        ELSE pg_catalog.to_json(OLD)::pg_catalog.text END
    );
    IF r[1] OPERATOR(pg_catalog.=) 'error' THEN
        RAISE EXCEPTION USING MESSAGE = r[3], ERRCODE = r[2];
    ELSIF r[1] OPERATOR(pg_catalog.=) ANY ('{event,event-skip}') THEN
        PERFORM pgq.insert_event(r[2], r[3], r[4], r[5], r[6], r[7], r[8]);
    END IF;
    IF r[1] OPERATOR(pg_catalog.=) ANY ('{skip,event-skip}')
        OR TG_WHEN OPERATOR(pg_catalog.=) 'AFTER' OR TG_LEVEL OPERATOR(pg_catalog.=) 'STATEMENT' THEN
        RETURN NULL;
    ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION pgq.jsontriga() IS
'Trigger: each row change as an event, ev_type and ev_data JSON (PgQ''s jsontriga).';
