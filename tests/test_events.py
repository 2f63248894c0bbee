"""Change events: pg_mq_watch_notify / _queue / _amqp, pg_mq_unwatch, pg_mq_watches."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from helpers import as_role, drain_notifies, fails, wait_notifies


def listen(connect, channel: str) -> psycopg.Connection:
    conn = connect()
    conn.execute(f'LISTEN "{channel}"')
    return conn


def events(conn: psycopg.Connection, count: int, timeout: float = 10.0) -> list[dict]:
    got = wait_notifies(conn, count, timeout)
    return [json.loads(n.payload) for n in got]


def queued(db: psycopg.Connection, channel: str) -> list[dict]:
    rows = db.execute(
        "SELECT payload FROM pg_mq_queue_" + channel + " ORDER BY msg_id"  # test channels are plain
    ).fetchall()
    return [r[0] for r in rows]


@pytest.fixture
def orders(db):
    db.execute("CREATE TABLE orders (id int PRIMARY KEY, item text, qty int, note text)")
    return "orders"


def test_notify_each_operation(db, connect, orders):
    watch_id = db.execute("SELECT pg_mq_watch_notify('orders', 'order_watch')").fetchone()[0]
    assert watch_id > 0
    ln = listen(connect, "order_watch")
    db.execute("INSERT INTO orders VALUES (1, 'apple', 2, 'x'), (2, 'pear', 1, NULL)")
    db.execute("UPDATE orders SET qty = 5 WHERE id = 1")
    db.execute("DELETE FROM orders WHERE id = 2")
    db.execute("TRUNCATE orders")
    got = events(ln, 5)
    assert [(e["op"], e["pk"]) for e in got] == [
        ("INSERT", {"id": 1}), ("INSERT", {"id": 2}), ("UPDATE", {"id": 1}), ("DELETE", {"id": 2}),
        ("TRUNCATE", None),
    ]  # fmt: skip
    first = got[0]
    assert first["schema"] == "public" and first["table"] == "orders"
    assert first["event_id"] == f"{first['txid']}:{first['seq']}"
    assert "row" not in first  # keys is the default for NOTIFY
    assert got[2]["changed"] == ["qty"]
    assert drain_notifies(ln) == []


def test_notify_row_shape_and_context(db, connect, orders):
    db.execute("SELECT pg_mq_watch_notify('orders', 'w', payload => 'row')")
    ln = listen(connect, "w")
    with db.transaction():
        db.execute("""SET LOCAL pg_mq.event_context = '{"user": "alice"}'""")
        db.execute("INSERT INTO orders VALUES (1, 'apple', 2, 'n')")
        db.execute("UPDATE orders SET qty = 3, note = 'm' WHERE id = 1")
    ins, upd = events(ln, 2)
    assert ins["row"] == {"id": 1, "item": "apple", "qty": 2, "note": "n"}
    assert ins["context"] == {"user": "alice"}
    assert upd["row"] == {"id": 1, "item": "apple", "qty": 3, "note": "m"}
    assert upd["old"] == {"qty": 2, "note": "n"} and upd["changed"] == ["qty", "note"]
    assert ins["txid"] == upd["txid"] and upd["seq"] == ins["seq"] + 1


def test_queue_each_operation(db, orders):
    db.execute("SELECT pg_mq_watch_queue('orders', 'order_events')")
    assert (
        db.execute("SELECT payload_type::text FROM pg_mq_config_catalog WHERE channel = 'order_events'").fetchone()[0]
        == "jsonb"
    )
    db.execute("INSERT INTO orders VALUES (1, 'apple', 2, NULL)")
    db.execute("UPDATE orders SET item = 'apples'")
    db.execute("DELETE FROM orders")
    db.execute("INSERT INTO orders VALUES (3, 'kiwi', 1, NULL)")
    db.execute("TRUNCATE orders")
    got = queued(db, "order_events")
    assert [e["op"] for e in got] == ["INSERT", "UPDATE", "DELETE", "INSERT", "TRUNCATE"]
    assert got[0]["row"]["item"] == "apple"
    assert got[1]["old"] == {"item": "apple"} and got[1]["row"]["item"] == "apples"
    assert got[2]["row"] == {"id": 1, "item": "apples", "qty": 2, "note": None}
    assert len({e["event_id"] for e in got}) == 5


def test_amqp_each_operation(db, rabbit, broker, orders):
    q = rabbit.queue("amq.topic", "public.orders.*")
    db.execute("SELECT pg_mq_watch_amqp('orders', %s, 'amq.topic', '{schema}.{table}.{op}')", (broker,))
    db.execute("INSERT INTO orders VALUES (1, 'apple', 2, NULL), (2, 'fig', 1, NULL)")
    db.execute("UPDATE orders SET qty = 9 WHERE id = 2")
    db.execute("DELETE FROM orders WHERE id = 1")
    db.execute("TRUNCATE orders")
    got = rabbit.drain(q, 5)
    bodies = [json.loads(b) for _p, b in got]
    assert [e["op"] for e in bodies] == ["INSERT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"]
    assert [p.message_id for p, _b in got] == [e["event_id"] for e in bodies]
    assert got[0][0].content_type == "application/json"
    assert db.execute("SELECT count(*) FROM amqp.outbox").fetchone()[0] == 0


def test_amqp_routing_key_uses_the_op(db, rabbit, broker, orders):
    q = rabbit.queue("amq.topic", "public.orders.delete")
    db.execute("SELECT pg_mq_watch_amqp('orders', %s, 'amq.topic')", (broker,))
    db.execute("INSERT INTO orders VALUES (1, 'apple', 2, NULL)")
    db.execute("DELETE FROM orders")
    got = rabbit.drain(q, 1)
    assert [json.loads(b)["op"] for _p, b in got] == ["DELETE"]


def test_composite_key(db, connect):
    db.execute("CREATE TABLE lines (order_id int, line int, sku text, PRIMARY KEY (line, order_id))")
    db.execute("SELECT pg_mq_watch_notify('lines', 'lw')")
    ln = listen(connect, "lw")
    db.execute("INSERT INTO lines VALUES (7, 1, 'a')")
    (e,) = events(ln, 1)
    assert e["pk"] == {"line": 1, "order_id": 7}


def test_table_without_primary_key(db, connect):
    db.execute("CREATE TABLE logs (code text, msg text)")
    fails(db, "SELECT pg_mq_watch_notify('logs', 'lg')", sqlstate="22023", match="no primary key")
    db.execute("SELECT pg_mq_watch_notify('logs', 'lg', key_columns => ARRAY['code'])")
    db.execute("SELECT pg_mq_watch_queue('logs', 'logq')")  # payload 'row': no key needed
    ln = listen(connect, "lg")
    db.execute("INSERT INTO logs VALUES ('E1', 'boom')")
    (e,) = events(ln, 1)
    assert e["pk"] == {"code": "E1"}
    (m,) = queued(db, "logq")
    assert m["pk"] is None and m["row"] == {"code": "E1", "msg": "boom"}


def test_quoted_mixed_case_and_unicode_names(db, connect):
    db.execute('CREATE SCHEMA "Sales Ü"')
    db.execute('CREATE TABLE "Sales Ü"."Örders; x" ("Id" int PRIMARY KEY, "naïve col" text)')
    db.execute("""SELECT pg_mq_watch_notify('"Sales Ü"."Örders; x"', 'chan "ü"', payload => 'row')""")
    ln = listen(connect, 'chan ""ü""')
    db.execute("""INSERT INTO "Sales Ü"."Örders; x" VALUES (1, 'é')""")
    (e,) = events(ln, 1)
    assert (e["schema"], e["table"], e["pk"], e["row"]) == (
        "Sales Ü",
        "Örders; x",
        {"Id": 1},
        {"Id": 1, "naïve col": "é"},
    )
    assert db.execute("SELECT watched_table::text FROM pg_mq_watches").fetchone()[0] == '"Sales Ü"."Örders; x"'
    assert db.execute("""SELECT pg_mq_watch_snapshot('"Sales Ü"."Örders; x"', batch_size => 1)""").fetchone()[0] == 1
    (e,) = events(ln, 1)
    assert (e["op"], e["table"], e["pk"], e["row"]) == ("READ", "Örders; x", {"Id": 1}, {"Id": 1, "naïve col": "é"})


def test_big_row_to_notify_is_truncated_to_keys(db, connect, orders):
    db.execute("SELECT pg_mq_watch_notify('orders', 'big', payload => 'row')")
    ln = listen(connect, "big")
    db.execute("INSERT INTO orders VALUES (1, repeat('x', 9000), 1, NULL), (2, 'small', 1, NULL)")
    big, small = events(ln, 2)
    assert big["truncated"] is True and big["pk"] == {"id": 1} and "row" not in big
    assert "truncated" not in small and small["row"]["item"] == "small"
    db.execute("CREATE TABLE bigkey (k text PRIMARY KEY)")
    db.execute("SELECT pg_mq_watch_notify('bigkey', 'big')")
    db.execute("INSERT INTO bigkey VALUES (repeat('k', 2000) || md5('a') || repeat('z', 7000))")
    (e,) = events(ln, 1)
    assert e["truncated"] is True and "pk" not in e


def test_ten_thousand_rows_arrive_in_order(db, connect, orders):
    db.execute("SELECT pg_mq_watch_notify('orders', 'many')")
    db.execute("SELECT pg_mq_watch_queue('orders', 'manyq')")
    ln = listen(connect, "many")
    db.execute("INSERT INTO orders SELECT g, 'i', g, NULL FROM generate_series(1, 10000) g")
    got = events(ln, 10000, timeout=60)
    assert [e["pk"]["id"] for e in got] == list(range(1, 10001))
    assert [e["seq"] for e in got] == sorted(e["seq"] for e in got)
    ids = [r[0] for r in db.execute("SELECT (payload->'pk'->>'id')::int FROM pg_mq_queue_manyq ORDER BY msg_id")]
    assert ids == list(range(1, 10001))


def test_rollback_and_savepoint_rollback_emit_nothing(db, connect, orders):
    db.execute("SELECT pg_mq_watch_notify('orders', 'rb')")
    db.execute("SELECT pg_mq_watch_queue('orders', 'rbq')")
    ln = listen(connect, "rb")
    conn = connect(autocommit=False)
    conn.execute("INSERT INTO orders VALUES (1, 'a', 1, NULL)")
    conn.rollback()
    conn.execute("INSERT INTO orders VALUES (2, 'b', 1, NULL)")
    conn.execute("SAVEPOINT s")
    conn.execute("INSERT INTO orders VALUES (3, 'c', 1, NULL)")
    conn.execute("ROLLBACK TO SAVEPOINT s")
    conn.commit()
    got = events(ln, 2, timeout=2)
    assert [e["pk"]["id"] for e in got] == [2]
    assert [e["pk"]["id"] for e in queued(db, "rbq")] == [2]


def test_ignore_and_include_columns(db, connect, orders):
    db.execute(
        "SELECT pg_mq_watch_notify('orders', 'ig', payload => 'row', columns => ARRAY['id', 'item', 'note'],"
        " ignore_columns => ARRAY['note'])"
    )
    ln = listen(connect, "ig")
    db.execute("INSERT INTO orders VALUES (1, 'a', 1, 'n')")
    db.execute("UPDATE orders SET note = 'changed'")  # only an ignored column: nothing
    db.execute("UPDATE orders SET qty = 2")  # a column not included, not ignored: an event, no values
    db.execute("UPDATE orders SET item = 'b', note = 'again'")
    got = events(ln, 3)
    assert got[0]["row"] == {"id": 1, "item": "a"}
    assert got[1]["changed"] == ["qty"] and got[1]["old"] == {}
    assert got[2]["changed"] == ["item"] and got[2]["old"] == {"item": "a"} and got[2]["row"] == {"id": 1, "item": "b"}
    assert drain_notifies(ln) == []


def test_options_are_checked_at_watch_time(db, orders):
    fails(db, "SELECT pg_mq_watch_notify('orders', 'c', operations => '{INSERT,MERGE}')", sqlstate="22023",
          match="unknown operation 'MERGE'")  # fmt: skip
    fails(db, "SELECT pg_mq_watch_notify('orders', 'c', payload => 'all')", sqlstate="22023", match="payload")
    fails(db, "SELECT pg_mq_watch_notify('orders', 'c', columns => ARRAY['nope'])", sqlstate="42703",
          match='column "nope"')  # fmt: skip
    fails(db, "SELECT pg_mq_watch_notify('orders', '')", sqlstate="22023", match="channel")
    fails(db, "SELECT pg_mq_watch_notify('orders', repeat('c', 64))", sqlstate="42622", match="longer than 63")
    fails(db, "SELECT pg_mq_watch_amqp('orders', 99, 'x')", sqlstate="42704", match="broker_id 99")
    db.execute("SELECT pg_mq_create_queue('ints', 'integer')")
    fails(db, "SELECT pg_mq_watch_queue('orders', 'ints')", sqlstate="42804", match='queue "ints" holds integer')
    db.execute("CREATE VIEW v AS SELECT 1 AS a")
    fails(db, "SELECT pg_mq_watch_notify('v', 'c')", sqlstate="42809", match="not a table")
    assert db.execute("SELECT count(*) FROM pg_mq_watches").fetchone()[0] == 0


def test_rename_drop_and_add_column(db, connect, orders):
    db.execute("SELECT pg_mq_watch_notify('orders', 'life', payload => 'row')")
    ln = listen(connect, "life")
    db.execute("ALTER TABLE orders RENAME TO purchases")
    db.execute("ALTER TABLE purchases ADD COLUMN extra text DEFAULT 'e'")
    db.execute("INSERT INTO purchases (id) VALUES (1)")
    (e,) = events(ln, 1)
    assert e["table"] == "purchases" and e["row"]["extra"] == "e"
    assert db.execute("SELECT watched_table::text FROM pg_mq_watches").fetchone()[0] == "purchases"
    db.execute("DROP TABLE purchases")
    assert db.execute("SELECT count(*) FROM pg_mq_watches").fetchone()[0] == 0


def test_watch_and_unwatch_are_idempotent(db, connect, orders):
    a = db.execute("SELECT pg_mq_watch_notify('orders', 'idem')").fetchone()[0]
    b = db.execute("SELECT pg_mq_watch_notify('orders', 'idem', operations => '{INSERT}')").fetchone()[0]
    assert a == b
    assert db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass").fetchone()[0] == 1
    db.execute("SELECT pg_mq_watch_queue('orders', 'idemq')")
    assert db.execute("SELECT pg_mq_unwatch('orders', 'idem')").fetchone()[0] == 1
    assert db.execute("SELECT pg_mq_unwatch('orders', 'idem')").fetchone()[0] == 0
    assert db.execute("SELECT kind, target FROM pg_mq_watches").fetchall() == [("queue", "idemq")]
    assert db.execute("SELECT pg_mq_unwatch('orders')").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass").fetchone()[0] == 0
    ln = listen(connect, "idem")
    db.execute("INSERT INTO orders VALUES (1, 'a', 1, NULL)")
    assert drain_notifies(ln) == []


@pytest.fixture
def roles(db):
    made: list[str] = []

    def _make() -> str:
        name = f"ev_{uuid.uuid4().hex[:8]}"
        db.execute(f"CREATE ROLE {name} LOGIN")
        made.append(name)
        return name

    yield _make
    for name in made:
        db.execute(f"DROP OWNED BY {name}")
        db.execute(f"DROP ROLE {name}")


WATCH_FUNCTIONS = (
    "pg_mq_watch_notify(regclass, text, text[], text, text[], text[], text[])",
    "pg_mq_watch_queue(regclass, text, text[], text, text[], text[], text[])",
    "pg_mq_watch_amqp(regclass, integer, text, text, text[], text, text[], text[], text[])",
    "pg_mq_unwatch(regclass, text)",
)


def test_a_role_cannot_watch_an_owners_table_through_its_own_security_definer_function(db, dsn, roles):
    """The attack the login-role check alone would allow: mallory's SECURITY DEFINER function,
    called by the table's owner, tries to watch the owner's table into mallory's channel."""
    owner, mallory = roles(), roles()
    db.execute(f"GRANT CREATE ON SCHEMA public TO {owner}, {mallory}")
    o = psycopg.connect(as_role(dsn, owner), autocommit=True)
    m = psycopg.connect(as_role(dsn, mallory), autocommit=True)
    try:
        o.execute("CREATE TABLE secrets (id int PRIMARY KEY, v text)")
        m.execute(
            "CREATE FUNCTION public.helpful() RETURNS int LANGUAGE plpgsql SECURITY DEFINER AS $$"
            " BEGIN PERFORM pg_mq_watch_notify('secrets', 'mallory_ears', payload => 'row'); RETURN 1; END $$"
        )
        m.execute(f"GRANT EXECUTE ON FUNCTION public.helpful() TO {owner}")
        fails(o, "SELECT public.helpful()", sqlstate="42501", match="permission denied for function pg_mq_watch_notify")
        assert db.execute("SELECT count(*) FROM pg_mq_watches").fetchone() == (0,)
    finally:
        o.close()
        m.close()
        db.execute("DROP FUNCTION IF EXISTS public.helpful()")
        db.execute("DROP TABLE IF EXISTS secrets")


