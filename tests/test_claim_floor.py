"""The claim floor (messages.claim_floor): after a burst was consumed or purged, a
claim starts its walk of the ready index past the dead entries the burst left,
and still never passes over a message that is, or becomes, ready."""

import json
import time

import pytest

BURST = 50_000  # ~170 index pages of dead entries: far more than a claim of 1 reads


def make(db, channel="q", n=0):
    db.execute("SELECT pg_mq_create_queue(%s, 'text')", (channel,))
    if n:
        db.execute("SELECT pg_mq_send_batch(%s, array_agg('m' || i)) FROM generate_series(1, %s) i", (channel, n))


def send(db, payload, channel="q"):
    return db.execute("SELECT msg_id FROM pg_mq_send_message(%s, %s)", (channel, payload)).fetchone()[0]


def got(db, claim="pg_mq_get_msg_text('q', 10)"):
    return [r[0] for r in db.execute(f"SELECT payload FROM {claim}")]


def _buffers(plan):
    total = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    return total


BURSTS = {
    "consumed by get": "SELECT count(*) FROM pg_mq_get_msg_text('q', {n})",
    "consumed by pop": "SELECT count(*) FROM pg_mq_pop('q', {n})",
    "read and acked": "SELECT pg_mq_ack('q', array_agg(msg_id)) FROM pg_mq_read('q', {n}, '1 hour')",
    "purged": "SELECT pg_mq_purge_queue('q')",
}


