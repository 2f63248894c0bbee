"""pgq.logutriga, pgq.sqltriga and pgq.jsontriga, differentially: every scenario runs
its statements against real PgQ 3 (Debian's postgresql-15-pgq3, in its own database of
the test server) and against ours (pg_message_queue_pgq), and the outcome must be the
same: for each statement, success or the same SQLSTATE and message; then the same
events (ev_type, ev_data, ev_extra1..4, in order), and the same rows left in the table
(BEFORE triggers with SKIP drop them). A few scenarios also pin real PgQ's result, so a
scenario that happens to produce nothing on both sides cannot pass unnoticed.

Only ours may skip (pg_message_queue_pgq not installed); real PgQ missing is an error.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

_EXTENSION = {"pgq3": "pgq", "ours": "pg_message_queue_pgq"}
_counter = itertools.count()
FIELDS = "ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4"


@pytest.fixture(scope="module")
def templates(pg_server) -> Iterator[dict[str, str]]:
    made = {}
    with psycopg.connect(pg_server.dsn_for("postgres"), autocommit=True) as conn:
        ours = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_message_queue_pgq'").fetchone()
    if ours is None:
        pytest.skip("the companion extension pg_message_queue_pgq is not installed")
    for name, extension in _EXTENSION.items():
        template = f"pgqtrig_template_{name}"
        pg_server.admin(f"DROP DATABASE IF EXISTS {template}")
        pg_server.admin(f"CREATE DATABASE {template}")
        with psycopg.connect(pg_server.dsn_for(template), autocommit=True) as conn:
            conn.execute(f"CREATE EXTENSION {extension} CASCADE")
            conn.execute("SELECT pgq.create_queue('q')")
            conn.execute("SELECT pgq.register_consumer('q', 'c')")
        made[name] = template
    yield made
    for template in made.values():
        pg_server.admin(f"DROP DATABASE IF EXISTS {template} WITH (FORCE)")


@pytest.fixture
def pair(pg_server, templates: dict[str, str]) -> Iterator[dict[str, str]]:
    """A fresh database per backend, each with queue q and consumer c."""
    dbs = {}
    n = next(_counter)
    for name, template in templates.items():
        db = f"pgqtrig_{n}_{name}"
        pg_server.admin(f"CREATE DATABASE {db} TEMPLATE {template}")
        dbs[name] = db
    yield {name: pg_server.dsn_for(db) for name, db in dbs.items()}
    for db in dbs.values():
        pg_server.admin(f"DROP DATABASE {db} WITH (FORCE)")


def run(dsn: str, statements: list[str], table: str | None = "t") -> dict[str, Any]:
    """Run ``statements`` one by one (autocommit); what each did, then the queue's events
    and the table's rows."""
    outcome: list[Any] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for sql in statements:
            try:
                conn.execute(sql)
                outcome.append("ok")
            except psycopg.Error as exc:
                outcome.append((exc.sqlstate, exc.diag.message_primary))
        conn.execute("SELECT pgq.force_tick('q')")
        conn.execute("SELECT pgq.ticker()")
        got: list[tuple[Any, ...]] = []
        while (batch := conn.execute("SELECT pgq.next_batch('q', 'c')").fetchone()[0]) is not None:
            got.extend(
                conn.execute(f"SELECT {FIELDS} FROM pgq.get_batch_events(%s) ORDER BY ev_id", (batch,)).fetchall()
            )
            conn.execute("SELECT pgq.finish_batch(%s)", (batch,))
        rows = conn.execute(f"SELECT x::text FROM {table} x ORDER BY 1").fetchall() if table else None
    return {"statements": outcome, "events": got, "rows": rows}


def same(pair: dict[str, str], statements: list[str], table: str | None = "t") -> dict[str, Any]:
    """The outcome on real PgQ, asserted identical on ours."""
    theirs = run(pair["pgq3"], statements, table)
    mine = run(pair["ours"], statements, table)
    assert mine["statements"] == theirs["statements"]
    assert mine["events"] == theirs["events"]
    assert mine["rows"] == theirs["rows"]
    return theirs


TRIGGERS = ("logutriga", "sqltriga", "jsontriga")
BASIC_DML = [
    "INSERT INTO t VALUES (1, 'one', NULL), (2, 'two words & more', 'x=y')",
    "UPDATE t SET name = 'uno' WHERE id = 1",
    "UPDATE t SET name = name WHERE id = 2",  # a no-op update is still an event
    "UPDATE t SET note = NULL WHERE id = 2",
    "DELETE FROM t WHERE id = 1",
]


