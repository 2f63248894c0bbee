"""SECURITY DEFINER functions probed by a role that sets a trap in its search_path.

The attacker (a non-superuser granted EXECUTE on every SECURITY DEFINER function of the
extension, found from the catalog) creates look-alikes of what the extension uses:
functions (now, quote_ident, set_config, ...), operators (= for text, ||, <, ...),
types (text, jsonb, regclass as domains whose CHECK springs the trap) and tables or
views (pg_mq_config_catalog, broker, outbox, pg_class) in its own schema and in pg_temp,
then puts them first in its search_path. Every trap raises a WARNING "TRAP <what> as
<role>" (a notice survives a rollback); the attack succeeds if any trap springs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from helpers import as_role

# Functions that run with the caller's search_path, by design (README, "Installing").
NO_SET_CLAUSE = {
    "pg_mq_send_message(text,anyelement,interval,integer,text,jsonb)",
    "pg_mq_send_message(text,text,interval,integer,text,jsonb)",
    "pg_mq_notify_trigger()",  # runs on every send; sends and direct INSERTs are probed below
    # the generated dispatchers, on every send (queues.build_dispatch): every name qualified
    "_pg_mq_send_dispatch(text,text,oid,interval,integer,jsonb)",
    "_pg_mq_send_batch_dispatch(text,anyarray,oid,interval,integer,jsonb)",
    "pg_mq_maintenance_loop(interval,integer,integer)",
    "amqp.relay(integer,integer,double precision,interval,boolean)",
}
# SECURITY DEFINER functions executable by PUBLIC, and why (README "Permissions", AMQP "Permissions").
PUBLIC_DEFINERS = {
    "_pg_mq_dead_letter(text,bigint[])": "moves only what the next read would move (README, Permissions)",
    "_pg_mq_release_dedup(text,text)": "clears keys the dedup window already let go (sql/messages.sql; not in README)",
    "amqp.publish(integer,character varying,character varying,character varying,integer,character varying,"
    "character varying,character varying,jsonb,character varying,character varying,integer,boolean)": (
        "behind USAGE on schema amqp (README, AMQP Permissions)"
    ),
    "amqp.autonomous_publish(integer,character varying,character varying,character varying,integer,"
    "character varying,character varying,character varying,jsonb,character varying,character varying,"
    "integer,boolean)": "behind USAGE on schema amqp (README, AMQP Permissions)",
    # change events: the watch functions are granted deliberately (README, Change events: Who may watch)
    "_pg_mq_watch_dropped()": "event trigger (sql_drop): deletes only the watches of the tables just dropped",
    # the NOTIFY -> AMQP bridge (README, NOTIFY -> AMQP bridge: Who may do what)
    "pg_mq_notify(text,text)": "pg_notify's drop-in: sends only what the channel map says, where it says",
    "_pg_mq_watch_partitions()": (
        "event trigger (CREATE/ALTER TABLE): gives partitions of watched partitioned tables the watches' triggers"
    ),
}

EXTENSION_FUNCTIONS = """
SELECT p.oid, p.oid::regprocedure::text AS signature, p.prosecdef, p.proconfig, p.prokind,
       p.prorettype = 'trigger'::regtype AS is_trigger,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_message_queue'