def test_permissions(db, dsn, connect, roles):
    owner, writer, other = roles(), roles(), roles()
    db.execute(f"GRANT CREATE ON SCHEMA public TO {owner}")
    db.execute("SELECT pg_mq_create_queue('evq', 'jsonb')")
    o = psycopg.connect(as_role(dsn, owner), autocommit=True)
    w = psycopg.connect(as_role(dsn, writer), autocommit=True)
    x = psycopg.connect(as_role(dsn, other), autocommit=True)
    try:
        for fn in WATCH_FUNCTIONS:
            db.execute(f"GRANT EXECUTE ON FUNCTION {fn} TO {owner}, {other}")
        o.execute("CREATE TABLE owned (id int PRIMARY KEY, v text)")
        o.execute(f"GRANT INSERT, UPDATE, DELETE, SELECT ON owned TO {writer}, {other}")
        # the owner may not watch into a queue it may not send to; with send rights it may
        fails(o, "SELECT pg_mq_watch_queue('owned', 'evq')", sqlstate="42501", match='send to queue "evq"')
        fails(o, "SELECT pg_mq_watch_queue('owned', 'newq')", sqlstate="42501", match="queue administrators")
        fails(o, "SELECT pg_mq_watch_amqp('owned', 1, 'x')", sqlstate="42501", match="USAGE on schema amqp")
        db.execute(f"SELECT pg_mq_grant('evq', '{owner}', 'send')")
        o.execute("SELECT pg_mq_watch_queue('owned', 'evq')")
        o.execute("SELECT pg_mq_watch_notify('owned', 'ownedw')")
        # a non-owner cannot watch, nor unwatch
        fails(x, "SELECT pg_mq_watch_notify('owned', 'mine')", sqlstate="42501", match="only the owner")
        fails(x, "SELECT pg_mq_unwatch('owned')", sqlstate="42501", match="only the owner")
        # the writer needs no rights on the queue, and gets events out only through the table
        w.execute("INSERT INTO owned VALUES (1, 'v')")
        assert [e["row"] for e in queued(db, "evq")] == [{"id": 1, "v": "v"}]
        fails(w, "INSERT INTO pg_mq_queue_evq (payload) VALUES ('{}')", sqlstate="42501", match="permission")
        fails(w, "SELECT pg_mq_send_message('evq', '{}'::jsonb)", sqlstate="42501", match="permission")
        fails(w, "DELETE FROM pg_mq_watch", sqlstate="42501", match="permission")
        # nobody but superusers can attach the trigger function by hand
        db.execute(f"GRANT CREATE ON SCHEMA public TO {other}")
        x.execute("CREATE TABLE mine (id int)")
        wid = db.execute("SELECT watch_id FROM pg_mq_watches WHERE kind = 'queue'").fetchone()[0]
        fails(
            x,
            f"CREATE TRIGGER t AFTER INSERT ON mine FOR EACH STATEMENT EXECUTE FUNCTION _pg_mq_watch_fire('{wid}')",
            sqlstate="42501",
            match="permission denied for function",
        )
        # a writer's settings cannot change what the event says about the row
        w.execute("""SET pg_mq.event_context = '{"op": "forged"}'""")
        w.execute("UPDATE owned SET v = 'w'")
        last = queued(db, "evq")[-1]
        assert last["op"] == "UPDATE" and last["context"] == {"op": "forged"}
    finally:
        for c in (o, w, x):
            c.close()


