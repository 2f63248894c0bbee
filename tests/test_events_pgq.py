"""Change events into a PgQ queue: pg_mq_watch_pgq, with the companion pg_message_queue_pgq
(consumed through pgq.next_batch / pgq.get_batch_events after pgq.ticker)."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from helpers import as_role, fails

WATCH_PGQ = "pg_mq_watch_pgq(regclass, text, text[], text, text[], text[], text[])"


def tick(conn: psycopg.Connection, queue: str = "q") -> None:
    conn.execute("SELECT pgq.force_tick(%s)", (queue,))
    conn.execute("SELECT pgq.ticker(%s)", (queue,))


def drain(conn: psycopg.Connection, consumer: str = "c", queue: str = "q") -> list[tuple]:
    """Every event ready for ``consumer``: (ev_type, ev_data as JSON, ev_extra1..4), in ev_id order."""
    tick(conn, queue)
    got: list[tuple] = []
    while True:
        batch = conn.execute("SELECT pgq.next_batch(%s, %s)", (queue, consumer)).fetchone()[0]
        if batch is None:
            return got
        rows = conn.execute(
            "SELECT ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4"
            " FROM pgq.get_batch_events(%s) ORDER BY ev_id",
            (batch,),
        ).fetchall()
        got += [(t, json.loads(d), e1, e2, e3, e4) for t, d, e1, e2, e3, e4 in rows]
        conn.execute("SELECT pgq.finish_batch(%s)", (batch,))


@pytest.fixture
def q(pgq: psycopg.Connection) -> psycopg.Connection:
    pgq.execute("SELECT pgq.create_queue('q')")
    pgq.execute("SELECT pgq.register_consumer('q', 'c')")
    pgq.execute("CREATE TABLE orders (id int PRIMARY KEY, item text, qty int)")
    return pgq


@pytest.fixture
def roles(pgq):
    made: list[str] = []

    def _make() -> str:
        name = f"evq_{uuid.uuid4().hex[:8]}"
        pgq.execute(f"CREATE ROLE {name} LOGIN")
        made.append(name)
        return name

    yield _make
    for name in made:
        pgq.execute(f"DROP OWNED BY {name}")
        pgq.execute(f"DROP ROLE {name}")


def test_each_operation_arrives_in_order_with_its_fields(q):
    watch_id = q.execute("SELECT pg_mq_watch_pgq('orders', 'q')").fetchone()[0]
    assert watch_id > 0
    assert q.execute("SELECT kind, target, payload FROM pg_mq_watches").fetchall() == [("pgq", "q", "row")]
    q.execute("INSERT INTO orders VALUES (1, 'apple', 2), (2, 'pear', 1)")
    q.execute("UPDATE orders SET qty = 5 WHERE id = 1")
    with q.transaction():
        q.execute("DELETE FROM orders WHERE id = 2")
        q.execute("TRUNCATE orders")
    got = drain(q)
    assert [(t, d["op"], d["pk"]) for t, d, *_ in got] == [
        ("INSERT", "INSERT", {"id": 1}), ("INSERT", "INSERT", {"id": 2}), ("UPDATE", "UPDATE", {"id": 1}),
        ("DELETE", "DELETE", {"id": 2}), ("TRUNCATE", "TRUNCATE", None),
    ]  # fmt: skip
    for _t, data, extra1, extra2, extra3, extra4 in got:
        assert extra1 == "public.orders"
        assert extra2 == data["event_id"] == f"{data['txid']}:{data['seq']}"
        assert extra3 is None and extra4 is None
    assert got[0][1]["row"] == {"id": 1, "item": "apple", "qty": 2}
    assert got[2][1]["changed"] == ["qty"] and got[2][1]["old"] == {"qty": 2}
    assert got[3][1]["seq"] == 1 and got[4][1]["seq"] == 2  # one transaction: numbered in it
    assert drain(q) == []


def test_rollback_emits_nothing(q):
    q.execute("SELECT pg_mq_watch_pgq('orders', 'q')")
    with pytest.raises(psycopg.errors.DivisionByZero), q.transaction():
        q.execute("INSERT INTO orders VALUES (1, 'apple', 2)")
        q.execute("SELECT 1 / 0")
    q.execute("INSERT INTO orders VALUES (3, 'fig', 1)")
    assert [d["pk"] for _t, d, *_ in drain(q)] == [{"id": 3}]


def test_a_rolled_back_watch_leaves_no_watch_and_no_trigger(q, pgq_connect):
    tx = pgq_connect(autocommit=False)
    tx.execute("SELECT pg_mq_watch_pgq('orders', 'q')")
    tx.rollback()
    assert q.execute("SELECT count(*) FROM pg_mq_watches WHERE kind = 'pgq'").fetchone() == (0,)
    assert q.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass").fetchone() == (0,)
    q.execute("INSERT INTO orders VALUES (1, 'a', 1)")
    assert drain(q) == []


def test_hostile_names_and_options(q):
    q.execute("SELECT pgq.create_queue(%s)", ('q "x";ü',))
    q.execute("SELECT pgq.register_consumer(%s, 'c')", ('q "x";ü',))
    q.execute('CREATE SCHEMA "S p;"')
    table = '"S p;"."t ""ü"""'
    q.execute(f"CREATE TABLE {table} (k int PRIMARY KEY, v text)")
    q.execute(
        "SELECT pg_mq_watch_pgq(%s, %s, operations => '{INSERT}', payload => 'keys')",
        (table, 'q "x";ü'),
    )
    q.execute(f"INSERT INTO {table} VALUES (1, 'a')")
    q.execute(f"UPDATE {table} SET v = 'b'")
    got = drain(q, queue='q "x";ü')
    assert [(t, d["pk"], e1) for t, d, e1, *_ in got] == [("INSERT", {"k": 1}, 'S p;.t "ü"')]
    assert "row" not in got[0][1]