ORDER BY 2
"""


def _functions(db: psycopg.Connection) -> list[tuple]:
    return db.execute(EXTENSION_FUNCTIONS).fetchall()


def test_every_function_pins_its_search_path_except_the_documented_ones(db):
    unpinned = {
        sig
        for _oid, sig, _definer, config, _kind, _trigger, _public in _functions(db)
        if not any(c.startswith("search_path=") and c.split("=", 1)[1].startswith("pg_catalog") for c in config or [])
    }
    assert unpinned == NO_SET_CLAUSE


def test_no_security_definer_function_is_executable_by_public_unless_documented(db):
    public = {sig for _oid, sig, definer, _c, _k, _t, public in _functions(db) if definer and public}
    assert public == set(PUBLIC_DEFINERS)


# ---- the trap ---------------------------------------------------------------------------

# (name, argument types, return type, body returning the genuine result)
SHADOW_FUNCTIONS = [
    ("now", "", "timestamptz", "pg_catalog.now()"),
    ("clock_timestamp", "", "timestamptz", "pg_catalog.clock_timestamp()"),
    ("quote_ident", "text", "text", "pg_catalog.quote_ident($1)"),
    ("quote_literal", "text", "text", "pg_catalog.quote_literal($1)"),
    ("format_type", "oid, integer", "text", "pg_catalog.format_type($1, $2)"),
    ("pg_notify", "text, text", "void", "pg_catalog.pg_notify($1, $2)"),
    ("set_config", "text, text, boolean", "text", "pg_catalog.set_config($1, $2, $3)"),
    ("current_setting", "text", "text", "pg_catalog.current_setting($1)"),
    ("current_setting", "text, boolean", "text", "pg_catalog.current_setting($1, $2)"),
    ("jsonb_typeof", "jsonb", "text", "pg_catalog.jsonb_typeof($1)"),
    ("octet_length", "text", "integer", "pg_catalog.octet_length($1)"),
    ("translate", "text, text, text", "text", "pg_catalog.translate($1, $2, $3)"),
    ("gen_random_uuid", "", "uuid", "pg_catalog.gen_random_uuid()"),
    ("nextval", "regclass", "bigint", "pg_catalog.nextval($1)"),
    ("pg_sequence_last_value", "regclass", "bigint", "pg_catalog.pg_sequence_last_value($1)"),
    ("hashtext", "text", "integer", "pg_catalog.hashtext($1)"),
    ("to_regtype", "text", "regtype", "pg_catalog.to_regtype($1)"),
    ("to_regclass", "text", "regclass", "pg_catalog.to_regclass($1)"),
    ("pg_current_xact_id", "", "xid8", "pg_catalog.pg_current_xact_id()"),
    ("pg_advisory_xact_lock", "bigint", "void", "pg_catalog.pg_advisory_xact_lock($1)"),
    ("has_table_privilege", "text, text", "boolean", "pg_catalog.has_table_privilege($1, $2)"),
    ("lower", "text", "text", "pg_catalog.lower($1)"),
    ("length", "text", "integer", "pg_catalog.length($1)"),
    ("jsonb_build_object", "text, text", "jsonb", "pg_catalog.jsonb_build_object($1, $2)"),
    ("array_length", "anyarray, integer", "integer", "pg_catalog.array_length($1, $2)"),
]
# (operator, left, right, genuine operator)
SHADOW_OPERATORS = [
    ("=", "text", "text"),
    ("=", "name", "name"),
    ("=", "int8", "int8"),
    ("=", "int4", "int4"),
    ("=", "oid", "oid"),
    ("<>", "text", "text"),
    ("||", "text", "text"),
    ("<", "timestamptz", "timestamptz"),
    ("<=", "timestamptz", "timestamptz"),
    (">", "interval", "interval"),
    ("+", "timestamptz", "interval"),
    ("-", "timestamptz", "interval"),
    ("~", "text", "text"),
    ("->>", "jsonb", "text"),
    ("?", "jsonb", "text"),
]
SHADOW_TYPES = ["text", "jsonb", "regclass", "regtype", "oid", "name", "int4", "int8", "bool", "timestamptz", "xid8"]
SHADOW_RELATIONS = ["pg_mq_config_catalog", "pg_mq_queue_q", "broker", "outbox", "status", "pg_class", "pg_type"]


def _trap_sql(schema: str) -> list[str]:
    """Every look-alike, in ``schema``; each one springs the trap."""
    out = [
        f"CREATE FUNCTION {schema}.trap(what text) RETURNS boolean LANGUAGE plpgsql AS $$"
        " BEGIN RAISE WARNING 'TRAP % as %', what, current_user; RETURN true; END $$",
        f"CREATE TABLE {schema}.sprung (what text)",
    ]
    for i, (name, args, ret, body) in enumerate(SHADOW_FUNCTIONS):
        perform = "PERFORM" if ret == "void" else "RETURN"
        out.append(
            f"CREATE FUNCTION {schema}.{name}({args}) RETURNS {ret} LANGUAGE plpgsql AS $$ BEGIN"
            f" PERFORM {schema}.trap('function {name}#{i}'); {perform} {body}; {'RETURN;' if ret == 'void' else ''}"
            " END $$"
        )
    for i, (op, left, right) in enumerate(SHADOW_OPERATORS):
        genuine = f"$1 OPERATOR(pg_catalog.{op}) $2"
        ret = {"||": "text", "+": "timestamptz", "-": "timestamptz", "->>": "text"}.get(op, "bool")
        out.append(
            f"CREATE FUNCTION {schema}.op{i}(pg_catalog.{left}, pg_catalog.{right}) RETURNS pg_catalog.{ret}"
            f" LANGUAGE plpgsql AS $$ BEGIN PERFORM {schema}.trap('operator {op} ({left}, {right})');"
            f" RETURN {genuine}; END $$"
        )
        out.append(
            f"CREATE OPERATOR {schema}.{op} (LEFTARG = pg_catalog.{left}, RIGHTARG = pg_catalog.{right},"
            f" FUNCTION = {schema}.op{i})"
        )
    for t in SHADOW_TYPES:
        out.append(f"CREATE DOMAIN {schema}.{t} AS pg_catalog.{t} CHECK ({schema}.trap('type {t}'))")
    for rel in SHADOW_RELATIONS:
        out.append(
            f"CREATE VIEW {schema}.{rel} AS SELECT 'q'::pg_catalog.text AS channel, 1 AS broker_id"
            f" WHERE {schema}.trap('relation {schema}.{rel}')"
        )
    return out


@pytest.fixture
def attacker(db: psycopg.Connection, dsn: str) -> Iterator[tuple[str, psycopg.Connection, list[str]]]:
    """A LOGIN role with EXECUTE on every SECURITY DEFINER function, USAGE on amqp,
    its own schema full of traps, temporary look-alikes, and the traps first in its path.
    Yields (role, connection, the warnings it has seen)."""
    role = f"mallory_{uuid.uuid4().hex[:10]}"
    db.execute(f"CREATE ROLE {role} LOGIN")
    db.execute(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
    db.execute(f"GRANT USAGE ON SCHEMA amqp TO {role}")
    for _oid, sig, definer, _config, kind, _trigger, _public in _functions(db):
        if definer:
            db.execute(f"GRANT EXECUTE ON {'PROCEDURE' if kind == 'p' else 'FUNCTION'} {sig} TO {role}")
    db.execute(f"GRANT SELECT ON pg_mq_queues TO {role}")
    conn = psycopg.connect(as_role(dsn, role), autocommit=True)
    seen: list[str] = []
    conn.add_notice_handler(lambda d: seen.append(d.message_primary or ""))
    for statement in _trap_sql(role):
        conn.execute(statement)
    for rel in SHADOW_RELATIONS:
        conn.execute(
            f"CREATE TEMP VIEW {rel} AS SELECT 'q'::pg_catalog.text AS channel, 1 AS broker_id"
            f" WHERE {role}.trap('relation pg_temp.{rel}')"
        )
    yield role, conn, seen
    # Drop the temporary views now: a closing backend drops them on its way out, and
    # would deadlock with the DROP SCHEMA below.
    conn.execute("RESET search_path")
    conn.execute("DISCARD TEMP")
    conn.close()
    db.execute(f"DROP SCHEMA {role} CASCADE")
    db.execute(f"DROP OWNED BY {role}")
    db.execute(f"DROP ROLE {role}")


# What each SECURITY DEFINER function is called with, and what it must return. A new
# one is probed too (with NULL arguments), and must then at least not spring a trap.
def _probe_calls(role: str, schema: str) -> dict[str, tuple[str, object]]:
    s = schema
    return {
        "pg_mq_create_queue(text,text)": (
            f"SELECT channel FROM {s}.pg_mq_create_queue('probe_new', 'text')",
            [("probe_new",)],
        ),
        "pg_mq_drop_queue(text,boolean)": (f"SELECT {s}.pg_mq_drop_queue('probe_drop', true)", [(True,)]),
        "pg_mq_purge_queue(text)": (f"SELECT {s}.pg_mq_purge_queue('probe_purge')", [(1,)]),
        "pg_mq_rebuild_triggers()": (f"SELECT {s}.pg_mq_rebuild_triggers() OPERATOR(pg_catalog.>) 0", [(True,)]),
        "pg_mq_grant(text,name,text)": (f"SELECT {s}.pg_mq_grant('q', '{role}', 'send')", [(True,)]),
        "pg_mq_revoke(text,name,text)": (f"SELECT {s}.pg_mq_revoke('q', '{role}', 'send')", [(True,)]),
        "_pg_mq_release_dedup(text,text)": (f"SELECT {s}._pg_mq_release_dedup('q', 'k')", [(0,)]),
        "_pg_mq_dead_letter(text,bigint[])": (f"SELECT {s}._pg_mq_dead_letter('q', NULL)", [(0,)]),
        "pg_mq_set_queue_config(text,text,text)": (
            f"SELECT {s}.pg_mq_set_queue_config('q', 'retention', '1 hour') OPERATOR(pg_catalog.->>) 'retention'",
            [("1 hour",)],
        ),
        "pg_mq_stats(text)": (f"SELECT channel, depth FROM {s}.pg_mq_stats('q')", [("q", 1)]),
        "pg_mq_maintain(text,integer)": (f"SELECT {s}.pg_mq_maintain('q', 10)", [(0,)]),
        "amqp._send_transaction(bigint)": ("SELECT amqp._send_transaction(9223372036854775807) IS NOT NULL", None),
        "amqp.flush(integer,integer,boolean)": ("SELECT amqp.flush(1, 10, true)", [(0,)]),
        "amqp.retry_failed(integer)": ("SELECT amqp.retry_failed(1)", [(0,)]),
        "amqp.exchange_declare(integer,character varying,character varying,boolean,boolean,boolean)": (
            "SELECT amqp.exchange_declare(1, 'x', 'direct', false, false)",
            "error",  # the broker is down (port 1): an error, but no trap
        ),
        "amqp.autonomous_publish(integer,character varying,character varying,character varying,integer,"
        "character varying,character varying,character varying,jsonb,character varying,character varying,"
        "integer,boolean)": ("SELECT amqp.autonomous_publish(1, '', 'rk', 'm')", "error"),
        "amqp.publish(integer,character varying,character varying,character varying,integer,character varying,"
        "character varying,character varying,jsonb,character varying,character varying,integer,boolean)": (
            "SELECT amqp.publish(1, '', 'rk', 'probe')",  # commits: the trigger (and _send_transaction) fires
            [(True,)],
        ),
        "amqp._outbox_on_commit()": ("SELECT amqp.publish(1, '', 'rk2', 'probe2')", [(True,)]),
        "pg_mq_bridge_map(text,integer,text,text,integer)": (
            f"SELECT 1 FROM {s}.pg_mq_bridge_map('probe_map', 1, 'ex', NULL)",
            [(1,)],
        ),
        "pg_mq_bridge_unmap(text)": (f"SELECT {s}.pg_mq_bridge_unmap('probe_unmap')", [(True,)]),
        # a mapped channel: the lookup, the outbox record and the marker all run
        "pg_mq_notify(text,text)": (f"SELECT 1 FROM {s}.pg_mq_notify('probe_notify', 'rk3|probe3')", [(1,)]),
    }


SEARCH_PATHS = ["{role}, pg_catalog, pg_temp", "pg_temp, {role}, pg_catalog"]


@pytest.fixture
def prepared(db: psycopg.Connection) -> str:
    """Queues and a (dead) broker for the probes; returns the extension's schema."""
    for q in ("q", "probe_drop", "probe_purge"):
        db.execute("SELECT pg_mq_create_queue(%s, 'text')", (q,))
        db.execute("SELECT pg_mq_send_message(%s, 'x'::text)", (q,))
    db.execute("INSERT INTO amqp.broker (broker_id, host, port, connect_timeout) VALUES (1, '127.0.0.1', 1, 1)")
    db.execute("SELECT pg_mq_bridge_map('probe_notify', 1, '', NULL), pg_mq_bridge_map('probe_unmap', 1, '', NULL)")
    return db.execute(
        "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_message_queue'"
    ).fetchone()[0]