@pytest.mark.parametrize("trig", TRIGGERS)
def test_insert_update_delete(pair, trig) -> None:
    got = same(
        pair,
        [
            "CREATE TABLE t (id int PRIMARY KEY, name text, note text)",
            f"CREATE TRIGGER tg AFTER INSERT OR UPDATE OR DELETE ON t FOR EACH ROW EXECUTE FUNCTION pgq.{trig}('q')",
            *BASIC_DML,
        ],
    )
    assert all(s == "ok" for s in got["statements"])
    assert len(got["events"]) == 6
    if trig == "logutriga":
        assert got["events"][0] == ("I:id", "id=1&name=one&note", "public.t", None, None, None)
    if trig == "sqltriga":
        assert got["events"][5] == ("D", "id='1'", "public.t", None, None, None)


HOSTILE = '"Sch ém"."Tåble ""q"""'


@pytest.mark.parametrize("trig", TRIGGERS)
def test_composite_key_mixed_case_unicode_names(pair, trig) -> None:
    same(
        pair,
        [
            'CREATE SCHEMA "Sch ém"',
            f'CREATE TABLE {HOSTILE} ("Kéy" int, "b,c" text, "select" text, ünï text, '
            '"spaced key" date, PRIMARY KEY ("spaced key", "Kéy"))',
            f"CREATE TRIGGER tg AFTER INSERT OR UPDATE OR DELETE ON {HOSTILE} FOR EACH ROW "
            f"EXECUTE FUNCTION pgq.{trig}('q')",
            f"INSERT INTO {HOSTILE} VALUES (1, 'a''b\\c', 'É \"quoted\"', E'tab\\there\\nline', '2024-02-29')",
            f"UPDATE {HOSTILE} SET ünï = '%&=+?'",
            f"DELETE FROM {HOSTILE}",
        ],
        table=HOSTILE,
    )


@pytest.mark.parametrize("trig", TRIGGERS)
def test_types_in_session_settings(pair, trig) -> None:
    same(
        pair,
        [
            "CREATE DOMAIN posint AS int CHECK (VALUE > 0)",
            "CREATE TYPE mood AS ENUM ('sad', 'happy')",
            "CREATE TABLE t (id int8 PRIMARY KEY, n numeric, f float8, r real, b bool, by bytea, a int[], "
            "ta text[], j json, jb jsonb, ts timestamp, tz timestamptz, d date, tm time, iv interval, "
            "sm int2, dom posint, m mood, u uuid, inet inet, pt point, c char(3))",
            f"CREATE TRIGGER tg AFTER INSERT OR UPDATE OR DELETE ON t FOR EACH ROW EXECUTE FUNCTION pgq.{trig}('q')",
            "SET TimeZone = 'America/New_York'",
            "SET DateStyle = 'SQL, DMY'",
            "INSERT INTO t VALUES (9007199254740993, 1.50, 0.1, 1.5e30, true, '\\x00ff27', '{1,NULL,3}', "
            """'{"a b",NULL,"c\\"d"}', '{"k": [1, "x"]}', '{"k": [1, "x"]}', '2024-01-02 03:04:05.678', """
            "'2024-07-01 12:00:00+00', '2024-01-02', '10:11:12', '1 day 2 hours', -7, 5, 'happy', "
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '10.0.0.1/8', '(1,2)', 'ab')",
            "INSERT INTO t (id, ts, tz, d) VALUES (2, 'infinity', '-infinity', 'infinity')",
            "INSERT INTO t (id) VALUES (3)",
            "SET DateStyle = 'Postgres, MDY'",
            "UPDATE t SET n = 1.500, b = false, tz = tz + interval '1 hour' WHERE id = 9007199254740993",
            "DELETE FROM t WHERE id = 2",
        ],
    )


@pytest.mark.parametrize("trig", TRIGGERS)
def test_pkey_option_and_table_without_key(pair, trig) -> None:
    same(
        pair,
        [
            "CREATE TABLE t (a int, b text, c text)",
            f"CREATE TRIGGER tg AFTER INSERT OR UPDATE OR DELETE ON t FOR EACH ROW EXECUTE FUNCTION pgq.{trig}('q')",
            "INSERT INTO t VALUES (1, 'x', 'y')",
            "UPDATE t SET c = 'z'",  # no key: PgQ refuses
            "DELETE FROM t",
            "DROP TRIGGER tg ON t",
            f"CREATE TRIGGER tg2 AFTER INSERT OR UPDATE OR DELETE ON t FOR EACH ROW "
            f"EXECUTE FUNCTION pgq.{trig}('q', 'pkey=a,b')",
            "UPDATE t SET c = 'w'",
            "UPDATE t SET b = 'changed'",  # a key column changed: PgQ refuses
            "DELETE FROM t",
        ],
    )


