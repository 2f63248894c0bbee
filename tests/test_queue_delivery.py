"""Delivery semantics: mark-delivered in the caller's transaction, SKIP LOCKED, NOTIFY."""

import threading

import pytest
from helpers import drain_concurrently, drain_notifies, fails, wait_notifies


def fill(db, channel="q", n=10):
    db.execute("SELECT pg_mq_create_queue(%s, 'text')", (channel,))
    db.execute("SELECT pg_mq_send_batch(%s, array_agg('m' || i)) FROM generate_series(1, %s) i", (channel, n))


def test_get_returns_oldest_first_and_marks_delivered(db):
    fill(db, n=5)
    first = db.execute("SELECT payload, delivered_at = now() FROM pg_mq_get_msg_text('q', 2)").fetchall()
    assert first == [("m1", True), ("m2", True)]
    rest = [r[0] for r in db.execute("SELECT payload FROM pg_mq_get_msg_text('q', 10)")]
    assert rest == ["m3", "m4", "m5"]
    delivered = db.execute("SELECT count(*) FROM pg_mq_queue_q WHERE delivered_at IS NOT NULL").fetchone()[0]
    assert delivered == 5


def test_rollback_returns_messages_to_queue(connect):
    db = connect()
    fill(db, n=3)
    tx = connect(autocommit=False)
    assert len(tx.execute("SELECT * FROM pg_mq_get_msg_text('q', 3)").fetchall()) == 3
    tx.rollback()
    again = [r[0] for r in db.execute("SELECT payload FROM pg_mq_get_msg_text('q', 3)")]
    assert again == ["m1", "m2", "m3"]


def test_rollback_to_savepoint_returns_messages(connect):
    db = connect()
    fill(db, n=2)
    tx = connect(autocommit=False)
    tx.execute("SAVEPOINT s")
    tx.execute("SELECT * FROM pg_mq_get_msg_text('q', 2)").fetchall()
    tx.execute("ROLLBACK TO SAVEPOINT s")
    assert [r[0] for r in tx.execute("SELECT payload FROM pg_mq_get_msg_text('q', 2)")] == ["m1", "m2"]
    tx.commit()


def test_competing_consumers_neither_block_nor_share(connect):
    db = connect()
    fill(db, n=4)
    a = connect(autocommit=False)
    b = connect(autocommit=False)
    b.execute("SET lock_timeout = '200ms'")  # blocking would raise instead of hanging
    got_a = [r[0] for r in a.execute("SELECT msg_id FROM pg_mq_get_msg_text('q', 2)")]
    got_b = [r[0] for r in b.execute("SELECT msg_id FROM pg_mq_get_msg_text('q', 10)")]
    assert len(got_a) == 2 and len(got_b) == 2
    assert not set(got_a) & set(got_b)
    a.commit()
    b.commit()


def test_get_by_id_marks_delivered_now_delivered_or_not_as_the_original(connect):
    db = connect()
    fill(db, n=2)
    first_id = db.execute("SELECT min(msg_id) FROM pg_mq_queue_q").fetchone()[0]
    tx = connect(autocommit=False)
    row = tx.execute("SELECT payload, delivered_at = now() FROM pg_mq_get_msg_id_text('q', %s)", (first_id,)).fetchone()
    assert row == ("m1", True)
    tx.commit()
    # Delivered already: the original hands it out again and sets delivered_at anew.
    row = tx.execute("SELECT payload, delivered_at = now() FROM pg_mq_get_msg_id_bin('q', %s)", (first_id,)).fetchone()
    assert row == (b"m1", True)
    tx.commit()
    assert db.execute("SELECT read_count FROM pg_mq_queue_q WHERE msg_id = %s", (first_id,)).fetchone() == (2,)
    assert [r[0] for r in db.execute("SELECT payload FROM pg_mq_get_msg_text('q', 5)")] == ["m2"]
    assert db.execute("SELECT * FROM pg_mq_get_msg_id_text('q', -1)").fetchall() == []


