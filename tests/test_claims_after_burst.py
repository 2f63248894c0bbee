"""Claims right after a burst was consumed or purged: the dead index entries the
burst left (until VACUUM) never make a claim return wrong messages, a claim is
never JIT-compiled, and messages committed out of order, rolled back, moved in
with old ids or given other priorities are all claimed at once."""

import pytest

BURST = 20_000


def make(db, channel="q", n=0):
    db.execute("SELECT pg_mq_create_queue(%s, 'text')", (channel,))
    if n:
        db.execute("SELECT pg_mq_send_batch(%s, array_agg('m' || i)) FROM generate_series(1, %s) i", (channel, n))


def send(db, payload, channel="q"):
    return db.execute("SELECT msg_id FROM pg_mq_send_message(%s, %s)", (channel, payload)).fetchone()[0]


def got(db, claim="pg_mq_get_msg_text('q', 10)"):
    return [r[0] for r in db.execute(f"SELECT payload FROM {claim}")]


BURSTS = {
    "consumed by get": "SELECT count(*) FROM pg_mq_get_msg_text('q', {n})",
    "consumed by pop": "SELECT count(*) FROM pg_mq_pop('q', {n})",
    "read and acked": "SELECT pg_mq_ack('q', array_agg(msg_id)) FROM pg_mq_read('q', {n}, '1 hour')",
    "purged": "SELECT pg_mq_purge_queue('q')",
}


@pytest.mark.parametrize("burst", list(BURSTS))
def test_claims_right_after_a_burst_return_the_right_messages(connect, burst):
    db = connect()
    make(db, n=BURST)
    db.execute("VACUUM ANALYZE pg_mq_queue_q")  # the statistics still count the burst as ready
    db.execute(BURSTS[burst].format(n=BURST))
    consumer = connect()
    for i in range(3):
        send(db, f"after{i}")
        assert got(consumer, "pg_mq_get_msg_text('q', 1)") == [f"after{i}"]
    for claim in ("pg_mq_read('q', 5)", "pg_mq_pop('q', 5)", "pg_mq_get_msg_text('q', 5)"):
        send(db, claim)
        assert got(consumer, claim) == [claim]
    assert got(consumer) == []


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
    for _ in range(5):
        assert got(consumer) == []
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


def test_messages_moved_in_with_old_ids_after_a_burst_are_claimed_at_once(connect):
    db = connect()
    make(db, channel="old", n=5)
    make(db, n=1000)
    consumer = connect()
    for _ in range(11):
        got(consumer, "pg_mq_get_msg_text('q', 100)")
    assert db.execute("SELECT pg_mq_move('old', 'q')").fetchone()[0] == 5
    assert got(consumer) == ["m1", "m2", "m3", "m4", "m5"]


def test_other_priorities_after_a_burst_are_claimed_in_order(connect):
    db = connect()
    make(db, n=1000)
    consumer = connect()
    for _ in range(4):
        got(consumer, "pg_mq_get_msg_text('q', 1000)")
    db.execute("SELECT pg_mq_send_message('q', 'low', priority => -1)")
    db.execute("SELECT pg_mq_send_message('q', 'zero')")
    db.execute("SELECT pg_mq_send_message('q', 'high', priority => 5)")
    assert got(consumer) == ["high", "zero", "low"]


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
    # the claim's cost passes jit_above_cost, and JIT took ~140 ms of a claim of 1.
    config = db.execute("SELECT proconfig FROM pg_proc WHERE oid = %s::regprocedure", (function,)).fetchone()[0]
    assert "jit=off" in config


def test_a_claim_right_after_a_burst_is_not_jit_compiled_even_when_jit_is_forced(db):
    make(db, n=BURST)
    db.execute("VACUUM ANALYZE pg_mq_queue_q")
    db.execute(BURSTS["consumed by get"].format(n=BURST))
    send(db, "after")
    db.execute("SET jit = on")
    db.execute("SET jit_above_cost = 0")  # every statement of the session would be compiled
    db.execute("LOAD 'auto_explain'")
    db.execute("SET auto_explain.log_min_duration = 0")
    db.execute("SET auto_explain.log_nested_statements = on")
    db.execute("SET auto_explain.log_analyze = on")
    db.execute("SET client_min_messages = log")
    db.execute("SET auto_explain.log_level = notice")
    notices = []
    db.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    assert got(db, "pg_mq_get_msg_text('q', 1)") == ["after"]
    claims = [n for n in notices if "UPDATE" in n and "pg_mq_queue_q" in n]
    assert claims, notices
    assert not any("JIT:" in n for n in claims), claims
