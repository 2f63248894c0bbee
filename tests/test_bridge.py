"""The NOTIFY -> AMQP bridge (python -m pg_message_queue.bridge, a real subprocess),
the channel map and pg_mq_notify, against a real PostgreSQL and a real RabbitMQ."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from helpers import as_role, wait_notifies

if TYPE_CHECKING:
    from conftest import Rabbit

ROOT = Path(__file__).resolve().parent.parent


class BridgeProcess:
    """``python -m pg_message_queue.bridge`` with its stderr in a file."""

    def __init__(self, tmp: Path, env: dict[str, str], args: list[str]) -> None:
        self.log = tmp / f"bridge-{uuid.uuid4().hex[:6]}.log"
        full = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "POSTGRESQL_", "AMQP_", "BRIDGE_"))}
        full.update(env)
        full["PYTHONPATH"] = str(ROOT / "plpython")
        with self.log.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pg_message_queue.bridge", *args],
                env=full,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, needle: str, count: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.text().count(needle) < count:
            if self.proc.poll() is not None:
                raise AssertionError(f"bridge exited ({self.proc.returncode}):\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {needle!r} x{count} from the bridge:\n{self.text()}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(15)


def outbox_depth_settles(db: psycopg.Connection, timeout: float = 15) -> int:
    """amqp.outbox's depth once it stops shrinking: 0 as soon as it is empty."""
    deadline = time.monotonic() + timeout
    while True:
        depth = db.execute("SELECT count(*) FROM amqp.outbox").fetchone()[0]
        if depth == 0 or time.monotonic() > deadline:
            return depth
        time.sleep(0.05)


@pytest.fixture
def start_bridge(tmp_path: Path, dsn: str) -> Iterator[Callable[..., BridgeProcess]]:
    started: list[BridgeProcess] = []

    def _start(*args: str, env: dict[str, str] | None = None, ready: bool = True) -> BridgeProcess:
        b = BridgeProcess(tmp_path, {"POSTGRESQL_URI": dsn, **(env or {})}, list(args))
        started.append(b)
        if ready:
            b.wait_for("ready:")
        return b

    yield _start
    for b in started:
        b.stop(signal.SIGKILL)


def _bodies(got: list[tuple]) -> list[str]:
    return [body for _, body in got]


# ---- the map and pg_mq_notify in SQL ---------------------------------------------------------


@pytest.fixture
def dead_broker(db: psycopg.Connection) -> int:
    """A broker nobody answers for: what is published stays in amqp.outbox, for inspection."""
    return db.execute(
        "INSERT INTO amqp.broker (host, port, connect_timeout) VALUES ('127.0.0.1', 1, 1) RETURNING broker_id"
    ).fetchone()[0]


