"""Who may use which object of pg_message_queue_pgq: PgQ 3's own grants (its
structure/grants.ini) as an explicit table, and the attacks a role without them tries."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from helpers import as_role, fails

# Every function of schema pgq and who may EXECUTE it (besides the owner). A new function
# fails test_every_pgq_function_is_classified until it is added here.
PUBLIC = {
    "pgq.seq_getval(text)", "pgq.get_queue_info()", "pgq.get_queue_info(text)", "pgq.get_consumer_info()",
    "pgq.get_consumer_info(text)", "pgq.get_consumer_info(text,text)", "pgq.quote_fqname(text)", "pgq.version()",
    "pgq._pg_mq_reraise(text,text)",
    # the triggers' Python half runs as the role changing the table, which needs pgq_writer
    # for pgq.insert_event, exactly as with PgQ's C triggers (test_pgq_triggers)
    "pgq._pg_mq_trigger(text,oid,text,text,text,text[],text,text,text,text,text,text)",
}  # fmt: skip
READER = {
    "pgq.batch_event_sql(bigint)", "pgq._pg_mq_batch_event_sql(bigint)", "pgq.batch_event_tables(bigint)",
    "pgq._pg_mq_batch_event_tables(bigint)",
    "pgq.find_tick_helper(integer,bigint,timestamp with time zone,bigint,bigint,interval)",
    "pgq.register_consumer(text,text)", "pgq.register_consumer_at(text,text,bigint)",
    "pgq._pg_mq_register_consumer_at(text,text,bigint)", "pgq.unregister_consumer(text,text)",
    "pgq.next_batch_info(text,text)", "pgq.next_batch(text,text)",
    "pgq.next_batch_custom(text,text,interval,integer,interval)",
    "pgq._pg_mq_next_batch_custom(text,text,interval,integer,interval)", "pgq.get_batch_events(bigint)",
    "pgq.get_batch_info(bigint)", "pgq.get_batch_cursor(bigint,text,integer,text)",
    "pgq.get_batch_cursor(bigint,text,integer)", "pgq._pg_mq_batch_cursor_sql(bigint,text,text)",
    "pgq.event_retry(bigint,bigint,timestamp with time zone)", "pgq.event_retry(bigint,bigint,integer)",
    "pgq._pg_mq_event_retry(bigint,bigint,timestamp with time zone)", "pgq.batch_retry(bigint,integer)",
    "pgq._pg_mq_batch_retry(bigint,integer)", "pgq.force_tick(text)", "pgq.finish_batch(bigint)",
}  # fmt: skip
WRITER = {
    "pgq.insert_event(text,text,text)", "pgq.insert_event(text,text,text,text,text,text,text)",
    "pgq._pg_mq_insert_event(text,text,text,text,text,text,text)", "pgq._pg_mq_insert_problem(text)",
    "pgq.current_event_table(text)", "pgq._pg_mq_current_event_table(text)",
    "pgq.logutriga()", "pgq.sqltriga()", "pgq.jsontriga()",
}  # fmt: skip
ADMIN = {
    "pgq.ticker(text,bigint,timestamp with time zone,bigint)",
    "pgq._pg_mq_ticker_external(text,bigint,timestamp with time zone,bigint)", "pgq.ticker(text)",
    "pgq._pg_mq_ticker(text)", "pgq.ticker()", "pgq._pg_mq_ticker_all()", "pgq.maint_retry_events()",
    "pgq._pg_mq_maint_retry_events()", "pgq.maint_rotate_tables_step1(text)",
    "pgq._pg_mq_maint_rotate_tables_step1(text)", "pgq.maint_rotate_tables_step2()", "pgq.maint_tables_to_vacuum()",
    "pgq.maint_operations()", "pgq.upgrade_schema()", "pgq.grant_perms(text)", "pgq._pg_mq_grant_perms(text)",
    "pgq._grant_perms_from(text,text,text,text)", "pgq.tune_storage(text)", "pgq.seq_setval(text,bigint)",
    "pgq.create_queue(text)", "pgq._pg_mq_create_queue(text)", "pgq._pg_mq_rebuild_insert()",
    "pgq.drop_queue(text,boolean)",
    "pgq.drop_queue(text)", "pgq._pg_mq_drop_queue(text,boolean)", "pgq.set_queue_config(text,text,text)",
    "pgq._pg_mq_set_queue_config(text,text,text)",
    "pgq.insert_event_raw(text,bigint,timestamp with time zone,integer,integer,text,text,text,text,text,text)",
    "pgq._pg_mq_insert_event_raw(text,bigint,timestamp with time zone,integer,integer,text,text,text,text,text,text)",
    "pgq.event_retry_raw(text,text,timestamp with time zone,bigint,timestamp with time zone,integer,text,text,text,"
    "text,text,text)",
    "pgq._pg_mq_event_retry_raw(text,text,timestamp with time zone,bigint,timestamp with time zone,integer,text,text,"
    "text,text,text,text)",
    "pgq.run_ticker(interval,interval,interval)",
}  # fmt: skip
POLICY = {"PUBLIC": PUBLIC, "pgq_reader": READER, "pgq_writer": WRITER, "pgq_admin": ADMIN}


def _granted(pgq: psycopg.Connection) -> dict[str, set[str]]:
    rows = pgq.execute(
        "SELECT p.oid::regprocedure::text,"
        " CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END"
        " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " LEFT JOIN LATERAL aclexplode(p.proacl) a ON a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner"
        " WHERE n.nspname = 'pgq'"
    ).fetchall()
    out: dict[str, set[str]] = {}
    for fn, grantee in rows:
        out.setdefault(fn, set())
        if grantee is not None:
            out[fn].add(grantee)
    return out


def test_every_pgq_function_is_classified_and_granted_as_pgq_grants_it(pgq: psycopg.Connection) -> None:
    granted = _granted(pgq)
    classified = set().union(*POLICY.values())
    assert set(granted) - classified == set(), "classify these in POLICY"
    assert classified - set(granted) == set(), "gone from the catalog"
    for fn, grantees in granted.items():
        expected = {role for role, fns in POLICY.items() if fn in fns}
        assert grantees == expected, fn


@pytest.fixture
def login(pgq: psycopg.Connection, pgq_dsn: str) -> Iterator[Callable[[str | None], psycopg.Connection]]:
    made: list[tuple[str, psycopg.Connection]] = []

    def _make(member_of: str | None) -> psycopg.Connection:
        role = f"pgqp_{uuid.uuid4().hex[:8]}"
        pgq.execute(f"CREATE ROLE {role} LOGIN" + (f" IN ROLE {member_of}" if member_of else ""))
        conn = psycopg.connect(as_role(pgq_dsn, role), autocommit=True)
        made.append((role, conn))
        return conn

    yield _make
    for role, conn in made:
        conn.close()
        pgq.execute(f"DROP OWNED BY {role}")
        pgq.execute(f"DROP ROLE {role}")


def test_a_role_without_pgq_roles_can_neither_produce_nor_consume_nor_read_events(
    pgq: psycopg.Connection, login: Callable[[str | None], psycopg.Connection]
) -> None:
    pgq.execute("SELECT pgq.create_queue('q')")
    pgq.execute("SELECT pgq.register_consumer('q', 'c')")
    pgq.execute("SELECT pgq.insert_event('q', 't', 'secret')")
    stranger = login(None)
    for sql in (
        "SELECT pgq.insert_event('q', 't', 'forged')",
        "SELECT pgq._pg_mq_insert_event('q', 't', 'forged', NULL, NULL, NULL, NULL)",
        "SELECT pgq.next_batch('q', 'c')",
        "SELECT pgq.create_queue('mine')",
        "SELECT pgq.drop_queue('q', true)",
        "SELECT * FROM pgq.event_1_0",
        "SELECT * FROM pgq.retry_queue",
        "INSERT INTO pgq.event_1_0 (ev_id, ev_time, ev_data) VALUES (99, now(), 'forged')",
        "UPDATE pgq.subscription SET sub_last_tick = 1",
    ):
        fails(stranger, sql, sqlstate="42501", match="permission denied")
    # What PgQ lets everyone see: queue and consumer state.
    assert stranger.execute("SELECT queue_name FROM pgq.get_queue_info()").fetchall() == [("q",)]


def test_a_writer_produces_but_cannot_consume_or_administer(
    pgq: psycopg.Connection, login: Callable[[str | None], psycopg.Connection]
) -> None:
    pgq.execute("SELECT pgq.create_queue('q')")
    writer = login("pgq_writer")
    assert writer.execute("SELECT pgq.insert_event('q', 't', 'x')").fetchone()[0] == 1
    fails(writer, "SELECT pgq.register_consumer('q', 'c')", sqlstate="42501", match="permission denied")
    fails(writer, "SELECT pgq.ticker()", sqlstate="42501", match="permission denied")
    fails(writer, "SELECT * FROM pgq.event_1_0", sqlstate="42501", match="permission denied")


def test_a_reader_consumes_without_table_privileges(
    pgq: psycopg.Connection, login: Callable[[str | None], psycopg.Connection]
) -> None:
    pgq.execute("SELECT pgq.create_queue('q')")
    reader = login("pgq_reader")
    assert reader.execute("SELECT pgq.register_consumer('q', 'c')").fetchone()[0] == 1
    ev = pgq.execute("SELECT pgq.insert_event('q', 't', 'x')").fetchone()[0]
    pgq.execute("SELECT pgq.force_tick('q')")
    pgq.execute("SELECT pgq.ticker()")
    batch = reader.execute("SELECT pgq.next_batch('q', 'c')").fetchone()[0]
    assert reader.execute("SELECT ev_id, ev_data FROM pgq.get_batch_events(%s)", (batch,)).fetchall() == [(ev, "x")]
    assert reader.execute("SELECT pgq.event_retry(%s, %s, 60)", (batch, ev)).fetchone()[0] == 1
    assert reader.execute("SELECT pgq.finish_batch(%s)", (batch,)).fetchone()[0] == 1
    fails(reader, "SELECT pgq.insert_event('q', 't', 'x')", sqlstate="42501", match="permission denied")
    fails(reader, "SELECT pgq.create_queue('q2')", sqlstate="42501", match="permission denied")


def test_hostile_queue_and_consumer_names_are_data(pgq: psycopg.Connection) -> None:
    name = 'q"; DROP TABLE pgq.queue; --' + "é" * 40
    assert pgq.execute("SELECT pgq.create_queue(%s)", (name,)).fetchone()[0] == 1
    assert pgq.execute("SELECT pgq.register_consumer(%s, %s)", (name, "c'); --")).fetchone()[0] == 1
    pgq.execute("SELECT pgq.insert_event(%s, 't', 'x')", (name,))
    pgq.execute("SELECT pgq.force_tick(%s)", (name,))
    pgq.execute("SELECT pgq.ticker()")
    batch = pgq.execute("SELECT pgq.next_batch(%s, %s)", (name, "c'); --")).fetchone()[0]
    assert [r[0] for r in pgq.execute("SELECT ev_data FROM pgq.get_batch_events(%s)", (batch,))] == ["x"]
    assert pgq.execute("SELECT pgq.current_event_table(%s)", (name,)).fetchone()[0] == "pgq.event_1_0"


def test_insert_event_runs_none_of_the_callers_operators(
    pgq: psycopg.Connection, login: Callable[[str | None], psycopg.Connection]
) -> None:
    # insert_event is SECURITY DEFINER without a SET clause (its hot path): an operator the
    # caller puts first on its search_path must not run with the definer's rights.
    pgq.execute("SELECT pgq.create_queue('q')")
    writer = login("pgq_writer")
    role = writer.execute("SELECT current_user").fetchone()[0]
    pgq.execute(f"CREATE SCHEMA evil AUTHORIZATION {role}")
    for types in ("integer, integer", "text, text"):
        left, right = types.split(", ")
        writer.execute(
            f"CREATE FUNCTION evil.eq({types}) RETURNS boolean LANGUAGE plpgsql AS"
            " $$BEGIN RAISE EXCEPTION 'hijacked by %', current_user; END$$"
        )
        writer.execute(f"CREATE OPERATOR evil.= (LEFTARG = {left}, RIGHTARG = {right}, FUNCTION = evil.eq)")
    writer.execute("SET search_path = evil, pg_catalog, public")
    assert writer.execute("SELECT pgq.insert_event('q', 't', 'x')").fetchone()[0] == 1
    fails(writer, "SELECT pgq.insert_event('nope', 't', 'x')", sqlstate="XX000", match="^No such queue$")