def test_columns_whose_json_runs_a_non_superusers_code(db, dsn, connect, roles):
    """Making JSON of a value runs its output function or a cast to json: never code a
    non-superuser owns, since the trigger runs with the extension owner's rights."""
    owner = roles()
    db.execute(f"GRANT CREATE ON SCHEMA public TO {owner}")
    for fn in WATCH_FUNCTIONS:
        db.execute(f"GRANT EXECUTE ON FUNCTION {fn} TO {owner}")
    o = psycopg.connect(as_role(dsn, owner), autocommit=True)
    try:
        o.execute("CREATE TYPE mood AS ENUM ('ok', 'sad')")  # built-in enum_out: fine
        o.execute("CREATE TYPE pair AS (a int, m mood)")
        o.execute("CREATE TABLE t (id int PRIMARY KEY, m mood, p pair)")
        o.execute("SELECT pg_mq_watch_notify('t', 'tw', payload => 'row')")
        ln = listen(connect, "tw")
        o.execute("INSERT INTO t VALUES (1, 'ok', ROW(1, 'sad'))")
        (e,) = events(ln, 1)
        assert e["row"] == {"id": 1, "m": "ok", "p": {"a": 1, "m": "sad"}}
        # a cast added later: the column is left out, with a WARNING
        o.execute("CREATE FUNCTION mood_json(mood) RETURNS json LANGUAGE sql AS $$ SELECT '1'::json $$")
        o.execute("CREATE CAST (mood AS json) WITH FUNCTION mood_json(mood)")
        warnings: list[str] = []
        o.add_notice_handler(lambda d: warnings.append(d.message_primary or ""))
        o.execute("INSERT INTO t VALUES (2, 'ok', ROW(2, 'ok'))")
        (e,) = events(ln, 1)
        assert e["row"] == {"id": 2}
        assert any('column "m" is left out' in w for w in warnings), warnings
        fails(o, "SELECT pg_mq_watch_notify('t', 'tw2')", sqlstate="42501", match='column "m".*cast to json')
        o.execute("DROP CAST (mood AS json)")
    finally:
        o.close()


