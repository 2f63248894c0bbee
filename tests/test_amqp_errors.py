"""Bad input: a clear SQLSTATE and a message naming the culprit, nothing half-done, no hang."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import psycopg
import pytest
from helpers import fails
from servers import free_port

if TYPE_CHECKING:
    from conftest import Rabbit

FNS = ["publish", "autonomous_publish"]


@pytest.mark.parametrize("fn", FNS)
def test_unknown_broker_id(db: psycopg.Connection, broker: int, fn: str) -> None:
    fails(db, f"SELECT amqp.{fn}(99, '', 'q', 'm')", sqlstate="42704", match=r"no AMQP broker with broker_id 99")
    assert db.execute("SELECT count(*) FROM amqp.outbox").fetchone() == (0,)


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize(
    ("args", "name"),
    [("NULL, 'q', 'm'", "exchange"), ("'', NULL, 'm'", "routing_key"), ("'', 'q', NULL", "message")],
)
def test_null_arguments(db: psycopg.Connection, broker: int, fn: str, args: str, name: str) -> None:
    fails(db, f"SELECT amqp.{fn}(1, {args})", sqlstate="22004", match=f"{name} must not be NULL")
    assert db.execute("SELECT count(*) FROM amqp.outbox").fetchone() == (0,)


@pytest.mark.parametrize(
    ("arg", "match"),
    [
        ("delivery_mode => 3", "delivery_mode must be 1"),
        ("priority => 300", "priority must be between"),
        ("expiration => 'soon'", "expiration must be a number"),
        ("headers => '[1]'", "headers must be a JSON object"),
    ],
)
def test_bad_property_values(db: psycopg.Connection, broker: int, arg: str, match: str) -> None:
    fails(db, f"SELECT amqp.publish(1, '', 'q', 'm', {arg})", sqlstate="22023", match=match)


def test_wrong_credentials_name_user_and_host(db: psycopg.Connection, rabbit: Rabbit) -> None:
    db.execute(
        "INSERT INTO amqp.broker (host, port, vhost, username, password) VALUES ('127.0.0.1', %s, '/', 'guest', 'bad')",
        (rabbit.port,),
    )
    msg = fails(
        db, "SELECT amqp.autonomous_publish(1, '', 'q', 'm')", sqlstate="28P01", match="refused the credentials"
    )
    assert f"guest@127.0.0.1:{rabbit.port}" in msg and "bad" not in msg
    fails(db, "SELECT amqp.exchange_declare(1, 'x', 'direct', false, false)", sqlstate="28P01", match="credentials")


def test_wrong_credentials_at_commit_warn_and_keep(db: psycopg.Connection, rabbit: Rabbit) -> None:
    db.execute(
        "INSERT INTO amqp.broker (host, port, vhost, username, password) VALUES ('127.0.0.1', %s, '/', 'guest', 'bad')",
        (rabbit.port,),
    )
    seen: list[str] = []
    db.add_notice_handler(lambda d: seen.append(d.message_primary or ""))
    db.execute("SELECT amqp.publish(1, '', 'q', 'm')")
    assert any("refused the credentials" in w for w in seen), seen
    assert db.execute("SELECT count(*) FROM amqp.outbox").fetchone() == (1,)


def test_unreachable_host_fails_fast(db: psycopg.Connection) -> None:
    port = free_port()
    db.execute(
        "INSERT INTO amqp.broker (host, port, connect_timeout) VALUES ('127.0.0.1', %s, 1)",
        (port,),
    )
    start = time.monotonic()
    msg = fails(db, "SELECT amqp.autonomous_publish(1, '', 'q', 'm')", sqlstate="08001", match="cannot connect")
    assert f"127.0.0.1:{port}" in msg
    assert time.monotonic() - start < 5


def test_blackholed_host_is_bounded_by_connect_timeout(db: psycopg.Connection) -> None:
    # TEST-NET-1 (RFC 5737): never routed; either refused at once or silent until the timeout.
    db.execute("INSERT INTO amqp.broker (host, port, connect_timeout) VALUES ('192.0.2.1', 5672, 1)")
    start = time.monotonic()
    fails(db, "SELECT amqp.autonomous_publish(1, '', 'q', 'm')", sqlstate="08001", match="192.0.2.1:5672")
    assert time.monotonic() - start < 4


def test_exchange_declare_and_passive_check(db: psycopg.Connection, broker: int) -> None:
    assert db.execute("SELECT amqp.exchange_declare(1, 'ex.decl', 'fanout', false, false, true)").fetchone() == (True,)
    assert db.execute("SELECT amqp.exchange_declare(1, 'ex.decl', 'fanout', true, false, true)").fetchone() == (True,)
    fails(
        db,
        "SELECT amqp.exchange_declare(1, 'ex.missing', 'direct', true, false)",
        sqlstate="42704",
        match="ex.missing",
    )
    fails(db, "SELECT amqp.exchange_declare(1, 'ex.decl', 'topic', false, false, true)", sqlstate="55000", match="406")
    fails(db, "SELECT amqp.exchange_declare(1, NULL, 'topic', false, false)", sqlstate="22004", match="exchange")
    # the connection survives refused declarations
    assert db.execute("SELECT amqp.autonomous_publish(1, '', 'q', 'm')").fetchone() == (True,)


def test_autonomous_publish_to_missing_exchange_is_an_error(db: psycopg.Connection, broker: int) -> None:
    fails(db, "SELECT amqp.autonomous_publish(1, 'ex.none', 'q', 'm')", sqlstate="42704", match="ex.none")
    assert db.execute("SELECT amqp.autonomous_publish(1, '', 'q', 'm')").fetchone() == (True,)


def test_disconnect_is_harmless_and_reconnects(db: psycopg.Connection, rabbit: Rabbit, broker: int) -> None:
    queue = rabbit.queue()
    db.execute("SELECT amqp.disconnect(1)")  # not connected: nothing happens
    db.execute("SELECT amqp.publish(1, '', %s, 'a')", (queue,))
    db.execute("SELECT amqp.disconnect(broker_id) FROM amqp.broker")  # pg_amqp's idiom
    db.execute("SELECT amqp.publish(1, '', %s, 'b')", (queue,))
    assert [b for _, b in rabbit.drain(queue, 2)] == ["a", "b"]