@pytest.mark.parametrize("path", SEARCH_PATHS)
def test_security_definer_functions_never_run_attacker_objects(db, prepared, attacker, path):
    role, conn, seen = attacker
    calls = _probe_calls(role, prepared)
    definers = [(oid, sig, is_trigger) for oid, sig, definer, _c, _k, is_trigger, _p in _functions(db) if definer]
    assert definers, "found no SECURITY DEFINER function"
    wrong: list[str] = []
    for oid, sig, _is_trigger in definers:
        if sig in calls:
            statement, expected = calls[sig]
        else:  # a function this test does not know yet: NULL arguments
            args = db.execute(
                "SELECT coalesce(string_agg('NULL::' || format_type(t, NULL), ', ' ORDER BY n), '')"
                " FROM unnest((SELECT proargtypes::oid[] FROM pg_proc WHERE oid = %s)) WITH ORDINALITY AS a(t, n)",
                (oid,),
            ).fetchone()[0]
            statement, expected = (
                f"SELECT {db.execute('SELECT %s::oid::regproc::text', (oid,)).fetchone()[0]}({args})",
                None,
            )
        conn.execute(f"SET search_path = {path.format(role=role)}")
        before = len(seen)
        try:
            cur = conn.execute(statement)
            got: object = cur.fetchall()
        except psycopg.Error as exc:
            got = "error"
            if "TRAP" in str(exc):
                wrong.append(f"{sig}: trap raised: {exc}")
        finally:
            conn.execute("RESET search_path")
        # A trap "as <attacker>" sprang in the attacker's own statement; inside a SECURITY
        # DEFINER function it would say "as" the function's owner.
        sprung = [m for m in seen[before:] if m.startswith("TRAP") and not m.endswith(f" as {role}")]
        if sprung:
            wrong.append(f"{sig}: {sprung}")
        if expected is not None and got != expected:
            wrong.append(f"{sig}: returned {got!r}, expected {expected!r}")
    assert wrong == []
    # ...and the attacker's publish really stayed in the outbox (the broker is down).
    kept = db.execute("SELECT message FROM amqp.outbox ORDER BY message").fetchall()
    assert kept == [("probe",), ("probe2",), ("probe3",)]


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM {s}.pg_mq_send_message('q', 'x'::pg_catalog.text)",
        "SELECT * FROM {s}.pg_mq_send_message('q', 'x')",
        "SELECT * FROM {s}.pg_mq_send_batch('q', ARRAY['a', 'b']::pg_catalog.text[])",
        "INSERT INTO {s}.pg_mq_queue_q (payload) VALUES ('direct')",  # the notify trigger alone
        "SELECT * FROM {s}.pg_mq_send_message('q', 'x'::pg_catalog.text, delay => '1 second', priority => 2,"
        " dedup_key => 'k', headers => '{{\"a\": 1}}')",
        "CALL {s}.pg_mq_maintenance_loop(pause => '0', runs => 1)",
        "CALL amqp.relay(run_for => '1 second', exit_when_empty => true)",
    ],
)
@pytest.mark.parametrize("path", SEARCH_PATHS)
def test_a_superuser_calling_the_unpinned_functions_never_runs_attacker_objects(
    db, prepared, attacker, path, statement
):
    """The functions without a SET clause run with the caller's search_path: a superuser
    whose path starts with a schema another role controls must still be safe."""
    role, _conn, seen = attacker
    db.add_notice_handler(lambda d: seen.append(d.message_primary or ""))
    before = len(seen)
    db.execute(f"SET search_path = {path.format(role=role)}")
    try:
        db.execute(statement.format(s=prepared))
    finally:
        db.execute("RESET search_path")
    assert [m for m in seen[before:] if m.startswith("TRAP")] == []


def test_a_publisher_cannot_forge_the_broker_lookup_through_session_settings(db, prepared, attacker):
    """publish() caches a broker's flags in a setting named after the broker: a publisher
    who sets it first must not skip the check that the broker exists."""
    _role, conn, _seen = attacker
    conn.execute("SET pg_message_queue.amqp_broker_424242 = '--'")
    conn.execute("BEGIN")
    try:
        with pytest.raises(psycopg.Error) as info:
            conn.execute("SELECT amqp.publish(424242, '', 'rk', 'to nowhere')")
        assert info.value.sqlstate == "42704"
    finally:
        conn.execute("ROLLBACK")
