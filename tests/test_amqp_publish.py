"""amqp.publish: on commit, with confirms, against the session's real RabbitMQ.

What arrived is read back with pika (``rabbit.drain``), never assumed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg
import pytest

if TYPE_CHECKING:
    from conftest import Rabbit


def outbox_depth(db: psycopg.Connection) -> int:
    return db.execute("SELECT count(*) FROM amqp.outbox").fetchone()[0]


def test_seed_001_publish_verbatim(db: psycopg.Connection, rabbit: Rabbit, broker: int) -> None:
    db.execute("SELECT amqp.exchange_declare(1, 'amqp.direct', 'direct', false, true, false)")
    queue = rabbit.queue("amqp.direct", "foo")
    assert db.execute("SELECT amqp.publish(1, 'amqp.direct', 'foo', 'message');").fetchone() == (True,)
    got = rabbit.drain(queue, 1)
    assert [body for _, body in got] == ["message"]
    assert outbox_depth(db) == 0


def test_seed_002_trigger_publishes_row_as_json(db: psycopg.Connection, rabbit: Rabbit, broker: int) -> None:
    queue = rabbit.queue()  # bound to the default exchange under its own name
    db.execute("CREATE TABLE systemmetadata (guid text PRIMARY KEY, size int)")
    db.execute(
        """
CREATE OR REPLACE FUNCTION sysmeta_amqp() RETURNS trigger as $sysmeta_amqp$
BEGIN
    PERFORM amqp.publish(
      1,                      -- broker id
      '',                     -- vhost name
      'sysm_watch',           -- queue name
      row_to_json(NEW)::text, -- payload
      1,                      -- 1=not persistent, 2=persistent
      'application/json',     -- message type
      '',                     -- reply_to
      TG_OP                   -- correlation_id
      );
    RETURN NULL;
END;
$sysmeta_amqp$ LANGUAGE plpgsql;
""".replace("sysm_watch", queue)
    )
    db.execute(
        "CREATE TRIGGER sysmeta_amqp AFTER INSERT OR UPDATE ON systemmetadata"
        " FOR EACH ROW EXECUTE PROCEDURE sysmeta_amqp()"
    )
    db.execute("INSERT INTO systemmetadata VALUES ('a', 1)")
    db.execute("UPDATE systemmetadata SET size = 2")
    got = rabbit.drain(queue, 2)
    assert [json.loads(body) for _, body in got] == [{"guid": "a", "size": 1}, {"guid": "a", "size": 2}]
    assert [p.correlation_id for p, _ in got] == ["INSERT", "UPDATE"]
    assert {(p.content_type, p.delivery_mode, p.reply_to) for p, _ in got} == {("application/json", 1, "")}


def test_commit_delivers_and_empties_outbox(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int
) -> None:
    queue = rabbit.queue()
    conn = connect(autocommit=False)
    conn.execute("SELECT amqp.publish(%s, '', %s, 'one')", (broker, queue))
    conn.execute("SELECT amqp.publish(%s, '', %s, 'two')", (broker, queue))
    assert rabbit.drain(queue, 1, timeout=0.5) == []  # nothing leaves before commit
    conn.commit()
    assert [b for _, b in rabbit.drain(queue, 2)] == ["one", "two"]
    assert outbox_depth(connect()) == 0


def test_rollback_delivers_nothing(connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int) -> None:
    queue = rabbit.queue()
    conn = connect(autocommit=False)
    conn.execute("SELECT amqp.publish(%s, '', %s, 'lost')", (broker, queue))
    conn.rollback()
    conn.execute("SELECT amqp.publish(%s, '', %s, 'after')", (broker, queue))
    conn.commit()
    assert [b for _, b in rabbit.drain(queue, 1)] == ["after"]


def test_rollback_to_savepoint_drops_only_its_messages(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int
) -> None:
    queue = rabbit.queue()
    conn = connect(autocommit=False)
    conn.execute("SELECT amqp.publish(%s, '', %s, 'kept-1')", (broker, queue))
    conn.execute("SAVEPOINT s")
    conn.execute("SELECT amqp.publish(%s, '', %s, 'undone')", (broker, queue))
    conn.execute("ROLLBACK TO SAVEPOINT s")
    conn.execute("SELECT amqp.publish(%s, '', %s, 'kept-2')", (broker, queue))
    conn.commit()
    assert [b for _, b in rabbit.drain(queue, 2)] == ["kept-1", "kept-2"]


def test_savepoint_covering_every_publish_delivers_nothing(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int
) -> None:
    queue = rabbit.queue()
    conn = connect(autocommit=False)
    conn.execute("SAVEPOINT s")
    conn.execute("SELECT amqp.publish(%s, '', %s, 'undone')", (broker, queue))
    conn.execute("ROLLBACK TO SAVEPOINT s")
    conn.commit()
    assert rabbit.drain(queue, 1, timeout=1) == []


def test_publish_after_a_savepoint_undid_the_first_one_is_delivered(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int
) -> None:
    """Only a transaction's first message queues the commit trigger's event; when a
    rollback to a savepoint takes that message away, the next one queues its own."""
    queue = rabbit.queue()
    conn = connect(autocommit=False)
    conn.execute("SAVEPOINT s")
    conn.execute("SELECT amqp.publish(%s, '', %s, 'undone')", (broker, queue))
    conn.execute("ROLLBACK TO SAVEPOINT s")
    conn.execute("SELECT amqp.publish(%s, '', %s, 'kept-1')", (broker, queue))
    conn.execute("SAVEPOINT t")
    conn.execute("SELECT amqp.publish(%s, '', %s, 'kept-2')", (broker, queue))
    conn.execute("RELEASE SAVEPOINT t")
    conn.commit()
    assert [b for _, b in rabbit.drain(queue, 2)] == ["kept-1", "kept-2"]
    assert rabbit.drain(queue, 1, timeout=0.5) == []
    assert outbox_depth(conn) == 0


def test_constraints_immediate_still_sends_everything_at_commit(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int
) -> None:
    """SET CONSTRAINTS ALL IMMEDIATE does not make messages leave early (the trigger
    defers itself again); every statement's messages are sent at commit, not left for the relay."""
    queue = rabbit.queue()
    conn = connect(autocommit=False)
    conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
    conn.execute("SELECT count(amqp.publish(%s, '', %s, 'a' || i)) FROM generate_series(1, 3) i", (broker, queue))
    conn.execute("SELECT amqp.publish(%s, '', %s, 'b')", (broker, queue))
    conn.commit()
    assert [b for _, b in rabbit.drain(queue, 4)] == ["a1", "a2", "a3", "b"]
    assert outbox_depth(conn) == 0