@pytest.mark.parametrize(
    ("call", "sqlstate", "words"),
    [
        ("pg_mq_bridge_map(NULL, {b}, 'ex')", "22004", "channel must not be NULL"),
        ("pg_mq_bridge_map('', {b}, 'ex')", "22023", "channel must not be empty"),
        ("pg_mq_bridge_map(repeat('é', 32), {b}, 'ex')", "42622", "64 bytes, at most 63"),
        ("pg_mq_bridge_map(E'a\\nb', {b}, 'ex')", "22023", "control character (U+000A)"),
        ("pg_mq_bridge_map('pg_mq_bridge', {b}, 'ex')", "22023", "control channel"),
        ("pg_mq_bridge_map('c', NULL, 'ex')", "22004", "broker_id must not be NULL"),
        ("pg_mq_bridge_map('c', 424242, 'ex')", "42704", "no AMQP broker with broker_id 424242"),
        ("pg_mq_bridge_map('c', {b}, NULL)", "22004", "exchange must not be NULL"),
        ("pg_mq_bridge_map('c', {b}, repeat('x', 256))", "22023", "exchange"),
        ("pg_mq_bridge_map('c', {b}, 'ex', repeat('k', 256))", "22023", "routing_key"),
        ("pg_mq_bridge_map('c', {b}, 'ex', 'k', 3)", "22023", "delivery_mode must be 1"),
        ("pg_mq_bridge_unmap(NULL)", "22004", "channel must not be NULL"),
        ("pg_mq_notify(NULL, 'x')", "22004", "channel must not be NULL"),
        ("pg_mq_notify('', 'x')", "22023", "channel must not be empty"),
        ("pg_mq_notify(repeat('x', 64), 'x')", "42622", "64 bytes, at most 63"),
        ("pg_mq_notify(repeat('é', 32), 'x')", "42622", "64 bytes, at most 63"),
        ("pg_mq_notify(E'a\\nb', 'x')", "22023", "control character (U+000A)"),
        ("pg_mq_notify(E'tab\\there', 'x')", "22023", "control character (U+0009)"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error_and_no_partial_state(db, dead_broker, call, sqlstate, words):
    with pytest.raises(psycopg.Error) as info:
        db.execute("SELECT " + call.format(b=dead_broker))
    assert info.value.sqlstate == sqlstate
    assert words in str(info.value)
    assert db.execute("SELECT count(*) FROM pg_mq_bridge_channel").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM amqp.outbox").fetchone() == (0,)


def test_hostile_channel_names_are_mapped_and_notified_verbatim(db, connect, dead_broker):
    listener = connect()
    names = ['x"; DROP TABLE t; --', "Ünïcödé Chännel", "a" * 63, "Mixed Case"]
    for name in names:
        db.execute("SELECT pg_mq_bridge_map(%s, %s, 'ex', 'key')", (name, dead_broker))
        listener.execute(f'LISTEN "{name.replace(chr(34), chr(34) * 2)}"')
    for name in names:
        db.execute("SELECT pg_mq_notify(%s, %s)", (name, f"to {name}"))
    got = wait_notifies(listener, len(names))
    assert [(n.channel, n.payload) for n in got] == [(name, f"to {name}") for name in names]
    rows = db.execute("SELECT exchange, routing_key, message FROM amqp.outbox ORDER BY id").fetchall()
    assert rows == [("ex", "key", f"to {name}") for name in names]
    assert db.execute("SELECT count(*) FROM pg_mq_bridge_channel").fetchone() == (len(names),)
    assert db.execute("SELECT pg_mq_bridge_unmap(%s), pg_mq_bridge_unmap(%s)", (names[0], names[0])).fetchone() == (
        True,
        False,
    )


def test_pg_mq_notify_is_pg_notify_for_unmapped_channels(db, connect):
    listener = connect()
    listener.execute('LISTEN "plain"')
    db.execute("SELECT pg_mq_notify('plain', 'hello'), pg_mq_notify('plain', NULL)")
    assert [(n.channel, n.payload) for n in wait_notifies(listener, 2)] == [("plain", "hello"), ("plain", "")]
    assert db.execute("SELECT count(*) FROM amqp.outbox").fetchone() == (0,)
    with pytest.raises(psycopg.Error) as info:  # pg_notify's own limit, its own error
        db.execute("SELECT pg_mq_notify('plain', repeat('x', 8000))")
    assert info.value.sqlstate == "22023"


def test_pg_mq_notify_on_unmapped_unusual_names_is_pg_notify_too(db, connect):
    """Names outside printable ASCII go the Python way (which checks them); unmapped,
    they are still only a pg_notify, as are the 63-byte limit and the control channel."""
    listener = connect()
    names = ["Ünïcödé", "a" * 63, "é" * 31, 'q"; DROP TABLE x; --', "pg_mq_bridge"]
    for name in names:
        listener.execute(f'LISTEN "{name.replace(chr(34), chr(34) * 2)}"')
    for name in names:
        db.execute("SELECT pg_mq_notify(%s, %s)", (name, f"to {name}"))
    got = wait_notifies(listener, len(names))
    assert sorted((n.channel, n.payload) for n in got) == sorted((name, f"to {name}") for name in names)
    assert db.execute("SELECT count(*) FROM amqp.outbox").fetchone() == (0,)


def test_pg_mq_notify_sees_a_mapping_made_earlier_in_the_same_transaction(db, dead_broker):
    with db.transaction():
        db.execute("SELECT pg_mq_notify('late', 'k|before')")
        db.execute("SELECT pg_mq_bridge_map('late', %s, 'ex')", (dead_broker,))
        db.execute("SELECT pg_mq_notify('late', 'k|after')")
        db.execute("SELECT pg_mq_bridge_unmap('late')")
        db.execute("SELECT pg_mq_notify('late', 'k|unmapped again')")
    assert db.execute("SELECT message FROM amqp.outbox").fetchall() == [("after",)]


def test_pg_mq_notify_records_one_message_per_transaction_channel_and_payload(db, connect, dead_broker):
    """NOTIFY folds identical notifications of a transaction; so does the outbox. A rollback
    to a savepoint that removed the first record lets the second one record it again."""
    db.execute("SELECT pg_mq_bridge_map('ch', %s, 'ex', NULL)", (dead_broker,))
    tx = connect(autocommit=False)
    tx.execute("SELECT pg_mq_notify('ch', 'k1|same'), pg_mq_notify('ch', 'k1|same'), pg_mq_notify('ch', 'k2|other')")
    tx.execute("SAVEPOINT s")
    tx.execute("SELECT pg_mq_notify('ch', 'k3|undone')")
    tx.execute("ROLLBACK TO SAVEPOINT s")
    tx.execute("SAVEPOINT s2")
    tx.execute("SELECT pg_mq_notify('ch', 'k4|again')")
    tx.execute("ROLLBACK TO SAVEPOINT s2")
    tx.execute("SELECT pg_mq_notify('ch', 'k4|again')")
    txid = tx.execute("SELECT pg_current_xact_id()::text").fetchone()[0]
    tx.commit()
    rows = db.execute("SELECT routing_key, message, message_id, content_type FROM amqp.outbox ORDER BY id").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("k1", "same"), ("k2", "other"), ("k4", "again")]
    assert all(r[2].startswith(f"pg_mq_notify:{txid}:") and r[3] == "text/plain" for r in rows)
    assert len({r[2] for r in rows}) == 3


def test_a_rollback_records_and_notifies_nothing(db, connect, dead_broker):
    db.execute("SELECT pg_mq_bridge_map('ch', %s, 'ex', 'k')", (dead_broker,))
    listener = connect()
    listener.execute("LISTEN ch")
    tx = connect(autocommit=False)
    tx.execute("SELECT pg_mq_notify('ch', 'never')")
    tx.rollback()
    assert wait_notifies(listener, 1, timeout=1) == []
    assert db.execute("SELECT count(*) FROM amqp.outbox").fetchone() == (0,)


def test_map_and_unmap_roll_back(connect, dead_broker):
    """A rolled-back map leaves no row (and no reload for a running bridge); a rolled-back
    unmap leaves the mapping in place."""
    db = connect()
    tx = connect(autocommit=False)
    tx.execute("SELECT pg_mq_bridge_map('rb', %s, 'ex', 'rk')", (dead_broker,))
    tx.rollback()
    assert db.execute("SELECT count(*) FROM pg_mq_bridge_channel WHERE channel = 'rb'").fetchone() == (0,)
    db.execute("SELECT pg_mq_bridge_map('rb', %s, 'ex', 'rk')", (dead_broker,))
    tx.execute("SELECT pg_mq_bridge_unmap('rb')")
    tx.rollback()
    assert db.execute("SELECT routing_key FROM pg_mq_bridge_channel WHERE channel = 'rb'").fetchone() == ("rk",)


def test_who_may_map_read_the_map_and_notify(db, dsn, dead_broker):
    """Anyone may pg_mq_notify (as anyone may pg_notify): the map decides where it goes.
    Mapping is granted deliberately and needs USAGE on schema amqp; the map is readable
    only by roles granted SELECT (the bridge's)."""
    role = f"br_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE ROLE {role} LOGIN")
    try:
        db.execute("SELECT pg_mq_bridge_map('ch', %s, 'secret-exchange', 'secret.key')", (dead_broker,))
        with psycopg.connect(as_role(dsn, role), autocommit=True) as conn:
            conn.execute("SELECT pg_mq_notify('ch', 'from anyone')")
            for statement in (
                "SELECT * FROM pg_mq_bridge_channel",
                f"SELECT pg_mq_bridge_map('ch', {dead_broker}, 'elsewhere')",
                "SELECT pg_mq_bridge_unmap('ch')",
                "SELECT * FROM amqp.outbox",
                "SELECT amqp.publish(1, 'e', 'k', 'm')",
            ):
                with pytest.raises(psycopg.Error) as info:
                    conn.execute(statement)
                assert info.value.sqlstate == "42501", statement
            db.execute(f"GRANT EXECUTE ON FUNCTION pg_mq_bridge_map(text, integer, text, text, integer) TO {role}")
            with pytest.raises(psycopg.Error) as info:
                conn.execute(f"SELECT pg_mq_bridge_map('ch', {dead_broker}, 'elsewhere')")
            assert info.value.sqlstate == "42501" and "USAGE on schema amqp" in str(info.value)
            db.execute(f"GRANT USAGE ON SCHEMA amqp TO {role}")
            conn.execute(f"SELECT pg_mq_bridge_map('ch2', {dead_broker}, 'elsewhere')")
        assert db.execute("SELECT exchange, routing_key, message FROM amqp.outbox").fetchall() == [
            ("secret-exchange", "secret.key", "from anyone")
        ]
        assert db.execute("SELECT created_by FROM pg_mq_bridge_channel WHERE channel = 'ch2'").fetchone() == (role,)
    finally:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


# ---- the bridge process ---------------------------------------------------------------------


def test_notifications_arrive_with_the_mapped_routing_key(db, rabbit: Rabbit, broker, start_bridge):
    fixed = rabbit.queue("amq.topic", "orders.created")
    from_payload = rabbit.queue("amq.topic", "stock.*")
    db.execute("SELECT pg_mq_bridge_map('orders', %s, 'amq.topic', 'orders.created')", (broker,))
    hostile = 'St"ock Ünï; DROP TABLE x; --'
    db.execute("SELECT pg_mq_bridge_map(%s, %s, 'amq.topic')", (hostile, broker))
    bridge = start_bridge()
    db.execute("""SELECT pg_notify('orders', '{"id": 1}')""")
    db.execute("""NOTIFY orders, '{"id": 2}'""")
    db.execute("""SELECT pg_notify(%s, 'stock.apple|{"qty": 3}'), pg_notify(%s, 'nokey')""", (hostile, hostile))
    got = rabbit.drain(fixed, 2)
    assert _bodies(got) == ['{"id": 1}', '{"id": 2}']
    assert all(p.delivery_mode == 2 and p.content_type == "text/plain" and p.message_id for p, _ in got)
    assert _bodies(rabbit.drain(from_payload, 1)) == ['{"qty": 3}']  # "nokey" went with routing key ""

    # the map changes while the bridge runs: it reloads at once
    later = rabbit.queue("amq.topic", "later")
    db.execute("SELECT pg_mq_bridge_map('later', %s, 'amq.topic', 'later')", (broker,))
    db.execute("SELECT pg_mq_bridge_unmap('orders')")
    bridge.wait_for("bridging 2 channel(s)", count=2)
    db.execute("SELECT pg_notify('later', 'mapped after the start'), pg_notify('orders', 'no longer bridged')")
    assert _bodies(rabbit.drain(later, 1)) == ["mapped after the start"]
    assert rabbit.drain(fixed, 0, timeout=0.5) == []
    # the broker may hand a message on before the bridge's transaction that sent it commits
    assert outbox_depth_settles(db) == 0
    assert bridge.stop() == 0


def test_pg_amqp_bridge_configuration_and_payload_convention(db, rabbit: Rabbit, broker, start_bridge):
    """pg-amqp-bridge's README, verbatim: a queue, a direct exchange, a topic exchange,
    `routing_key|message` and `key|headers|message`, DELIVERY_MODE, an unquoted channel."""
    ch = rabbit.channel()
    task_queue = f"task_queue_{uuid.uuid4().hex[:6]}"
    ch.queue_declare(task_queue)
    ch.exchange_declare("direct_exchange", "direct")
    ch.exchange_declare("topic_exchange", "topic")
    ch.connection.close()
    direct = rabbit.queue("direct_exchange", "direct_key")
    topic = rabbit.queue("topic_exchange", "*.orange")
    env = {
        "AMQP_URI": f"amqp://guest:guest@127.0.0.1:{rabbit.port}/%2F",
        "BRIDGE_CHANNELS": f"PgChannel1:{task_queue}, pgchannel2 : direct_exchange,pgchannel3:topic_exchange,",
        "DELIVERY_MODE": "PERSISTENT",
    }
    bridge = start_bridge(env=env)
    assert "bridging 3 channel(s)" in bridge.text()
    db.execute("NOTIFY PgChannel1, 'Task message'")  # folded to pgchannel1, as LISTEN PgChannel1 was
    db.execute("NOTIFY pgchannel2, 'direct_key|Direct message'")
    db.execute("NOTIFY pgchannel3, 'quick.orange|Topic message'")
    db.execute("NOTIFY pgchannel2, 'direct_key|X-First-Header: value1, value2; X-Second-Header: value3|With headers'")
    got = rabbit.drain(task_queue, 1)
    assert _bodies(got) == ["Task message"]
    assert got[0][0].delivery_mode == 2 and got[0][0].content_type == "text"
    got = rabbit.drain(direct, 2)
    assert _bodies(got) == ["Direct message", "With headers"]
    headers = got[1][0].headers
    assert headers["X-First-Header"] == ["value1", "value2"] and headers["X-Second-Header"] == ["value3"]
    assert _bodies(rabbit.drain(topic, 1)) == ["Topic message"]
    assert bridge.stop() == 0


@pytest.mark.parametrize(
    ("env", "args", "words"),
    [
        ({"BRIDGE_CHANNELS": ":exchange1"}, [], "BRIDGE_CHANNELS: no bindings"),
        ({"BRIDGE_CHANNELS": "c1:e1,c1:e2", "PG_MQ_BRIDGE_BROKER_ID": "1"}, [], 'channel "c1" appears twice'),
        ({"BRIDGE_CHANNELS": "c1:e1"}, [], "BRIDGE_CHANNELS needs AMQP_URI"),
        ({"BRIDGE_CHANNELS": "c1:e1", "DELIVERY_MODE": "SOMETIMES"}, [], "PERSISTENT or NON-PERSISTENT"),
        ({"BRIDGE_CHANNELS": "x" * 64 + ":e1", "PG_MQ_BRIDGE_BROKER_ID": "1"}, [], "64 bytes, at most 63"),
        ({"PG_MQ_BRIDGE_BROKER_ID": "one", "BRIDGE_CHANNELS": "c:e"}, [], "must be an integer"),
        ({}, ["--flush-interval", "-3"], "--flush-interval must be seconds"),
        ({"POSTGRESQL_URI": "not a connection string"}, [], "not a connection string"),
        ({"POSTGRESQL_URI_FILE": "/nonexistent/uri"}, [], "POSTGRESQL_URI_FILE: cannot read /nonexistent/uri"),
        ({"BRIDGE_CHANNELS": "c1:e1", "PG_MQ_BRIDGE_BROKER_ID": "4242"}, [], "no AMQP broker with broker_id 4242"),
        ({"BRIDGE_CHANNELS": "c1:e1", "AMQP_URI": "amqp://guest:guest@10.9.9.9:5999/%2F"}, [], "no row of amqp.broker"),
        ({"BRIDGE_CHANNELS": "c1:no_such_entity", "AMQP_URI": "{amqp}"}, [], "'no_such_entity' doesn't exist"),
    ],
)
def test_bad_configuration_exits_with_status_2_and_says_why(dsn, rabbit, broker, start_bridge, env, args, words):
    env = {k: v.replace("{amqp}", f"amqp://guest:guest@127.0.0.1:{rabbit.port}/%2F") for k, v in env.items()}
    b = start_bridge(*args, env=env, ready=False)
    assert b.proc.wait(30) == 2, b.text()
    assert "pg-mq-bridge: configuration error:" in b.text() and words in b.text(), b.text()


def test_bad_configuration_of_the_database_side_exits_with_status_2(db, dsn, pg_server, start_bridge):
    role = f"brc_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE ROLE {role} LOGIN")
    try:
        b = start_bridge(env={"POSTGRESQL_URI": as_role(dsn, role)}, ready=False)
        assert b.proc.wait(30) == 2 and "has no USAGE on schema amqp" in b.text(), b.text()
        db.execute(f"GRANT USAGE ON SCHEMA amqp TO {role}")
        b = start_bridge(env={"POSTGRESQL_URI": as_role(dsn, role)}, ready=False)
        assert b.proc.wait(30) == 2 and "may not read public.pg_mq_bridge_channel" in b.text(), b.text()
        db.execute(f"GRANT SELECT ON pg_mq_bridge_channel TO {role}")
        b = start_bridge("--flush-interval", "1", env={"POSTGRESQL_URI": as_role(dsn, role)}, ready=False)
        assert b.proc.wait(30) == 2 and "may not EXECUTE amqp.flush" in b.text(), b.text()
        b = start_bridge(env={"POSTGRESQL_URI": as_role(dsn, role)})  # now it has what it needs
        assert b.stop() == 0
        b = start_bridge(env={"POSTGRESQL_URI": pg_server.dsn_for("postgres")}, ready=False)
        assert b.proc.wait(30) == 2 and "pg_message_queue is not installed" in b.text(), b.text()
    finally:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