def test_errors_at_watch_time(q):
    fails(q, "SELECT pg_mq_watch_pgq('orders', 'nope')", sqlstate="42704", match="PgQ queue 'nope' does not exist")
    fails(q, "SELECT pg_mq_watch_pgq('orders', NULL)", sqlstate="22004", match="queue_name must not be NULL")
    fails(q, "SELECT pg_mq_watch_pgq('orders', '')", sqlstate="22023", match="queue_name must not be empty")
    fails(q, "SELECT pg_mq_watch_pgq('orders', 'q', operations => '{MERGE}')", sqlstate="22023", match="MERGE")
    assert q.execute("SELECT count(*) FROM pg_mq_watch").fetchone() == (0,)


def test_no_companion(db):
    db.execute("CREATE TABLE orders (id int PRIMARY KEY)")
    message = fails(db, "SELECT pg_mq_watch_pgq('orders', 'q')", sqlstate="3F000", match="schema pgq does not exist")
    assert "pg_message_queue_pgq" in message
    db.execute("CREATE SCHEMA pgq")  # a schema pgq without PgQ in it
    fails(db, "SELECT pg_mq_watch_pgq('orders', 'q')", sqlstate="42883", match=r"pgq\.insert_event")
    assert db.execute("SELECT count(*) FROM pg_mq_watch").fetchone() == (0,)


def test_a_pgq_schema_of_a_non_superuser_is_refused(db, dsn):
    """A role owning schema pgq (no PgQ installed) must not get its insert_event run by the trigger."""
    name = f"evq_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE ROLE {name} LOGIN")
    try:
        db.execute("CREATE TABLE orders (id int PRIMARY KEY)")
        db.execute(f"CREATE SCHEMA pgq AUTHORIZATION {name}")
        with psycopg.connect(as_role(dsn, name), autocommit=True) as m:
            m.execute("CREATE TABLE pgq.queue (queue_name text)")
            m.execute("INSERT INTO pgq.queue VALUES ('q')")
            m.execute(
                "CREATE FUNCTION pgq.insert_event(text, text, text, text, text, text, text) RETURNS bigint"
                " LANGUAGE sql AS 'SELECT 1::bigint'"
            )
        fails(db, "SELECT pg_mq_watch_pgq('orders', 'q')", sqlstate="42501", match="not owned by a superuser")
    finally:
        db.execute("DROP SCHEMA IF EXISTS pgq CASCADE")
        db.execute(f"DROP ROLE {name}")


def test_rights(q, pgq_dsn, roles):
    owner, writer = roles(), roles()
    q.execute(f"GRANT CREATE ON SCHEMA public TO {owner}")
    q.execute(f"GRANT EXECUTE ON FUNCTION {WATCH_PGQ}, pg_mq_unwatch(regclass, text) TO {owner}")
    o = psycopg.connect(as_role(pgq_dsn, owner), autocommit=True)
    w = psycopg.connect(as_role(pgq_dsn, writer), autocommit=True)
    try:
        o.execute("CREATE TABLE owned (id int PRIMARY KEY, v text)")
        o.execute(f"GRANT INSERT, UPDATE, SELECT ON owned TO {writer}")
        # not PUBLIC: the writer may not even call it; the owner needs the right to produce
        fails(w, "SELECT pg_mq_watch_pgq('owned', 'q')", sqlstate="42501", match="permission denied for function")
        fails(o, "SELECT pg_mq_watch_pgq('owned', 'q')", sqlstate="42501", match="may not produce into PgQ queues")
        fails(o, "SELECT pg_mq_watch_pgq('orders', 'q')", sqlstate="42501", match="only the owner of table")
        assert q.execute("SELECT count(*) FROM pg_mq_watch").fetchone() == (0,)
        q.execute(f"GRANT pgq_writer TO {owner}")
        o.execute("SELECT pg_mq_watch_pgq('owned', 'q')")
        # the writer has no PgQ rights at all, and its changes still become events
        fails(w, "SELECT pgq.insert_event('q', 't', 'd')", sqlstate="42501", match="permission denied")
        w.execute("INSERT INTO owned VALUES (1, 'a')")
        w.execute("UPDATE owned SET v = 'b'")
        got = drain(q)
        assert [(t, d["row"], e1) for t, d, e1, *_ in got] == [
            ("INSERT", {"id": 1, "v": "a"}, "public.owned"), ("UPDATE", {"id": 1, "v": "b"}, "public.owned"),
        ]  # fmt: skip
        assert o.execute("SELECT pg_mq_unwatch('owned', 'q')").fetchone() == (1,)
    finally:
        o.close()
        w.close()
        q.execute("DROP TABLE IF EXISTS owned")