@pytest.mark.parametrize("trig", TRIGGERS)
def test_ignore_columns(pair, trig) -> None:
    same(
        pair,
        [
            "CREATE TABLE t (id int PRIMARY KEY, val text, seen timestamptz, hits int)",
            f"CREATE TRIGGER tg AFTER INSERT OR UPDATE OR DELETE ON t FOR EACH ROW "
            f"EXECUTE FUNCTION pgq.{trig}('q', 'ignore=seen, hits')",
            "INSERT INTO t VALUES (1, 'a', now(), 1)",
            "UPDATE t SET hits = hits + 1",  # only ignored columns changed: no event
            "UPDATE t SET val = 'b', hits = 5",
            "UPDATE t SET val = val",
            "DELETE FROM t",
        ],
    )


@pytest.mark.parametrize("trig", TRIGGERS)
def test_before_skip_and_before_without_skip(pair, trig) -> None:
    got = same(
        pair,
        [
            "CREATE TABLE t (id int PRIMARY KEY, v text)",
            "CREATE TABLE t_skip (id int PRIMARY KEY, v text)",
            f"CREATE TRIGGER tg BEFORE INSERT OR UPDATE OR DELETE ON t FOR EACH ROW EXECUTE FUNCTION pgq.{trig}('q')",
            f"CREATE TRIGGER tg BEFORE INSERT OR UPDATE OR DELETE ON t_skip FOR EACH ROW "
            f"EXECUTE FUNCTION pgq.{trig}('q', 'SKIP')",
            "INSERT INTO t VALUES (1, 'kept')",
            "INSERT INTO t_skip VALUES (1, 'skipped')",
            "UPDATE t SET v = 'changed'",
            "DELETE FROM t",
            "CREATE TABLE t_after (id int PRIMARY KEY)",
            f"CREATE TRIGGER tg AFTER INSERT ON t_after FOR EACH ROW EXECUTE FUNCTION pgq.{trig}('q', 'SKIP')",
            "INSERT INTO t_after VALUES (1)",
        ],
        table="t_skip",
    )
    assert got["rows"] == []
    assert got["statements"][-1] == ("XX000", "SKIP does not work in AFTER trigger.")


@pytest.mark.parametrize("trig", TRIGGERS)
def test_backup(pair, trig) -> None:
    same(
        pair,
        [
            "CREATE TABLE t (id int PRIMARY KEY, v text, ts timestamp)",
            f"CREATE TRIGGER tg AFTER INSERT OR UPDATE OR DELETE ON t FOR EACH ROW "
            f"EXECUTE FUNCTION pgq.{trig}('q', 'backup')",
            "INSERT INTO t VALUES (1, 'old', '2020-01-01 00:00')",
            "UPDATE t SET v = 'new', ts = NULL",
            "DELETE FROM t",
        ],
    )


@pytest.mark.parametrize("trig", TRIGGERS)
def test_truncate(pair, trig) -> None:
    got = same(
        pair,
        [
            "CREATE TABLE t (id int PRIMARY KEY)",
            f"CREATE TRIGGER tr AFTER TRUNCATE ON t FOR EACH STATEMENT EXECUTE FUNCTION pgq.{trig}('q')",
            "INSERT INTO t VALUES (1)",
            "TRUNCATE t",
            f"CREATE TRIGGER tr2 BEFORE TRUNCATE ON t FOR EACH STATEMENT EXECUTE FUNCTION pgq.{trig}('q', 'backup')",
            "TRUNCATE t",
            "DROP TRIGGER tr2 ON t",
            f"CREATE TRIGGER tr3 AFTER TRUNCATE ON t FOR EACH STATEMENT "
            f"EXECUTE FUNCTION pgq.{trig}('q', 'ev_extra2=1')",
            "TRUNCATE t",
            "DROP TRIGGER tr3 ON t",
            f"CREATE TRIGGER st AFTER INSERT ON t FOR EACH STATEMENT EXECUTE FUNCTION pgq.{trig}('q')",
            "INSERT INTO t VALUES (2)",
        ],
    )
    assert len(got["events"]) == 1