SEED = """
CREATE TABLE identifier (guid text PRIMARY KEY, docid text);
CREATE TABLE systemmetadata (guid text PRIMARY KEY, size int);
CREATE OR REPLACE FUNCTION sysmeta_notify() RETURNS trigger as $sysmeta_notify$
DECLARE
  doc_id varchar;
BEGIN
  SELECT docid INTO doc_id FROM identifier WHERE guid=NEW.guid;
  PERFORM pg_notify( 'sysm_watch', json_build_object('op', TG_OP, 'pid', NEW.guid, 'docid', doc_id)::text );
  RETURN NULL;
END;
$sysmeta_notify$ LANGUAGE plpgsql;
CREATE TRIGGER sysmeta_notify AFTER INSERT OR UPDATE ON systemmetadata FOR EACH ROW EXECUTE PROCEDURE sysmeta_notify();
"""


def test_seed_trigger_side_by_side(db, connect):
    db.execute(SEED)
    db.execute("SELECT pg_mq_watch_notify('systemmetadata', 'sysm_watch')")
    ln = listen(connect, "sysm_watch")
    db.execute("INSERT INTO identifier VALUES ('g1', 'doc1')")
    db.execute("INSERT INTO systemmetadata VALUES ('g1', 10)")
    got = [json.loads(n.payload) for n in wait_notifies(ln, 2)]
    assert {"op": "INSERT", "pid": "g1", "docid": "doc1"} in got
    ours = [e for e in got if "event_id" in e]
    assert len(ours) == 1 and ours[0]["pk"] == {"guid": "g1"}