def test_results_have_the_original_columns_and_argument_types(db):
    """pg_mq_get_msg_* return msg_id, sent_at, sent_by, delivered_at, payload, and
    pg_mq_get_msg_text takes a bigint, as every release of the original did."""
    fill(db, n=3)
    cur = db.execute("SELECT * FROM pg_mq_get_msg_text('q', 1::bigint)")
    assert [c.name for c in cur.description] == ["msg_id", "sent_at", "sent_by", "delivered_at", "payload"]
    cur = db.execute("SELECT * FROM pg_mq_get_msg_bin('q', 1)")
    assert [c.name for c in cur.description] == ["msg_id", "sent_at", "sent_by", "delivered_at", "payload"]
    assert db.execute("SELECT count(*) FROM pg_mq_get_msg_text('q', 9223372036854775807)").fetchone() == (1,)
    args = db.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p"
        " WHERE p.proname IN ('pg_mq_get_msg_text', 'pg_mq_create_queue') ORDER BY 1"
    ).fetchall()
    assert args == [
        ("pg_mq_create_queue(text,regtype)",),
        ("pg_mq_create_queue(text,text)",),
        ("pg_mq_get_msg_text(name,bigint)",),
    ]


def test_create_queue_takes_a_regtype_as_the_original(db):
    row = db.execute("SELECT channel, payload_type::text FROM pg_mq_create_queue('r', 'inet'::regtype)").fetchone()
    assert row == ("r", "inet")
    # A quoted literal still resolves to the text form (no ambiguity), with its clear error.
    assert db.execute("SELECT channel FROM pg_mq_create_queue('s', 'date')").fetchone() == ("s",)
    fails(db, "SELECT pg_mq_create_queue('t', 'no_such_type')", sqlstate="42704", match="no_such_type")


def test_four_consumers_drain_ten_thousand_messages_exactly_once(connect, dsn):
    """Every consumer takes part: each one's first claim is made before any of them goes
    on (claims are fast enough that, on a busy machine, three consumers could otherwise
    drain the queue before the fourth is scheduled at all)."""
    db = connect()
    fill(db, n=10_000)
    first_claims = threading.Barrier(4)
    started = threading.local()

    def take(conn):
        with conn.transaction():
            ids = [r[0] for r in conn.execute("SELECT msg_id FROM pg_mq_get_msg_text('q', 50)")]
        if not getattr(started, "done", False):
            started.done = True
            first_claims.wait(60)
        return ids

    seen = drain_concurrently(dsn, 4, take)
    everything = [m for part in seen for m in part]
    assert len(everything) == 10_000
    assert len(set(everything)) == 10_000
    assert all(len(part) > 0 for part in seen), [len(p) for p in seen]
    left = db.execute("SELECT count(*) FROM pg_mq_queue_q WHERE delivered_at IS NULL").fetchone()[0]
    assert left == 0


def test_notification_arrives_after_commit_not_after_rollback(connect):
    db = connect()
    listener = connect()
    db.execute("SELECT pg_mq_create_queue('n', 'text')")
    listener.execute('LISTEN "n"')
    tx = connect(autocommit=False)
    tx.execute("SELECT pg_mq_send_message('n', 'pending'::text)")
    assert drain_notifies(listener) == []  # not before commit
    tx.rollback()
    assert drain_notifies(listener) == []  # nor after rollback
    msg_id = tx.execute("SELECT msg_id FROM pg_mq_send_message('n', 'sent'::text)").fetchone()[0]
    assert drain_notifies(listener) == []
    tx.commit()
    assert [n.payload for n in wait_notifies(listener, 1)] == [str(msg_id)]


def test_one_notification_per_sending_statement(connect):
    db = connect()
    listener = connect()
    db.execute("SELECT pg_mq_create_queue('n', 'text')")
    listener.execute('LISTEN "n"')
    ids = [r[0] for r in db.execute("SELECT pg_mq_send_batch('n', array_agg(i::text)) FROM generate_series(1, 100) i")]
    notes = wait_notifies(listener, 1)
    assert [n.payload for n in notes] == [str(max(ids))]
    assert drain_notifies(listener) == []
    with db.transaction():
        last = [db.execute("SELECT msg_id FROM pg_mq_send_message('n', 'x'::text)").fetchone()[0] for _ in range(3)]
    assert sorted(n.payload for n in wait_notifies(listener, 3)) == sorted(str(i) for i in last)
    assert drain_notifies(listener) == []