def test_autonomous_publish_delivers_even_if_the_transaction_rolls_back(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int
) -> None:
    queue = rabbit.queue()
    conn = connect(autocommit=False)
    assert conn.execute("SELECT amqp.autonomous_publish(%s, '', %s, 'now')", (broker, queue)).fetchone() == (True,)
    conn.rollback()
    assert [b for _, b in rabbit.drain(queue, 1)] == ["now"]


@pytest.mark.parametrize("fn", ["publish", "autonomous_publish"])
def test_properties_arrive_as_sent(db: psycopg.Connection, rabbit: Rabbit, broker: int, fn: str) -> None:
    queue = rabbit.queue()
    db.execute(
        f"SELECT amqp.{fn}(%s, '', %s, 'body', delivery_mode => 2, content_type => 'text/plain',"
        " reply_to => 'replies', correlation_id => 'c-1', headers => '{\"k\": \"v\", \"n\": 3}',"
        " message_id => 'm-1', expiration => '60000', priority => 5)",
        (broker, queue),
    )
    [(p, body)] = rabbit.drain(queue, 1)
    assert body == "body"
    assert (p.delivery_mode, p.content_type, p.reply_to, p.correlation_id) == (2, "text/plain", "replies", "c-1")
    assert (p.message_id, p.expiration, p.priority) == ("m-1", "60000", 5)
    assert p.headers["k"] == "v" and p.headers["n"] == 3


def test_every_message_has_a_unique_id_and_the_source_txid(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int
) -> None:
    queue = rabbit.queue()
    conn = connect(autocommit=False)
    for i in range(3):
        conn.execute("SELECT amqp.publish(%s, '', %s, %s)", (broker, queue, str(i)))
    txid = conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0]
    conn.commit()
    got = rabbit.drain(queue, 3)
    assert len({p.message_id for p, _ in got}) == 3
    assert {p.headers["x-pg-txid"] for p, _ in got} == {txid}