def test_a_trigger_written_by_hand(db, connect, orders, roles, dsn):
    db.execute(
        "CREATE TRIGGER by_hand AFTER INSERT ON orders REFERENCING NEW TABLE AS pg_mq_new FOR EACH STATEMENT"
        """ EXECUTE FUNCTION pg_mq_change_trigger('notify', 'hand', '{"payload": "row", "columns": ["id", "qty"]}')"""
    )
    db.execute(
        "CREATE TRIGGER by_hand_q AFTER DELETE ON orders REFERENCING OLD TABLE AS pg_mq_old FOR EACH STATEMENT"
        " EXECUTE FUNCTION pg_mq_change_trigger('queue', 'handq')"
    )
    db.execute("SELECT pg_mq_create_queue('handq', 'jsonb')")
    ln = listen(connect, "hand")
    db.execute("INSERT INTO orders VALUES (1, 'a', 4, NULL)")
    (e,) = events(ln, 1)
    assert e["op"] == "INSERT" and e["row"] == {"id": 1, "qty": 4}
    # with the writer's rights: one who may not send to the queue gets a WARNING, no events
    writer = roles()
    db.execute(f"GRANT ALL ON orders TO {writer}")
    w = psycopg.connect(as_role(dsn, writer), autocommit=True)
    try:
        warnings: list[str] = []
        w.add_notice_handler(lambda d: warnings.append(d.message_primary or ""))
        w.execute("DELETE FROM orders")
        assert any("permission denied" in m for m in warnings), warnings
        assert queued(db, "handq") == []
        db.execute(f"SELECT pg_mq_grant('handq', '{writer}', 'send')")
        w.execute("INSERT INTO orders VALUES (2, 'b', 1, NULL)")
        w.execute("DELETE FROM orders")
        assert [m["pk"] for m in queued(db, "handq")] == [{"id": 2}]
    finally:
        w.close()
    # a wrongly declared trigger warns and never breaks the statement
    db.execute("CREATE TRIGGER bad AFTER UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION pg_mq_change_trigger('x')")
    db.execute("INSERT INTO orders VALUES (3, 'c', 1, NULL)")
    db.execute("UPDATE orders SET qty = 2")


def test_amqp_rollback_sends_nothing(db, rabbit, broker, orders):
    q = rabbit.queue("amq.topic", "public.orders.*")
    db.execute("SELECT pg_mq_watch_amqp('orders', %s, 'amq.topic')", (broker,))
    with pytest.raises(psycopg.errors.UniqueViolation), db.transaction():
        db.execute("INSERT INTO orders VALUES (1, 'a', 1, NULL)")
        db.execute("INSERT INTO orders VALUES (1, 'a', 1, NULL)")
    db.execute("INSERT INTO orders VALUES (2, 'b', 1, NULL)")
    got = rabbit.drain(q, 1)
    assert [json.loads(b)["pk"] for _p, b in got] == [{"id": 2}]
    assert db.execute("SELECT count(*) FROM amqp.outbox").fetchone()[0] == 0


def test_watch_survives_a_new_oid(db, connect, orders):
    """After pg_dump and restore the table has a new oid: the watch adopts it when it fires."""
    wid = db.execute("SELECT pg_mq_watch_notify('orders', 'moved')").fetchone()[0]
    db.execute("UPDATE pg_mq_watch SET relid = 4000000000 WHERE watch_id = %s", (wid,))  # a dropped table's oid
    ln = listen(connect, "moved")
    db.execute("INSERT INTO orders VALUES (1, 'a', 1, NULL)")
    assert [e["pk"] for e in events(ln, 1)] == [{"id": 1}]
    assert db.execute("SELECT watched_table::text FROM pg_mq_watches").fetchone()[0] == "orders"


def test_a_wide_table(db, connect):
    cols = ", ".join(f"c{i} int DEFAULT {i}" for i in range(120))
    db.execute(f"CREATE TABLE wide (id int PRIMARY KEY, {cols})")
    db.execute("SELECT pg_mq_watch_queue('wide', 'wideq', ignore_columns => ARRAY['c0'])")
    db.execute("INSERT INTO wide (id) VALUES (1)")
    db.execute("UPDATE wide SET c0 = 5")  # ignored: nothing
    db.execute("UPDATE wide SET c119 = 7")
    ins, upd = queued(db, "wideq")
    assert len(ins["row"]) == 120 and ins["row"]["c119"] == 119 and "c0" not in ins["row"]
    assert upd["changed"] == ["c119"] and upd["old"] == {"c119": 119}


def test_a_queue_dropped_under_the_watch_never_breaks_the_insert(db, orders):
    db.execute("SELECT pg_mq_watch_queue('orders', 'gone')")
    db.execute("SELECT pg_mq_drop_queue('gone', force => true)")
    db.execute("INSERT INTO orders VALUES (1, 'a', 1, NULL)")
    assert db.execute("SELECT count(*) FROM orders").fetchone()[0] == 1


def test_dump_and_restore_keeps_watches(db, dsn, pg_server):
    import subprocess

    db.execute("CREATE TABLE kept (id int PRIMARY KEY, v text)")
    db.execute("SELECT pg_mq_watch_queue('kept', 'keptq')")
    db.execute("INSERT INTO kept VALUES (1, 'a')")
    dump = subprocess.run(
        ["/usr/lib/postgresql/15/bin/pg_dump", "--no-owner", dsn], check=True, capture_output=True, text=True
    ).stdout
    pg_server.admin("DROP DATABASE IF EXISTS restored_events")
    pg_server.admin("CREATE DATABASE restored_events")
    try:
        target = pg_server.dsn_for("restored_events")
        subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target], input=dump, check=True, capture_output=True,
            text=True,
        )  # fmt: skip
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("INSERT INTO kept VALUES (2, 'b')")
            got = [r[0] for r in conn.execute("SELECT payload FROM pg_mq_queue_keptq ORDER BY msg_id")]
            assert [e["pk"] for e in got] == [{"id": 1}, {"id": 2}]
            assert conn.execute("SELECT watched_table::text, target FROM pg_mq_watches").fetchall() == [
                ("kept", "keptq")
            ]
    finally:
        pg_server.admin("DROP DATABASE restored_events WITH (FORCE)")


