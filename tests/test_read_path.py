"""The read path: a claim decides readiness, the lease and max_deliveries in one
statement, touches only the rows it returns, and stays O(batch) however many
messages are in flight."""

import json
import time

import pytest


def make(db, n=0, channel="q"):
    db.execute("SELECT pg_mq_create_queue(%s, 'text')", (channel,))
    if n:
        db.execute("SELECT pg_mq_send_batch(%s, array_agg('m' || i)) FROM generate_series(1, %s) i", (channel, n))


# How many messages other transactions hold locked right now.
LOCKED = (
    "SELECT count(*) FROM pg_mq_queue_q WHERE msg_id NOT IN (SELECT msg_id FROM pg_mq_queue_q FOR UPDATE SKIP LOCKED)"
)


def config(db, key, value, channel="q"):
    db.execute("SELECT pg_mq_set_queue_config(%s, %s, %s)", (channel, key, value))


def test_max_deliveries_holds_when_a_get_runs_between_reads(db):
    make(db, n=2)
    config(db, "max_deliveries", "1")
    assert len(db.execute("SELECT * FROM pg_mq_read('q', 2, '100 milliseconds')").fetchall()) == 2
    time.sleep(0.2)
    # Both leases expired: both messages have used up their one delivery.
    got = db.execute("SELECT msg_id FROM pg_mq_get_msg_text('q', 1)").fetchall()
    read = db.execute("SELECT msg_id, read_count FROM pg_mq_read('q', 5)").fetchall()
    assert [count for _, count in read if count > 1] == []  # never a second delivery
    assert got == [] and read == []
    assert db.execute("SELECT pg_mq_pop('q', 5)").fetchall() == []
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q_dlq").fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q").fetchone()[0] == 0


def test_a_claim_never_hands_out_an_over_limit_message_even_if_it_cannot_move_it(db):
    make(db, n=1)
    config(db, "max_deliveries", "2")
    for _ in range(2):
        assert len(db.execute("SELECT * FROM pg_mq_read('q', 1, '1 millisecond')").fetchall()) == 1
        time.sleep(0.02)
    db.execute("DROP TABLE pg_mq_queue_q_dlq")  # broken by hand: the mover fails
    db.execute("SELECT pg_mq_send_message('q', 'fresh')")
    for claim in ("pg_mq_read('q', 5)", "pg_mq_pop('q', 5)", "pg_mq_get_msg_text('q', 5)"):
        got = [r[0] for r in db.execute(f"SELECT payload FROM {claim}")]
        assert "m1" not in got, claim
    assert db.execute("SELECT read_count FROM pg_mq_queue_q WHERE payload = 'm1'").fetchone()[0] == 2


@pytest.mark.parametrize(
    "first",
    ["SELECT * FROM pg_mq_get_msg_text('q', 1)", "SELECT * FROM pg_mq_read('q', 1)", "SELECT * FROM pg_mq_pop('q', 1)"],
)
def test_an_open_transaction_does_not_hide_ready_messages_from_other_consumers(connect, first):
    db = connect()
    make(db, n=20)
    assert len(db.execute("SELECT * FROM pg_mq_read('q', 20, '100 milliseconds')").fetchall()) == 20
    time.sleep(0.2)  # every lease expired: 20 messages are ready again
    a = connect(autocommit=False)
    assert len(a.execute(first).fetchall()) == 1
    b = connect(options="-c statement_timeout=5000 -c lock_timeout=5000")  # never waits
    assert len(b.execute("SELECT * FROM pg_mq_get_msg_text('q', 10)").fetchall()) == 10
    assert len(b.execute("SELECT * FROM pg_mq_read('q', 10)").fetchall()) == 9
    # A locked the one message it took, nothing else.
    locked = db.execute(LOCKED).fetchone()[0]
    assert locked == 1
    a.rollback()


def test_a_consumer_that_read_in_an_open_transaction_locks_only_what_it_got(connect):
    db = connect()
    make(db, n=100)
    a = connect(autocommit=False)
    assert len(a.execute("SELECT * FROM pg_mq_read('q', 3)").fetchall()) == 3
    locked = db.execute(LOCKED).fetchone()[0]
    assert locked == 3
    a.commit()


def _fill(db, ordering):
    make(db)
    config(db, "priority_ordering", ordering)
    db.execute("SELECT pg_mq_send_batch('q', array_agg('m' || i)) FROM generate_series(1, 100000) i")
    db.execute("SELECT count(*) FROM pg_mq_read('q', 100000, '1 hour')")
    db.execute("SELECT pg_mq_send_batch('q', array_agg('r' || i)) FROM generate_series(1, 20) i")
    db.execute("VACUUM ANALYZE pg_mq_queue_q")


def _buffers(plan):
    return plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]


def _nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


CLAIMS = {
    "read": (
        "SELECT _pg_mq_read_sql('q', 1, '1 hour', NULL, true, false)",
        "int4, interval, timestamptz",
        "1, '1 hour'",
    ),
    "get": ("SELECT _pg_mq_get_sql('q', 1, true, false)", "int4, timestamptz", "1"),
    "pop": ("SELECT _pg_mq_pop_sql('q', 1, true, false)", "int4, timestamptz", "1"),
}


@pytest.mark.parametrize("ordering", ["on", "off"])
def test_a_claim_stays_o_batch_with_100000_messages_in_flight(db, ordering):
    _fill(db, ordering)
    for name, (builder, types, args) in CLAIMS.items():
        db.execute("BEGIN")
        try:
            sql = db.execute(builder).fetchone()[0]
            db.execute(f"PREPARE claim({types}) AS {sql}")
            doc = db.execute(
                f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE claim({args}, clock_timestamp())"
            ).fetchone()[0]
        finally:
            db.execute("ROLLBACK")
            db.execute("DEALLOCATE ALL")
        plan = (doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"]
        nodes = list(_nodes(plan))
        scans = {(n["Node Type"], n.get("Index Name", "")) for n in nodes if "Scan" in n["Node Type"]}
        assert not any(kind == "Seq Scan" for kind, _ in scans), (name, scans)
        assert any(index.endswith("priority_msg_id_idx") for _, index in scans), (name, scans)
        due = [n for n in nodes if n.get("Index Name", "").endswith("visible_at_idx")]
        assert due and all("Index Cond" in n for n in due), (name, scans)
        assert _buffers(plan) < 50, (name, _buffers(plan))


@pytest.mark.parametrize("ordering", ["on", "off"])
def test_a_whole_read_call_stays_o_batch_with_100000_messages_in_flight(db, ordering):
    _fill(db, ordering)
    for call in ("pg_mq_read('q', 1, '1 hour')", "pg_mq_get_msg_text('q', 1)", "pg_mq_pop('q', 1)"):
        db.execute("BEGIN")
        try:
            db.execute(f"SELECT * FROM {call}")  # the session's first call loads the code
            doc = db.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM {call}").fetchone()[0]
        finally:
            db.execute("ROLLBACK")
        plan = (doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"]
        assert _buffers(plan) < 300, (call, _buffers(plan))