def test_queue_dropped_after_watching_warns_and_the_statement_goes_on(q):
    q.execute("SELECT pg_mq_watch_pgq('orders', 'q')")
    q.execute("SELECT pgq.unregister_consumer('q', 'c')")
    q.execute("SELECT pgq.drop_queue('q')")
    warnings: list[str] = []
    q.add_notice_handler(lambda d: warnings.append(d.message_primary or ""))
    q.execute("INSERT INTO orders VALUES (1, 'apple', 2)")
    assert q.execute("SELECT count(*) FROM orders").fetchone() == (1,)
    assert any("PgQ queue 'q' does not exist; no events" in m for m in warnings), warnings
    fails(q, "SELECT pg_mq_watch_snapshot('orders')", sqlstate="42704", match="PgQ queue 'q' does not exist")


def test_snapshot_and_unwatch(q):
    q.execute("INSERT INTO orders SELECT g, 'item' || g, g FROM generate_series(1, 5) g")
    q.execute("SELECT pg_mq_watch_pgq('orders', 'q')")
    q.execute("SELECT pg_mq_watch_notify('orders', 'other')")
    assert q.execute("SELECT pg_mq_watch_snapshot('orders', 'q', batch_size => 2)").fetchone() == (5,)
    got = drain(q)
    assert [(t, d["op"], d["pk"]["id"], e1) for t, d, e1, *_ in got] == [
        ("READ", "READ", i, "public.orders") for i in range(1, 6)
    ]
    assert all(e2 == d["event_id"] for _t, d, _e1, e2, *_ in got)
    assert q.execute("SELECT pg_mq_unwatch('orders', 'q')").fetchone() == (1,)
    assert q.execute("SELECT kind FROM pg_mq_watches").fetchall() == [("notify",)]
    q.execute("INSERT INTO orders VALUES (9, 'x', 1)")
    assert drain(q) == []
    assert (
        q.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND tgname LIKE 'pg\\_mq\\_watch\\_%'"
        ).fetchone()[0]
        == 4
    )


def test_same_events_in_real_pgq_and_in_the_companion(pgq_backend):
    """Real PgQ 3 (Debian's postgresql-15-pgq3) takes the same events as the companion."""
    conn = pgq_backend.connect()
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_message_queue CASCADE")
    conn.execute("SELECT pgq.create_queue('q')")
    conn.execute("SELECT pgq.register_consumer('q', 'c')")
    conn.execute("CREATE TABLE orders (id int PRIMARY KEY, item text, qty int)")
    conn.execute("SELECT pg_mq_watch_pgq('orders', 'q')")
    fails(conn, "SELECT pg_mq_watch_pgq('orders', 'nope')", sqlstate="42704", match="PgQ queue 'nope'")
    conn.execute("INSERT INTO orders VALUES (1, 'apple', 2), (2, 'pear', 1)")
    conn.execute("UPDATE orders SET qty = 5 WHERE id = 1")
    conn.execute("DELETE FROM orders WHERE id = 2")
    conn.execute("TRUNCATE orders")
    got = drain(conn)
    assert [(t, d["pk"], e1, e3, e4) for t, d, e1, _e2, e3, e4 in got] == [
        ("INSERT", {"id": 1}, "public.orders", None, None), ("INSERT", {"id": 2}, "public.orders", None, None),
        ("UPDATE", {"id": 1}, "public.orders", None, None), ("DELETE", {"id": 2}, "public.orders", None, None),
        ("TRUNCATE", None, "public.orders", None, None),
    ]  # fmt: skip
    assert all(e2 == d["event_id"] for _t, d, _e1, e2, *_ in got)
    name = f"evq_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {name} LOGIN")
    try:
        conn.execute(f"GRANT EXECUTE ON FUNCTION {WATCH_PGQ} TO {name}")
        conn.execute(f"ALTER TABLE orders OWNER TO {name}")
        with psycopg.connect(as_role(pgq_backend.dsn, name), autocommit=True) as o:
            fails(o, "SELECT pg_mq_watch_pgq('orders', 'q')", sqlstate="42501", match="may not produce into PgQ")
            conn.execute(f"GRANT pgq_writer TO {name}")
            o.execute("SELECT pg_mq_watch_pgq('orders', 'q')")
    finally:
        conn.execute("DROP TABLE orders")
        conn.execute(f"DROP OWNED BY {name}")
        conn.execute(f"DROP ROLE {name}")