# ---- snapshot ---------------------------------------------------------------------------


def test_snapshot_sends_the_current_rows_in_key_order_in_batches(db, connect, orders):
    db.execute("INSERT INTO orders SELECT g, 'i' || g, g, NULL FROM generate_series(10, 1, -1) g")
    db.execute("SELECT pg_mq_watch_notify('orders', 'snap', payload => 'row')")
    ln = listen(connect, "snap")
    for batch in (1, 3, 10, 1000):
        with db.transaction():
            assert db.execute("SELECT pg_mq_watch_snapshot('orders', batch_size => %s)", (batch,)).fetchone()[0] == 10
        got = events(ln, 10)
        assert [e["pk"]["id"] for e in got] == list(range(1, 11)), batch
        assert {e["op"] for e in got} == {"READ"}
        assert [e["seq"] for e in got] == list(range(1, 11))
        assert got[0]["row"] == {"id": 1, "item": "i1", "qty": 1, "note": None}
        assert got[0]["event_id"] == f"{got[0]['txid']}:1" and got[0]["table"] == "orders"
        assert drain_notifies(ln) == []
    # the stream goes on after the snapshot in the same transaction, numbered after it
    with db.transaction():
        db.execute("SELECT pg_mq_watch_snapshot('orders', batch_size => 4)")
        db.execute("INSERT INTO orders VALUES (11, 'x', 1, NULL)")
    got = events(ln, 11)
    assert [(e["op"], e["seq"]) for e in got][-2:] == [("READ", 10), ("INSERT", 11)]


def test_snapshot_of_an_empty_table_and_to_a_queue(db, orders):
    db.execute("SELECT pg_mq_watch_queue('orders', 'snapq')")
    assert db.execute("SELECT pg_mq_watch_snapshot('orders')").fetchone()[0] == 0
    db.execute("INSERT INTO orders VALUES (2, 'b', 1, NULL), (1, 'a', 1, NULL)")
    db.execute("DELETE FROM pg_mq_queue_snapq")
    assert db.execute("SELECT pg_mq_watch_snapshot('orders', 'snapq', 1)").fetchone()[0] == 2
    got = queued(db, "snapq")
    assert [(e["op"], e["pk"], e["row"]["item"]) for e in got] == [("READ", {"id": 1}, "a"), ("READ", {"id": 2}, "b")]


def test_snapshot_composite_key(db, connect):
    db.execute("CREATE TABLE lines (order_id int, line int, sku text, PRIMARY KEY (order_id, line))")
    db.execute("INSERT INTO lines SELECT o, l, 's' FROM generate_series(3, 1, -1) o, generate_series(3, 1, -1) l")
    db.execute("SELECT pg_mq_watch_notify('lines', 'lsnap')")
    ln = listen(connect, "lsnap")
    assert db.execute("SELECT pg_mq_watch_snapshot('lines', batch_size => 2)").fetchone()[0] == 9
    got = events(ln, 9)
    assert [(e["pk"]["order_id"], e["pk"]["line"]) for e in got] == [(o, n) for o in (1, 2, 3) for n in (1, 2, 3)]


def test_snapshot_of_a_table_without_primary_key(db, connect):
    """key_columns: nullable and not unique; NULLs come last, equal keys all arrive once."""
    db.execute("CREATE TABLE logs (code text, n int, msg text)")
    db.execute(
        "INSERT INTO logs VALUES ('b', 1, 'x'), (NULL, 1, 'y'), ('a', NULL, 'z'), ('a', 2, 'w'), ('a', 2, 'v'),"
        " ('a', 1, 'u'), (NULL, NULL, 't'), ('b', 1, 's')"
    )
    db.execute("SELECT pg_mq_watch_queue('logs', 'logsnap')")
    fails(db, "SELECT pg_mq_watch_snapshot('logs')", sqlstate="22023", match="no primary key")
    db.execute("SELECT pg_mq_watch_queue('logs', 'logsnap', key_columns => ARRAY['code', 'n'])")
    for batch in (1, 2, 3, 100):
        db.execute("DELETE FROM pg_mq_queue_logsnap")
        assert db.execute("SELECT pg_mq_watch_snapshot('logs', batch_size => %s)", (batch,)).fetchone()[0] == 8
        got = [(e["pk"]["code"], e["pk"]["n"], e["row"]["msg"]) for e in queued(db, "logsnap")]
        keys = [(c, n) for c, n, _m in got]
        assert keys == [("a", 1), ("a", 2), ("a", 2), ("a", None), ("b", 1), ("b", 1), (None, 1), (None, None)], batch
        assert sorted(m for _c, _n, m in got) == sorted("xyzwvuts"), batch


