"""Nothing committed is lost: kept messages, flush, relay, strict mode, the status view."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg
from servers import free_port

if TYPE_CHECKING:
    from conftest import Rabbit


def warnings_of(conn: psycopg.Connection) -> list[str]:
    seen: list[str] = []
    conn.add_notice_handler(lambda d: seen.append(f"{d.severity}: {d.message_primary}"))
    return seen


def depth(db: psycopg.Connection) -> int:
    return db.execute("SELECT count(*) FROM amqp.outbox").fetchone()[0]


def dead_broker(db: psycopg.Connection) -> tuple[int, int]:
    """A broker row pointing at a loopback port nobody listens on: (broker_id, port)."""
    port = free_port()
    bid = db.execute(
        "INSERT INTO amqp.broker (host, port, vhost, username, password, connect_timeout)"
        " VALUES ('127.0.0.1', %s, '/', 'guest', 'guest', 1) RETURNING broker_id",
        (port,),
    ).fetchone()[0]
    return bid, port


def test_broker_down_commit_succeeds_keeps_messages_and_flush_delivers_them_in_order(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit
) -> None:
    db = connect()
    bid, _ = dead_broker(db)
    queue = rabbit.queue()
    conn = connect(autocommit=False)
    seen = warnings_of(conn)
    for i in range(5):
        conn.execute("SELECT amqp.publish(%s, '', %s, %s)", (bid, queue, f"m{i}"))
    conn.commit()  # must not raise
    assert any("WARNING" in w and "kept in amqp.outbox" in w and "cannot connect" in w for w in seen), seen
    assert depth(db) == 5
    status = db.execute(
        "SELECT outbox_depth, failed, oldest_kept_at IS NOT NULL, last_error FROM amqp.status WHERE broker_id = %s",
        (bid,),
    ).fetchone()
    assert status[:3] == (5, 0, True)
    assert "cannot connect" in status[3] and "127.0.0.1" in status[3]

    db.execute("UPDATE amqp.broker SET port = %s WHERE broker_id = %s", (rabbit.port, bid))
    assert db.execute("SELECT amqp.flush()").fetchone() == (5,)
    assert [b for _, b in rabbit.drain(queue, 5)] == [f"m{i}" for i in range(5)]
    assert depth(db) == 0
    assert db.execute("SELECT outbox_depth FROM amqp.status WHERE broker_id = %s", (bid,)).fetchone() == (0,)


def test_relay_procedure_delivers_kept_messages_and_exits_when_empty(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit
) -> None:
    db = connect()
    bid, _ = dead_broker(db)
    queue = rabbit.queue()
    conn = connect(autocommit=False)
    for tx in range(3):
        for i in range(4):
            conn.execute("SELECT amqp.publish(%s, '', %s, %s)", (bid, queue, f"{tx}.{i}"))
        conn.commit()
    assert depth(db) == 12
    db.execute("UPDATE amqp.broker SET port = %s WHERE broker_id = %s", (rabbit.port, bid))
    db.execute("CALL amqp.relay(batch_size => 5, run_for => '30 seconds', exit_when_empty => true)")
    assert [b for _, b in rabbit.drain(queue, 12)] == [f"{tx}.{i}" for tx in range(3) for i in range(4)]
    assert depth(db) == 0


def test_relay_waits_for_the_broker_and_stops_after_run_for(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit
) -> None:
    db = connect()
    bid, _ = dead_broker(db)
    db.execute("SELECT amqp.publish(%s, '', 'nowhere', 'x')", (bid,))
    seen = warnings_of(db)
    db.execute("CALL amqp.relay(poll_interval => 0.2, run_for => '1 second')")
    assert depth(db) == 1
    assert sum("amqp.relay: cannot deliver yet" in w for w in seen) == 1  # reported once, not every poll


def test_strict_broker_sends_only_through_the_relay(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int
) -> None:
    db = connect()
    db.execute("UPDATE amqp.broker SET strict = true WHERE broker_id = %s", (broker,))
    queue = rabbit.queue()
    conn = connect(autocommit=False)
    conn.execute("SELECT amqp.publish(%s, '', %s, 'strict')", (broker, queue))
    conn.commit()
    assert rabbit.drain(queue, 1, timeout=1) == []
    assert depth(db) == 1
    db.execute("CALL amqp.relay(run_for => '30 seconds', exit_when_empty => true)")
    assert [b for _, b in rabbit.drain(queue, 1)] == ["strict"]
    assert depth(db) == 0


def test_strict_session_setting_sends_only_through_the_relay(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int
) -> None:
    queue = rabbit.queue()
    conn = connect()
    conn.execute("SET pg_message_queue.amqp_strict = on")
    conn.execute("SELECT amqp.publish(%s, '', %s, 'strict')", (broker, queue))
    conn.execute("RESET pg_message_queue.amqp_strict")
    conn.execute("SELECT amqp.publish(%s, '', %s, 'direct')", (broker, queue))
    assert [b for _, b in rabbit.drain(queue, 1)] == ["direct"]
    assert depth(conn) == 1
    assert conn.execute("SELECT amqp.flush()").fetchone() == (1,)
    assert [b for _, b in rabbit.drain(queue, 1)] == ["strict"]


def test_unroutable_mandatory_message_is_reported_and_kept_as_failed(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int
) -> None:
    db = connect()
    queue = rabbit.queue()
    seen = warnings_of(db)
    db.execute("SELECT amqp.publish(%s, '', 'no-such-queue', 'lost?', mandatory => true)", (broker,))
    assert any("unroutable" in w and "NO_ROUTE" in w for w in seen), seen
    row = db.execute("SELECT failed, last_error FROM amqp.outbox").fetchone()
    assert row[0] is True and "NO_ROUTE" in row[1]
    assert db.execute("SELECT failed FROM amqp.status WHERE broker_id = %s", (broker,)).fetchone() == (1,)
    # failed rows are not retried blindly; once routable, retry_failed + flush delivers
    assert db.execute("SELECT amqp.flush()").fetchone() == (0,)
    db.execute("UPDATE amqp.outbox SET routing_key = %s", (queue,))
    assert db.execute("SELECT amqp.retry_failed()").fetchone() == (1,)
    assert db.execute("SELECT amqp.flush()").fetchone() == (1,)
    assert [b for _, b in rabbit.drain(queue, 1)] == ["lost?"]


def test_message_to_missing_exchange_is_refused_and_the_rest_still_delivered(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int
) -> None:
    db = connect()
    queue = rabbit.queue()
    conn = connect(autocommit=False)
    seen = warnings_of(conn)
    conn.execute("SELECT amqp.publish(%s, '', %s, 'before')", (broker, queue))
    conn.execute("SELECT amqp.publish(%s, 'no-such-exchange', 'x', 'refused')", (broker,))
    conn.execute("SELECT amqp.publish(%s, '', %s, 'after')", (broker, queue))
    conn.commit()
    assert any("404" in w and "no-such-exchange" in w for w in seen), seen
    failed = db.execute("SELECT message, last_error FROM amqp.outbox WHERE failed").fetchall()
    assert [m for m, _ in failed] == ["refused"] and "NOT_FOUND" in failed[0][1]
    # 'before' may have been routed with its confirm lost in the channel close: then
    # it is kept and sent again, with the same message_id (consumers deduplicate).
    db.execute("SELECT amqp.flush()")
    got = rabbit.drain(queue, 2)
    first_seen = list(dict.fromkeys(b for _, b in got))
    assert first_seen == ["before", "after"]
    by_body = {}
    for props, body in got:
        by_body.setdefault(body, set()).add(props.message_id)
    assert all(len(ids) == 1 for ids in by_body.values())
    assert db.execute("SELECT count(*) FROM amqp.outbox WHERE NOT failed").fetchone() == (0,)


def test_message_that_cannot_be_encoded_is_kept_as_failed_and_the_rest_delivered(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int
) -> None:
    db = connect()
    queue = rabbit.queue()
    conn = connect(autocommit=False)
    seen = warnings_of(conn)
    conn.execute("SELECT amqp.publish(%s, '', %s, 'before')", (broker, queue))
    conn.execute("SELECT amqp.publish(%s, '', %s, 'too long', correlation_id => repeat('c', 300))", (broker, queue))
    conn.execute("SELECT amqp.publish(%s, '', %s, 'after')", (broker, queue))
    conn.commit()
    assert [b for _, b in rabbit.drain(queue, 2)] == ["before", "after"]
    assert any("255" in w for w in seen), seen
    failed = db.execute("SELECT message, last_error FROM amqp.outbox WHERE failed").fetchall()
    assert [m for m, _ in failed] == ["too long"] and "cannot be encoded" in failed[0][1]
    assert db.execute("SELECT count(*) FROM amqp.outbox").fetchone() == (1,)