def test_the_seeds_trigger_calling_pg_notify_is_bridged(db, rabbit: Rabbit, broker, start_bridge):
    """Seed 002's hand-written trigger, unchanged: its notifications reach RabbitMQ."""
    db.execute(
        """
        CREATE TABLE identifier (guid text PRIMARY KEY, docid text);
        CREATE TABLE systemmetadata (guid text PRIMARY KEY, size integer);
        CREATE FUNCTION sysmeta_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('sysm_watch', json_build_object('op', TG_OP, 'pid', NEW.guid,
                'docid', (SELECT docid FROM identifier WHERE guid = NEW.guid))::text);
            RETURN NULL;
        END $$;
        CREATE TRIGGER sysmeta_notify AFTER INSERT OR UPDATE ON systemmetadata
        FOR EACH ROW EXECUTE FUNCTION sysmeta_notify();
        """
    )
    queue = rabbit.queue("amq.topic", "sysmeta")
    db.execute("SELECT pg_mq_bridge_map('sysm_watch', %s, 'amq.topic', 'sysmeta')", (broker,))
    start_bridge()
    db.execute("INSERT INTO identifier VALUES ('urn:1', 'doc-1')")
    db.execute("INSERT INTO systemmetadata VALUES ('urn:1', 10), ('urn:2', 20)")
    db.execute("UPDATE systemmetadata SET size = 11 WHERE guid = 'urn:1'")
    assert _bodies(rabbit.drain(queue, 3)) == [
        '{"op" : "INSERT", "pid" : "urn:1", "docid" : "doc-1"}',
        '{"op" : "INSERT", "pid" : "urn:2", "docid" : null}',
        '{"op" : "UPDATE", "pid" : "urn:1", "docid" : "doc-1"}',
    ]