def test_snapshot_errors_and_permissions(db, dsn, orders, roles):
    fails(db, "SELECT pg_mq_watch_snapshot('orders')", sqlstate="42704", match="has no watch")
    db.execute("SELECT pg_mq_watch_notify('orders', 's1')")
    db.execute("SELECT pg_mq_watch_queue('orders', 's2')")
    fails(db, "SELECT pg_mq_watch_snapshot('orders')", sqlstate="22023", match="2 watches; name the target")
    fails(db, "SELECT pg_mq_watch_snapshot('orders', 'nope')", sqlstate="42704", match="no watch to 'nope'")
    fails(db, "SELECT pg_mq_watch_snapshot('orders', 's1', 0)", sqlstate="22023", match="batch_size")
    fails(db, "SELECT pg_mq_watch_snapshot('orders', 's1', NULL)", sqlstate="22004", match="batch_size")
    fails(db, "SELECT pg_mq_watch_snapshot(NULL)", sqlstate="22004", match="table")
    assert db.execute("SELECT pg_mq_watch_snapshot('orders', 's1')").fetchone()[0] == 0
    # like watching: EXECUTE granted deliberately, and only the owner
    owner, other = roles(), roles()
    db.execute(f"GRANT CREATE ON SCHEMA public TO {owner}")
    o = psycopg.connect(as_role(dsn, owner), autocommit=True)
    x = psycopg.connect(as_role(dsn, other), autocommit=True)
    try:
        o.execute("CREATE TABLE owned (id int PRIMARY KEY)")
        o.execute(f"GRANT SELECT ON owned TO {other}")
        fails(o, "SELECT pg_mq_watch_snapshot('owned')", sqlstate="42501", match="permission denied for function")
        db.execute(f"GRANT EXECUTE ON FUNCTION pg_mq_watch_notify(regclass, text, text[], text, text[], text[], text[])"
                   f" TO {owner}")  # fmt: skip
        db.execute(f"GRANT EXECUTE ON FUNCTION pg_mq_watch_snapshot(regclass, text, integer) TO {owner}, {other}")
        o.execute("SELECT pg_mq_watch_notify('owned', 'ow')")
        o.execute("INSERT INTO owned VALUES (1)")
        assert o.execute("SELECT pg_mq_watch_snapshot('owned')").fetchone()[0] == 1
        fails(x, "SELECT pg_mq_watch_snapshot('owned')", sqlstate="42501", match="only the owner")
    finally:
        o.close()
        x.close()


# ---- UPDATE pairing, partitions, suppression, dropping the target, rollback -------------


def test_update_pairs_rows_by_key_and_reports_changed_keys(db):
    db.execute("CREATE TABLE orders (id int PRIMARY KEY DEFERRABLE, item text, qty int, note text)")
    db.execute("SELECT pg_mq_watch_queue('orders', 'pairs')")
    db.execute("INSERT INTO orders VALUES (1, 'a', 1, NULL), (2, 'b', 2, NULL), (3, 'c', 3, NULL)")
    db.execute("DELETE FROM pg_mq_queue_pairs")
    db.execute("UPDATE orders SET id = id + 1")  # key 1 goes, 4 comes, 2 and 3 change their values
    got = queued(db, "pairs")
    assert [(e["op"], e["pk"]["id"], e.get("key_changed")) for e in got] == [
        ("DELETE", 1, True), ("UPDATE", 2, None), ("UPDATE", 3, None), ("INSERT", 4, True),
    ]  # fmt: skip
    assert got[0]["row"] == {"id": 1, "item": "a", "qty": 1, "note": None}
    assert got[1]["old"] == {"item": "b", "qty": 2} and got[1]["row"]["item"] == "a"
    assert sorted(got[1]["changed"]) == ["item", "qty"]
    assert got[3]["row"] == {"id": 4, "item": "c", "qty": 3, "note": None}
    assert [e["seq"] for e in got] == [1, 2, 3, 4]
    # a key-preserving UPDATE: the old values of each key, whatever the row order
    db.execute("DELETE FROM pg_mq_queue_pairs")
    db.execute("UPDATE orders SET qty = qty * 10")
    got = queued(db, "pairs")
    assert {e["pk"]["id"]: (e["old"]["qty"], e["row"]["qty"]) for e in got} == {2: (1, 10), 3: (2, 20), 4: (3, 30)}


def test_suppress_events_for_a_bulk_load(db, dsn, connect, orders, roles):
    db.execute("SELECT pg_mq_watch_queue('orders', 'quiet')")
    db.execute("CREATE TABLE other (id int PRIMARY KEY)")
    db.execute(
        "CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO other VALUES (NEW.id);"
        " RETURN NULL; END $$"
    )
    db.execute("CREATE TRIGGER keep AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION keep()")
    with db.transaction():
        db.execute("SET LOCAL pg_mq.suppress_events = on")
        db.execute("INSERT INTO orders SELECT g, 'bulk', 1, NULL FROM generate_series(1, 100) g")
    db.execute("INSERT INTO orders VALUES (101, 'after', 1, NULL)")
    assert [e["pk"]["id"] for e in queued(db, "quiet")] == [101]
    assert db.execute("SELECT count(*) FROM other").fetchone()[0] == 101  # other triggers still run
    # a writer who does not own the table cannot hide its changes: WARNING, events sent
    writer = roles()
    db.execute(f"GRANT ALL ON orders, other TO {writer}")
    w = psycopg.connect(as_role(dsn, writer), autocommit=True)
    try:
        warnings: list[str] = []
        w.add_notice_handler(lambda d: warnings.append(d.message_primary or ""))
        w.execute("SET pg_mq.suppress_events = on")
        w.execute("DELETE FROM orders WHERE id = 101")
        assert any("honoured only for the table's owner" in m for m in warnings), warnings
        w.execute("SET pg_mq.suppress_events = 'maybe'")
        w.execute("INSERT INTO orders VALUES (102, 'x', 1, NULL)")
        assert any("not a boolean" in m for m in warnings), warnings
    finally:
        w.close()
    assert [(e["op"], e["pk"]["id"]) for e in queued(db, "quiet")][-2:] == [("DELETE", 101), ("INSERT", 102)]


def test_dropping_a_queue_a_watch_targets(db, orders):
    wid = db.execute("SELECT pg_mq_watch_queue('orders', 'wq')").fetchone()[0]
    fails(db, "SELECT pg_mq_drop_queue('wq')", sqlstate="55006", match=f"target of watch {wid} of table public.orders")
    assert db.execute("SELECT count(*) FROM pg_mq_watches").fetchone()[0] == 1
    db.execute("SELECT pg_mq_drop_queue('wq', force => true)")
    assert db.execute("SELECT count(*) FROM pg_mq_watches").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass").fetchone()[0] == 0
    warnings: list[str] = []
    db.add_notice_handler(lambda d: warnings.append(d.message_primary or ""))
    db.execute("INSERT INTO orders VALUES (1, 'a', 1, NULL)")
    assert warnings == []