def test_order_is_kept_within_and_across_transactions(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int
) -> None:
    queue = rabbit.queue()
    conn = connect(autocommit=False)
    sent = []
    for tx in range(10):
        for i in range(20):
            conn.execute("SELECT amqp.publish(%s, '', %s, %s)", (broker, queue, f"{tx}-{i}"))
            sent.append(f"{tx}-{i}")
        conn.commit()
    assert [b for _, b in rabbit.drain(queue, len(sent))] == sent


def test_unicode_body_arrives_intact(db: psycopg.Connection, rabbit: Rabbit, broker: int) -> None:
    queue = rabbit.queue()
    text = "héllo wörld ✓ 日本"
    db.execute("SELECT amqp.publish(%s, '', %s, %s)", (broker, queue, text))
    assert [b for _, b in rabbit.drain(queue, 1)] == [text]


def test_nacks_in_the_middle_of_a_pipelined_batch_keep_exactly_the_refused_messages(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int
) -> None:
    # A queue that takes 3 messages and makes the broker nack the rest (reject-publish):
    # one commit's batch of 8 is confirmed for its first 3 and nacked for the others.
    name = rabbit.queue()
    ch = rabbit.channel()
    ch.queue_delete(name)
    ch.queue_declare(name, arguments={"x-max-length": 3, "x-overflow": "reject-publish"})
    ch.connection.close()
    conn = connect(autocommit=False)
    seen: list[str] = []
    conn.add_notice_handler(lambda d: seen.append(d.message_primary or ""))
    conn.execute("SELECT count(amqp.publish(%s, '', %s, 'm' || i)) FROM generate_series(1, 8) AS i", (broker, name))
    conn.commit()
    admin = connect()
    kept = admin.execute("SELECT message, failed, last_error FROM amqp.outbox ORDER BY id").fetchall()
    assert [m for m, _, _ in kept] == ["m4", "m5", "m6", "m7", "m8"]
    assert all(failed and "nacked" in (error or "") for _, failed, error in kept), kept
    assert any("5 message(s)" in w and "not confirmed at commit" in w for w in seen), seen
    assert [b for _, b in rabbit.drain(name, 3)] == ["m1", "m2", "m3"]  # drained: room again
    # once made eligible again, the relay's flush sends the kept ones, in order
    assert admin.execute("SELECT amqp.retry_failed(%s)", (broker,)).fetchone() == (5,)
    assert admin.execute("SELECT amqp.flush(%s)", (broker,)).fetchone() == (3,)
    assert [b for _, b in rabbit.drain(name, 3)] == ["m4", "m5", "m6"]
    assert [m for (m,) in admin.execute("SELECT message FROM amqp.outbox ORDER BY id")] == ["m7", "m8"]


def test_a_transactions_first_message_arms_the_commit_hook_and_the_others_skip_the_trigger(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int
) -> None:
    # Only the first row goes to the table with the commit-time trigger; the rest (and a
    # strict row) to its trigger-less child amqp._outbox_rest; a savepoint rollback that
    # undid the first row makes the next one arm again. Everything is sent at commit.
    queue = rabbit.queue()
    conn = connect(autocommit=False)
    where = "SELECT tableoid::regclass::text, message FROM amqp.outbox ORDER BY id"
    conn.execute("SAVEPOINT s")
    conn.execute("SELECT amqp.publish(%s, '', %s, 'undone')", (broker, queue))
    conn.execute("ROLLBACK TO SAVEPOINT s")
    for body in ("a", "b", "c"):
        conn.execute("SELECT amqp.publish(%s, '', %s, %s)", (broker, queue, body))
    assert conn.execute(where).fetchall() == [
        ("amqp.outbox", "a"),
        ("amqp._outbox_rest", "b"),
        ("amqp._outbox_rest", "c"),
    ]
    conn.commit()
    assert [b for _, b in rabbit.drain(queue, 3)] == ["a", "b", "c"]
    assert connect().execute("SELECT count(*) FROM amqp.outbox").fetchone() == (0,)
    conn.execute("SET pg_message_queue.amqp_strict = on")
    conn.execute("SELECT amqp.publish(%s, '', %s, 'strict')", (broker, queue))
    assert conn.execute(where).fetchall() == [("amqp._outbox_rest", "strict")]
    conn.commit()
    assert rabbit.drain(queue, 1, timeout=0.5) == []  # strict: the relay sends it
    assert connect().execute("SELECT amqp.flush(%s)", (broker,)).fetchone() == (1,)
    assert [b for _, b in rabbit.drain(queue, 1)] == ["strict"]