@pytest.mark.parametrize("trig", TRIGGERS)
def test_when_and_field_overrides(pair, trig) -> None:
    same(
        pair,
        [
            'CREATE TABLE t (id int PRIMARY KEY, amount numeric, "Kind" text, flag bool, tags int[])',
            f"CREATE TRIGGER tg AFTER INSERT OR UPDATE OR DELETE ON t FOR EACH ROW EXECUTE FUNCTION pgq.{trig}("
            "'q', 'when=amount > 10 or amount is null', 'ev_extra2=amount * 2', 'ev_extra3=flag', "
            "'ev_extra4=tags', 'ev_type=''custom:'' || id')",
            "INSERT INTO t VALUES (1, 5, 'a', true, '{1,2}')",
            "INSERT INTO t VALUES (2, 50, 'b', false, '{}')",
            "INSERT INTO t VALUES (3, NULL, NULL, NULL, NULL)",
            "UPDATE t SET amount = amount + 100",
            "DELETE FROM t",
        ],
    )


@pytest.mark.parametrize("trig", TRIGGERS)
def test_magic_columns(pair, trig) -> None:
    same(
        pair,
        [
            "CREATE TABLE t (id int PRIMARY KEY, v text, _pgq_ev_extra3 text, _pgq_ev_type text)",
            f"CREATE TRIGGER tg AFTER INSERT OR UPDATE ON t FOR EACH ROW EXECUTE FUNCTION pgq.{trig}('q')",
            "INSERT INTO t VALUES (1, 'a', 'x3', 'my-type')",
            "UPDATE t SET v = 'b', _pgq_ev_type = NULL",
        ],
    )


@pytest.mark.parametrize("trig", TRIGGERS)
def test_dropped_and_added_columns(pair, trig) -> None:
    same(
        pair,
        [
            "CREATE TABLE t (id int, gone text, v text, PRIMARY KEY (id))",
            f"CREATE TRIGGER tg AFTER INSERT OR UPDATE OR DELETE ON t FOR EACH ROW EXECUTE FUNCTION pgq.{trig}('q')",
            "INSERT INTO t VALUES (1, 'x', 'a')",
            "ALTER TABLE t DROP COLUMN gone",
            "INSERT INTO t VALUES (2, 'b')",
            "ALTER TABLE t ADD COLUMN added bool DEFAULT true",
            "UPDATE t SET v = v || '!'",
            "DELETE FROM t WHERE id = 1",
        ],
    )


@pytest.mark.parametrize("trig", TRIGGERS)
def test_equality_is_the_types(pair, trig) -> None:
    """An update to an equal value (1.50 = 1.5, 'ABC' = 'abc' in citext, whose operator is
    not in pg_catalog) is no change: PgQ compares with the type's equality operator."""
    same(
        pair,
        [
            "CREATE EXTENSION IF NOT EXISTS citext",
            "CREATE TABLE t (id citext PRIMARY KEY, n numeric, f float8, c citext, a int[], j json)",
            f"CREATE TRIGGER tg AFTER INSERT OR UPDATE OR DELETE ON t FOR EACH ROW "
            f"EXECUTE FUNCTION pgq.{trig}('q', 'ignore=n,f,c,a,j')",
            "INSERT INTO t VALUES ('Key', 1.5, 0, 'abc', '{1}', '{}')",
            "UPDATE t SET n = 1.50, f = -0.0, c = 'ABC'",  # all equal: an event for no change
            "UPDATE t SET id = 'KEY'",  # equal key: not a key change
            "UPDATE t SET a = '{1}', j = '{ }'",  # arrays and json by their text
            "UPDATE t SET c = 'abd'",
        ],
    )


@pytest.mark.parametrize("trig", TRIGGERS)
def test_expressions_follow_a_dropped_column(pair, trig) -> None:
    """when= / ev_*= column references are bound anew after the table changed."""
    same(
        pair,
        [
            "CREATE TABLE t (id int PRIMARY KEY, a int, b int)",
            f"CREATE TRIGGER tg AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION pgq.{trig}("
            "'q', 'when=b > 1', 'ev_extra3=b')",
            "INSERT INTO t VALUES (1, 10, 20)",
            "ALTER TABLE t DROP COLUMN a",
            "INSERT INTO t VALUES (2, 30)",
            "INSERT INTO t VALUES (3, 0)",
        ],
    )