def test_watch_administration_rolls_back(db, orders):
    def state():
        return (
            db.execute("SELECT count(*) FROM pg_mq_watches").fetchone()[0],
            db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass").fetchone()[0],
        )

    with pytest.raises(psycopg.errors.RaiseException), db.transaction():
        db.execute("SELECT pg_mq_watch_notify('orders', 'rb1')")
        db.execute("SELECT pg_mq_watch_queue('orders', 'rbq1')")
        assert state() == (2, 8)
        db.execute("DO $$ BEGIN RAISE EXCEPTION 'undo'; END $$")
    assert state() == (0, 0)
    assert db.execute("SELECT count(*) FROM pg_mq_config_catalog WHERE channel = 'rbq1'").fetchone()[0] == 0
    db.execute("SELECT pg_mq_watch_notify('orders', 'rb2')")
    with db.transaction():
        db.execute("SAVEPOINT s")
        db.execute("SELECT pg_mq_unwatch('orders')")
        db.execute("SELECT pg_mq_watch_notify('orders', 'rb3', operations => '{INSERT}')")
        assert state() == (1, 1)
        db.execute("ROLLBACK TO SAVEPOINT s")
    assert state() == (1, 4)
    assert db.execute("SELECT target FROM pg_mq_watches").fetchone()[0] == "rb2"


def test_partitioned_tables(db):
    """Rows through the parent and into a partition directly, a row moving between
    partitions, partitions created, attached and detached after the watch."""
    db.execute("CREATE TABLE parts (id int PRIMARY KEY, v text) PARTITION BY RANGE (id)")
    db.execute("CREATE TABLE parts_1 PARTITION OF parts FOR VALUES FROM (0) TO (100)")
    db.execute("CREATE TABLE parts_2 PARTITION OF parts FOR VALUES FROM (100) TO (200) PARTITION BY RANGE (id)")
    db.execute("CREATE TABLE parts_2a PARTITION OF parts_2 FOR VALUES FROM (100) TO (200)")
    fails(db, "SELECT pg_mq_watch_queue('parts_1', 'pq')", sqlstate="0A000", match="is a partition")
    db.execute("SELECT pg_mq_watch_queue('parts', 'pq')")
    db.execute("INSERT INTO parts VALUES (1, 'a'), (150, 'b')")  # through the parent
    db.execute("INSERT INTO parts_1 VALUES (2, 'c')")  # into a partition
    db.execute("INSERT INTO parts_2a VALUES (151, 'd')")  # into a sub-partition
    db.execute("UPDATE parts SET id = 160 WHERE id = 2")  # moves to another partition
    db.execute("UPDATE parts_1 SET v = 'e' WHERE id = 1")
    db.execute("DELETE FROM parts_2 WHERE id = 151")
    db.execute("CREATE TABLE parts_3 PARTITION OF parts FOR VALUES FROM (200) TO (300)")  # after the watch
    db.execute("INSERT INTO parts_3 VALUES (201, 'f')")
    db.execute("CREATE TABLE parts_4 (id int PRIMARY KEY, v text)")
    db.execute("ALTER TABLE parts ATTACH PARTITION parts_4 FOR VALUES FROM (300) TO (400)")
    db.execute("INSERT INTO parts_4 VALUES (301, 'g')")
    db.execute("ALTER TABLE parts DETACH PARTITION parts_1")
    db.execute("INSERT INTO parts_1 VALUES (3, 'not watched')")
    db.execute("TRUNCATE parts_3")
    got = [(e["op"], e["table"], e["pk"]["id"] if e["pk"] else None, e.get("partition")) for e in queued(db, "pq")]
    assert got == [
        ("INSERT", "parts", 1, None), ("INSERT", "parts", 150, None), ("INSERT", "parts", 2, None),
        ("INSERT", "parts", 151, None), ("DELETE", "parts", 2, None), ("INSERT", "parts", 160, None),
        ("UPDATE", "parts", 1, None), ("DELETE", "parts", 151, None), ("INSERT", "parts", 201, None),
        ("INSERT", "parts", 301, None), ("TRUNCATE", "parts", None, "public.parts_3"),
    ]  # fmt: skip
    # a snapshot reads through the parent: every partition, in key order
    db.execute("DELETE FROM pg_mq_queue_pq")
    assert db.execute("SELECT pg_mq_watch_snapshot('parts', batch_size => 2)").fetchone()[0] == 3
    assert [(e["op"], e["pk"]["id"]) for e in queued(db, "pq")] == [("READ", i) for i in (150, 160, 301)]
    count = "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pg\\_mq\\_watch\\_%' AND tgrelid = %s::regclass"
    assert db.execute(count.replace("%s", "'parts_1'")).fetchone()[0] == 0
    assert db.execute(count.replace("%s", "'parts_4'")).fetchone()[0] == 4
    db.execute("SELECT pg_mq_unwatch('parts')")
    assert db.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pg\\_mq\\_watch\\_%'").fetchone()[0] == 0


def test_a_watched_partitioned_table_survives_a_new_oid(db):
    """After a restore, the first statement may write into a partition directly: the watch
    adopts the partitioned table's new oid there, and the events are sent."""
    db.execute("CREATE TABLE parts (id int PRIMARY KEY, v text) PARTITION BY RANGE (id)")
    db.execute("CREATE TABLE parts_1 PARTITION OF parts FOR VALUES FROM (0) TO (100)")
    wid = db.execute("SELECT pg_mq_watch_queue('parts', 'pnew')").fetchone()[0]
    db.execute("UPDATE pg_mq_watch SET relid = 4000000000 WHERE watch_id = %s", (wid,))  # a dropped table's oid
    db.execute("INSERT INTO parts_1 VALUES (1, 'a')")
    db.execute("INSERT INTO parts VALUES (2, 'b')")
    assert [(e["table"], e["pk"]["id"]) for e in queued(db, "pnew")] == [("parts", 1), ("parts", 2)]
    assert db.execute("SELECT watched_table::text FROM pg_mq_watches").fetchone()[0] == "parts"