@pytest.mark.parametrize("burst", list(BURSTS))
def test_a_claim_after_a_burst_does_not_walk_its_dead_entries(db, burst):
    make(db, n=BURST)
    db.execute("VACUUM ANALYZE pg_mq_queue_q")
    db.execute(BURSTS[burst].format(n=BURST))
    consumer = db
    for i in range(3):  # the floor needs two checks: one records, the next (all writers gone) moves it
        send(db, f"after{i}")
        assert got(consumer, "pg_mq_get_msg_text('q', 1)") == [f"after{i}"]
    send(db, "last")
    consumer.execute("BEGIN")
    try:
        sql = consumer.execute("SELECT _pg_mq_get_sql('q', 1, true)").fetchone()[0]
        consumer.execute(f"PREPARE claim(int4, timestamptz) AS {sql}")
        explain = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE claim(1, clock_timestamp())"
        doc = consumer.execute(explain).fetchone()[0]
    finally:
        consumer.execute("ROLLBACK")
        consumer.execute("DEALLOCATE ALL")
    plan = (doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"]
    assert _buffers(plan) < 50, _buffers(plan)  # the whole walk was > 170 pages
    assert plan["Actual Rows"] == 1  # it claimed "last"


def test_a_message_committed_late_with_a_smaller_id_is_claimed_at_once(connect):
    db = connect()
    make(db, n=1000)
    db.execute("SELECT count(*) FROM pg_mq_get_msg_text('q', 1000)")
    slow = connect(autocommit=False)
    early = send(slow, "early")  # drawn first, committed last
    late = send(db, "late")
    assert early < late
    consumer = connect()
    assert got(consumer) == ["late"]
    for _ in range(5):  # every check the floor could move on
        assert got(consumer) == []
    slow.commit()
    assert got(consumer) == ["early"]  # at once, not after FLOOR_RECHECK


def test_a_message_whose_sender_is_still_running_is_never_passed(connect):
    # The sender's xid is newer than every completed one, so no snapshot lists it as
    # running (it is past their xmax): only an xid the check assigned itself tells
    # the check when the sender has ended.
    db = connect()
    make(db, n=10)
    db.execute("SELECT count(*) FROM pg_mq_get_msg_text('q', 10)")
    consumer = connect()
    for _ in range(3):
        assert got(consumer) == []
    slow = connect(autocommit=False)
    send(slow, "early")
    for _ in range(6):
        assert got(consumer) == []
        time.sleep(0.06)  # past FLOOR_RECORD_GAP: every check may record
    slow.commit()
    assert got(consumer) == ["early"]


def test_a_rolled_back_claim_hands_its_messages_back_to_the_same_session(connect):
    db = connect()
    make(db, n=1000)
    db.execute("SELECT count(*) FROM pg_mq_get_msg_text('q', 990)")
    consumer = connect(autocommit=False)
    for _ in range(3):
        got(consumer, "pg_mq_get_msg_text('q', 1)")
        consumer.rollback()
    assert got(consumer, "pg_mq_get_msg_text('q', 1)") == ["m991"]
    for _ in range(5):  # later claims in the same transaction see m991..m1000 delivered
        got(consumer, "pg_mq_get_msg_text('q', 2)")
    consumer.rollback()
    assert got(consumer, "pg_mq_get_msg_text('q', 3)") == ["m991", "m992", "m993"]
    consumer.commit()


def test_messages_moved_in_with_old_ids_are_claimed(connect):
    db = connect()
    make(db, channel="old", n=5)
    make(db, n=100)
    consumer = connect()
    for _ in range(4):
        got(consumer, "pg_mq_get_msg_text('q', 100)")
    send(db, "new")
    assert got(consumer) == ["new"]  # the floor is now past every id of queue old
    # Moved by this session: at once.
    assert consumer.execute("SELECT pg_mq_move('old', 'q', 2)").fetchone()[0] == 2
    assert got(consumer) == ["m1", "m2"]
    for _ in range(4):  # the floor moves past them again
        assert got(consumer) == []
    # Moved by another session: within FLOOR_RECHECK (5 s), by a claim without the floor.
    assert db.execute("SELECT pg_mq_move('old', 'q')").fetchone()[0] == 3
    deadline = time.monotonic() + 8
    seen = []
    while time.monotonic() < deadline and len(seen) < 3:
        seen += got(consumer)
        time.sleep(0.2)
    assert seen == ["m3", "m4", "m5"]


def test_other_priorities_are_never_skipped(connect):
    db = connect()
    make(db, n=1000)
    db.execute("SELECT pg_mq_set_queue_config('q', 'priority_ordering', 'on')")
    consumer = connect()
    for _ in range(4):
        got(consumer, "pg_mq_get_msg_text('q', 1000)")
    db.execute("SELECT pg_mq_send_message('q', 'low', priority => -1)")
    db.execute("SELECT pg_mq_send_message('q', 'zero')")
    db.execute("SELECT pg_mq_send_message('q', 'high', priority => 5)")
    assert got(consumer) == ["high", "zero", "low"]


def test_a_sequence_handing_out_blocks_of_ids_turns_the_floor_off(connect):
    db = connect()
    make(db, n=100)
    db.execute("ALTER SEQUENCE pg_mq_msg_id_seq CACHE 10")
    assert db.execute("SELECT _pg_mq_msg_id_horizon()").fetchone()[0] is None
    other = connect()
    first = send(other, "a")  # other holds ids first+1 .. first+9 in its block
    consumer = connect()
    for _ in range(4):
        got(consumer, "pg_mq_get_msg_text('q', 200)")
    send(db, "b")  # a higher block than other's
    assert got(consumer) == ["b"]
    assert send(other, "c") == first + 1  # a smaller id, sent later
    assert got(consumer) == ["c"]


@pytest.mark.parametrize(
    "function",
    [
        "pg_mq_get_msg_text(name,bigint)",
        "pg_mq_get_msg_bin(name,integer)",
        "pg_mq_read(text,integer,interval,interval)",
        "pg_mq_read_bin(text,integer,interval,interval)",
        "pg_mq_pop(text,integer)",
        "pg_mq_pop_bin(text,integer)",
    ],
)
def test_claims_never_jit_compile(db, function):
    # Right after a burst the statistics still count the burst's messages as ready,
    # the plan's cost passes jit_above_cost and JIT took ~140 ms of a claim of 1.
    config = db.execute("SELECT proconfig FROM pg_proc WHERE oid = %s::regprocedure", (function,)).fetchone()[0]
    assert "jit=off" in config


def test_a_direct_insert_with_another_priority_is_claimed_within_the_recheck(connect):
    db = connect()
    make(db, n=100)  # priority_ordering off: every message the API sends has priority 0
    consumer = connect()
    for _ in range(4):
        got(consumer, "pg_mq_get_msg_text('q', 100)")
    db.execute("INSERT INTO pg_mq_queue_q (payload, priority) VALUES ('direct', 5)")
    deadline = time.monotonic() + 8
    seen = []
    while time.monotonic() < deadline and not seen:
        seen = got(consumer)
        time.sleep(0.2)
    assert seen == ["direct"]