def test_the_bridge_reconnects_when_its_connection_is_lost(db, rabbit: Rabbit, broker, start_bridge):
    queue = rabbit.queue()
    db.execute("SELECT pg_mq_bridge_map('jobs', %s, '', %s)", (broker, queue))
    bridge = start_bridge()
    db.execute("SELECT pg_notify('jobs', 'before')")
    assert _bodies(rabbit.drain(queue, 1)) == ["before"]
    killed = db.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'pg-mq-bridge'"
        " AND datname = current_database()"
    ).fetchone()[0]
    assert killed == 1
    bridge.wait_for("ready:", count=2)
    db.execute("SELECT pg_notify('jobs', 'after')")
    assert _bodies(rabbit.drain(queue, 1)) == ["after"]
    assert "lost the PostgreSQL connection" in bridge.text()


def test_pg_mq_notify_loses_nothing_while_the_bridge_and_the_broker_are_down(
    db, connect, rabbit: Rabbit, broker, start_bridge
):
    """Both up, then the bridge killed (-9) and the broker stopped while transactions keep
    committing, then both restarted: every pg_mq_notify message arrives, exactly once, with
    its message_id; plain pg_notify sent while the bridge was down is lost (documented); a
    rollback sends nothing."""
    db.execute("UPDATE amqp.broker SET connect_timeout = 1, confirm_timeout = 5")
    queue = rabbit.queue(durable=True)
    db.execute("SELECT pg_mq_bridge_map('events', %s, '', %s)", (broker, queue))
    app = connect(autocommit=False)

    def commit(prefix: str, n: int, plain: bool = False) -> list[str]:
        sent = []
        for i in range(n):
            body = f"{prefix}-{i}"
            app.execute("SELECT pg_notify('events', %s)" if plain else "SELECT pg_mq_notify('events', %s)", (body,))
            sent.append(body)
            if i % 3 == 2:
                app.commit()
        app.commit()
        return sent

    bridge = start_bridge("--flush-interval", "0.5")
    expected = commit("up", 30) + commit("plain-up", 10, plain=True)
    app.execute("SELECT pg_mq_notify('events', 'rolled back')")
    app.rollback()
    first = rabbit.drain(queue, 40)
    assert sorted(_bodies(first)) == sorted(expected)

    bridge.stop(signal.SIGKILL)
    lost = commit("plain-bridge-down", 10, plain=True)
    expected += commit("bridge-down", 30)
    rabbit.node.stop()
    expected += commit("both-down", 30)
    assert db.execute("SELECT count(*) FROM amqp.outbox").fetchone()[0] >= 30  # kept by the outbox
    rabbit.node.restart()
    bridge = start_bridge("--flush-interval", "0.5")
    expected += commit("after", 30) + commit("plain-after", 10, plain=True)

    got = first + rabbit.drain(queue, len(expected) - len(first), timeout=60, settle=2)
    bodies = Counter(_bodies(got))
    assert set(bodies) == set(expected), (set(expected) - set(bodies), set(bodies) - set(expected))
    assert not set(lost) & set(bodies)  # plain NOTIFY while the bridge was down: gone
    assert "rolled back" not in bodies
    assert all(c == 1 for c in bodies.values()), [b for b, c in bodies.items() if c > 1]
    ids = [p.message_id for p, body in got if not body.startswith("plain")]
    assert all(i.startswith("pg_mq_notify:") for i in ids) and len(set(ids)) == len(ids)
    assert outbox_depth_settles(db) == 0
    assert bridge.stop() == 0