def test_columns_added_in_the_same_query_string(pair) -> None:
    same(
        pair,
        [
            "CREATE TABLE t (id int PRIMARY KEY, v text)",
            "CREATE TRIGGER tg AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION pgq.logutriga('q')",
            "INSERT INTO t VALUES (1, 'a'); ALTER TABLE t ADD COLUMN extra int DEFAULT 7;"
            " INSERT INTO t VALUES (2, 'b')",
        ],
    )


ERROR_TRIGGERS = [
    "FOR EACH ROW EXECUTE FUNCTION pgq.{trig}()",
    "FOR EACH ROW EXECUTE FUNCTION pgq.{trig}('q', 'bogus')",
    "FOR EACH ROW EXECUTE FUNCTION pgq.{trig}('q', 'deny')",
    "FOR EACH ROW EXECUTE FUNCTION pgq.{trig}('q', 'when=id')",
    "FOR EACH ROW EXECUTE FUNCTION pgq.{trig}('q', 'when=null::bool')",
    "FOR EACH ROW EXECUTE FUNCTION pgq.{trig}('q', 'when=nosuchcol > 1')",
    "FOR EACH ROW EXECUTE FUNCTION pgq.{trig}('q', 'ev_extra1=''unterminated')",
    "FOR EACH ROW EXECUTE FUNCTION pgq.{trig}('q', 'ev_extra1=id from generate_series(1, 2)')",
    "FOR EACH ROW EXECUTE FUNCTION pgq.{trig}('nosuchqueue')",
    "FOR EACH STATEMENT EXECUTE FUNCTION pgq.{trig}('q')",
]


@pytest.mark.parametrize("trig", TRIGGERS)
@pytest.mark.parametrize("spec", ERROR_TRIGGERS)
def test_errors(pair, trig, spec) -> None:
    got = same(
        pair,
        [
            "CREATE TABLE t (id int PRIMARY KEY, v text)",
            f"CREATE TRIGGER tg AFTER INSERT OR UPDATE OR DELETE ON t {spec.format(trig=trig)}",
            "INSERT INTO t VALUES (1, 'a')",
        ],
    )
    assert got["statements"][2] != "ok"


@pytest.mark.parametrize("trig", TRIGGERS)
def test_replication_role(pair, trig) -> None:
    same(
        pair,
        [
            "CREATE TABLE t (id int PRIMARY KEY)",
            f"CREATE TRIGGER tg AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION pgq.{trig}('q')",
            f"CREATE TRIGGER tgd AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION pgq.{trig}('q', 'deny')",
            "ALTER TABLE t DISABLE TRIGGER tgd",
            "SET session_replication_role = 'local'",
            "INSERT INTO t VALUES (1)",
            "SET session_replication_role = 'replica'",
            "INSERT INTO t VALUES (2)",
            "SET session_replication_role = 'origin'",
            "INSERT INTO t VALUES (3)",
        ],
    )


def test_runs_as_the_role_changing_the_table(pair) -> None:
    """Not SECURITY DEFINER (as in PgQ): the role changing the table needs pgq_writer to
    insert the event, and a when= expression runs with its rights."""
    start = [
        "DO $$BEGIN CREATE ROLE pgqtrig_user; EXCEPTION WHEN duplicate_object THEN END$$",  # roles are shared
        "REVOKE pgq_writer FROM pgqtrig_user",
    ]
    got = same(
        pair,
        [
            *start,
            "CREATE TABLE t (id int PRIMARY KEY)",
            "CREATE TABLE secret (x int)",
            "GRANT INSERT ON t TO pgqtrig_user",
            "CREATE TRIGGER tg AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION pgq.logutriga('q')",
            "SET ROLE pgqtrig_user",
            "INSERT INTO t VALUES (1)",
            "RESET ROLE",
            "GRANT pgq_writer TO pgqtrig_user",
            "SET ROLE pgqtrig_user",
            "INSERT INTO t VALUES (2)",
            "RESET ROLE",
            "CREATE TRIGGER tg2 AFTER INSERT ON t FOR EACH ROW "
            "EXECUTE FUNCTION pgq.logutriga('q', 'when=(select count(*) from secret) = 0')",
            "SET ROLE pgqtrig_user",
            "INSERT INTO t VALUES (3)",
            "RESET ROLE",
            "REVOKE pgq_writer FROM pgqtrig_user",
        ],
    )
    assert got["statements"][7] == ("42501", "permission denied for function insert_event")
    assert got["statements"][-3] == ("42501", "permission denied for table secret")