def test_direct_insert_by_a_privileged_user_also_notifies(connect):
    db = connect()
    listener = connect()
    db.execute("SELECT pg_mq_create_queue('n', 'text')")
    listener.execute('LISTEN "n"')
    db.execute("INSERT INTO pg_mq_queue_n (payload) VALUES ('raw')")
    assert len(wait_notifies(listener, 1)) == 1


CLAIMS = {  # claim of %s messages -> its payloads in the order it returns them
    "get": "SELECT payload FROM pg_mq_get_msg_text('q', %s)",
    "pop": "SELECT payload FROM pg_mq_pop('q', %s)",
    "read": "SELECT payload FROM pg_mq_read('q', %s, visibility_timeout => interval '1 minute')",
    # the bytea forms: their Python half's statements, EXECUTEd by the wrapper itself
    "get_bin": "SELECT convert_from(payload, 'UTF8') FROM pg_mq_get_msg_bin('q', %s)",
    "pop_bin": "SELECT convert_from(payload, 'UTF8') FROM pg_mq_pop_bin('q', %s)",
    "read_bin": "SELECT convert_from(payload, 'UTF8') FROM pg_mq_read_bin('q', %s)",
}


@pytest.mark.parametrize("claim", CLAIMS)
@pytest.mark.parametrize("n", [1, 700, 1001])  # 1001: beyond the generated statements, the Python path
def test_a_consumer_is_not_starved_by_others_holding_batches_open(connect, claim, n):
    """Consumers that claim big batches and work on them in open transactions (the
    original's way: get marks delivered in the caller's transaction) hold the oldest
    messages locked. Another consumer must get the ready messages behind them, in
    order, however many are held: it once looked only at the first n + 1,000 ready
    messages and, when others held all of those, returned nothing (or too few) while
    thousands waited."""
    db = connect()
    fill(db, n=6000)
    holders = [connect(autocommit=False), connect(autocommit=False)]
    held = [
        holders[0].execute("SELECT payload FROM pg_mq_get_msg_text('q', 1000)").fetchall(),
        holders[1].execute("SELECT payload FROM pg_mq_pop('q', 1000)").fetchall(),
    ]
    holders[0].execute("SELECT count(*) FROM pg_mq_get_msg_text('q', 500)")  # 2,500 held in all
    assert [len(h) for h in held] == [1000, 1000]
    got = [r[0] for r in db.execute(CLAIMS[claim], (n,))]
    assert got == [f"m{i}" for i in range(2501, 2501 + n)]
    for h in holders:
        h.rollback()
    # What they held is back, ahead of the rest.
    assert [r[0] for r in db.execute(CLAIMS["get"], (3,))] == ["m1", "m2", "m3"]


def test_a_claim_that_went_past_held_messages_is_undone_by_a_rollback(connect):
    """Both statements of a claim that had to go past what others hold belong to the
    caller's transaction: a rollback hands back what either took."""
    db = connect()
    fill(db, n=3000)
    holder = connect(autocommit=False)
    assert len(holder.execute("SELECT * FROM pg_mq_get_msg_text('q', 1000)").fetchall()) == 1000
    assert len(holder.execute("SELECT * FROM pg_mq_pop('q', 500)").fetchall()) == 500
    tx = connect(autocommit=False)
    got = [r[0] for r in tx.execute("SELECT payload FROM pg_mq_get_msg_text('q', 5)")]
    assert got == [f"m{i}" for i in range(1501, 1506)]
    tx.rollback()
    holder.rollback()
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q WHERE delivered_at IS NULL").fetchone()[0] == 3000
    assert [r[0] for r in db.execute("SELECT payload FROM pg_mq_get_msg_text('q', 2)")] == ["m1", "m2"]
