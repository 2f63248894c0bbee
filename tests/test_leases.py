"""Lease-based reads: visibility timeouts, ack, nack, extend, pop, long-poll, consumer death."""

import os
import threading
import time
from pathlib import Path

import pytest
from helpers import drain_concurrently, fails


def make(db, channel="q", n=0):
    db.execute("SELECT pg_mq_create_queue(%s, 'text')", (channel,))
    if n:
        db.execute("SELECT pg_mq_send_batch(%s, array_agg('m' || i)) FROM generate_series(1, %s) i", (channel, n))


def read(conn, n=1, vt="30 seconds", channel="q", **kw):
    extra = "".join(f", {k} => %({k})s" for k in kw)
    return conn.execute(
        f"SELECT msg_id, read_count, payload FROM pg_mq_read(%(c)s, %(n)s, %(vt)s::interval{extra})",
        {"c": channel, "n": n, "vt": vt, **kw},
    ).fetchall()


def wait_until(predicate, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


def test_read_hides_messages_for_the_visibility_timeout(db):
    make(db, n=3)
    first = read(db, 2, "1 second")
    assert [(r[1], r[2]) for r in first] == [(1, "m1"), (1, "m2")]
    assert [r[2] for r in read(db, 5, "1 hour")] == ["m3"]
    assert read(db, 5) == []
    # After the timeout they come back, with read_count counting the deliveries.
    again = wait_until(lambda: read(db, 5))
    assert [(r[1], r[2]) for r in again] == [(2, "m1"), (2, "m2")]


def test_read_returns_the_documented_columns(db):
    make(db)
    db.execute("""SELECT pg_mq_send_message('q', 'x'::text, headers => '{"k": "v"}')""")
    row = db.execute("SELECT * FROM pg_mq_read('q')").fetchone()
    names = [c.name for c in db.execute("SELECT * FROM pg_mq_read('q') LIMIT 0").description]
    assert names == ["msg_id", "read_count", "enqueued_at", "visible_at", "priority", "headers", "payload"]
    assert row[5] == {"k": "v"} and row[6] == "x" and row[1] == 1


def test_acknowledged_messages_are_never_redelivered(db):
    make(db, n=2)
    ids = [r[0] for r in read(db, 2, "200 milliseconds")]
    acked = [r[0] for r in db.execute("SELECT * FROM pg_mq_ack('q', %s)", (ids,))]
    assert acked == ids
    time.sleep(0.4)
    assert read(db, 5) == []
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q").fetchone()[0] == 0


def test_consumer_killed_after_reading_gets_messages_redelivered_after_timeout(connect):
    db = connect()
    make(db, n=2)
    victim = connect()
    pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]
    leased = read(victim, 2, "1 second")
    assert len(leased) == 2
    assert db.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    assert read(db, 5) == []  # still leased to the dead consumer
    again = wait_until(lambda: read(db, 5))
    assert sorted((r[0], r[1]) for r in again) == sorted((r[0], 2) for r in leased)


def test_consumer_killed_inside_its_transaction_loses_the_lease_at_once(connect):
    db = connect()
    make(db, n=1)
    victim = connect(autocommit=False)
    pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert len(read(victim, 1, "1 hour")) == 1
    db.execute("SELECT pg_terminate_backend(%s)", (pid,))
    got = wait_until(lambda: read(db, 1))
    assert got[0][1] == 1  # the dead transaction's read never counted


def test_nack_makes_messages_visible_again_after_the_delay(db):
    make(db, n=1)
    ((msg_id, _, _),) = read(db, 1, "1 hour")
    assert [r[0] for r in db.execute("SELECT * FROM pg_mq_nack('q', %s, '400 milliseconds')", ([msg_id],))] == [msg_id]
    assert read(db, 1) == []
    got = wait_until(lambda: read(db, 1))
    assert got[0][:2] == (msg_id, 2)


def test_nack_without_delay_is_immediate(db):
    make(db, n=1)
    ((msg_id, _, _),) = read(db, 1, "1 hour")
    db.execute("SELECT pg_mq_nack('q', %s)", ([msg_id],))
    assert read(db, 1)[0][:2] == (msg_id, 2)


def test_extend_keeps_a_live_lease_but_does_not_revive_an_expired_one(db):
    make(db, n=2)
    (a, _, _), (b, _, _) = read(db, 2, "300 milliseconds")
    assert [r[0] for r in db.execute("SELECT * FROM pg_mq_extend('q', %s, '1 hour')", ([a],))] == [a]
    time.sleep(0.5)
    assert [r[0] for r in db.execute("SELECT * FROM pg_mq_extend('q', %s, '1 hour')", ([b],))] == []
    assert [r[0] for r in read(db, 5)] == [b]


def test_pop_reads_and_deletes_at_once_and_rollback_returns(connect):
    db = connect()
    make(db, n=3)
    tx = connect(autocommit=False)
    assert [r[6] for r in tx.execute("SELECT * FROM pg_mq_pop('q', 2)")] == ["m1", "m2"]
    tx.rollback()
    assert [r[6] for r in db.execute("SELECT * FROM pg_mq_pop('q', 2)")] == ["m1", "m2"]
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q").fetchone()[0] == 1
    assert [bytes(r[6]) for r in db.execute("SELECT * FROM pg_mq_pop_bin('q', 5)")] == [b"m3"]


def test_read_rolled_back_hands_the_lease_back(connect):
    db = connect()
    make(db, n=1)
    tx = connect(autocommit=False)
    assert len(read(tx, 1, "1 hour")) == 1
    tx.rollback()
    assert read(db, 1)[0][1] == 1


def test_ack_rules_unknown_ids_and_someone_elses_expired_lease(connect):
    db = connect()
    make(db, n=1)
    slow, fast = connect(), connect()
    ((msg_id, _, _),) = read(slow, 1, "200 milliseconds")
    time.sleep(0.3)
    # The lease expired and another consumer took the message.
    assert read(fast, 1, "1 hour")[0][:2] == (msg_id, 2)
    # Documented rule: an ack is by msg_id; the first ack wins, whoever sends it.
    assert [r[0] for r in slow.execute("SELECT * FROM pg_mq_ack('q', %s)", ([msg_id, 999_999],))] == [msg_id]
    assert fast.execute("SELECT * FROM pg_mq_ack('q', %s)", ([msg_id],)).fetchall() == []


def test_long_poll_returns_early_when_a_message_arrives(connect):
    db = connect()
    make(db)
    waiter = connect()
    result: dict = {}

    def poll():
        start = time.monotonic()
        result["rows"] = read(waiter, 1, "30 seconds", wait="10 seconds")
        result["took"] = time.monotonic() - start

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.5)
    db.execute("SELECT pg_mq_send_message('q', 'wake up'::text)")
    thread.join(15)
    assert [r[2] for r in result["rows"]] == ["wake up"]
    assert 0.4 < result["took"] < 5, result["took"]


def test_long_poll_gives_up_after_the_wait(db):
    make(db)
    start = time.monotonic()
    assert read(db, 1, wait="300 milliseconds") == []
    assert 0.25 < time.monotonic() - start < 3


def _backend_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a server backend (the harness's server runs here)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("function", ["pg_mq_read", "pg_mq_read_bin"])
def test_a_long_poll_behind_many_held_messages_leaves_the_core_mostly_idle(connect, function):
    """A poll that finds nothing ready tries every message others hold on its way
    (a row lock is only seen by trying it): behind 50,000 held, one poll costs a fifth
    of a second of CPU. A long poll waits at least three times what its last poll took.
    It once polled every 10-100 ms whatever a poll cost, and spent two thirds of its wait
    on the CPU."""
    db = connect()
    make(db, n=50_000)
    holder = connect(autocommit=False)
    assert holder.execute("SELECT count(*) FROM pg_mq_get_msg_text('q', 50000)").fetchone()[0] == 50_000
    waiter = connect()
    pid = waiter.info.backend_pid
    waiter.execute(f"SELECT count(*) FROM {function}('q', 1)")  # the backend's first call loads its code
    cpu, start = _backend_cpu_seconds(pid), time.monotonic()
    assert waiter.execute(f"SELECT msg_id FROM {function}('q', 1, wait => '3 seconds')").fetchall() == []
    wall, cpu = time.monotonic() - start, _backend_cpu_seconds(pid) - cpu
    assert wall >= 3
    assert cpu / wall < 0.5, f"{cpu:.2f} s of CPU in {wall:.2f} s"
    holder.rollback()
    # Nothing held any more: the same poll gets the oldest at once.
    assert [r[2] for r in read(waiter, 1, wait="3 seconds")] == ["m1"]


def test_four_consumers_ack_fifty_thousand_messages_exactly_once(connect, dsn):
    db = connect()
    make(db, n=50_000)

    def take(conn):
        ids = [r[0] for r in conn.execute("SELECT msg_id FROM pg_mq_read('q', 100, '5 minutes')")]
        done = [r[0] for r in conn.execute("SELECT * FROM pg_mq_ack('q', %s)", (ids,))] if ids else []
        assert done == sorted(ids)
        return done

    acked = drain_concurrently(dsn, 4, take)
    everything = [m for part in acked for m in part]
    assert len(everything) == 50_000 == len(set(everything))
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("sql", "sqlstate", "match"),
    [
        ("SELECT * FROM pg_mq_read('q', 0)", "22023", "must be positive"),
        ("SELECT * FROM pg_mq_read('q', NULL)", "22004", "must not be NULL"),
        ("SELECT * FROM pg_mq_read('q', 1, '-1 second')", "22023", "visibility_timeout must be positive"),
        ("SELECT * FROM pg_mq_read('q', 1, '0')", "22023", "visibility_timeout must be positive"),
        ("SELECT * FROM pg_mq_read('q', 1, NULL)", "22004", "visibility_timeout must not be NULL"),
        ("SELECT * FROM pg_mq_read('q', 1, wait => '-1 second')", "22023", "wait must not be negative"),
        ("SELECT * FROM pg_mq_ack('q', NULL)", "22004", "msg_ids must not be NULL"),
        ("SELECT * FROM pg_mq_ack('q', ARRAY[1, NULL])", "22004", "must not contain NULL"),
        ("SELECT * FROM pg_mq_nack('q', ARRAY[1], '-1 second')", "22023", "delay must not be negative"),
        ("SELECT * FROM pg_mq_nack('q', ARRAY[1], NULL)", "22004", "delay must not be NULL"),
        ("SELECT * FROM pg_mq_extend('q', ARRAY[1], NULL)", "22004", "visibility_timeout"),
        ("SELECT * FROM pg_mq_pop('q', -1)", "22023", "must be positive"),
        ("SELECT * FROM pg_mq_read('nope')", "42704", 'queue "nope" does not exist'),
        ("SELECT * FROM pg_mq_ack('nope', ARRAY[1])", "42704", 'queue "nope" does not exist'),
    ],
)
def test_bad_lease_input_is_refused_and_changes_nothing(db, sql, sqlstate, match):
    make(db, n=1)
    fails(db, sql, sqlstate=sqlstate, match=match)
    assert db.execute("SELECT read_count, visible_at <= now() FROM pg_mq_queue_q").fetchall() == [(0, True)]


def test_bytea_queue_reads_as_text_form_or_bytes(db):
    db.execute("SELECT pg_mq_create_queue('b', 'bytea')")
    db.execute("SELECT pg_mq_send_batch('b', ARRAY['\\x0001ff', '\\x02']::bytea[])")
    assert db.execute("SELECT payload FROM pg_mq_read('b')").fetchone()[0] == "\\x0001ff"
    assert bytes(db.execute("SELECT payload FROM pg_mq_read_bin('b')").fetchone()[0]) == b"\x02"


def test_leased_and_delayed_messages_leave_the_ready_index(db):
    make(db, n=1000)
    db.execute("SELECT pg_mq_send_message('q', 'later'::text, delay => '1 hour')")
    read(db, 900, "1 hour")
    ready_entries = "SELECT count(*) FROM pg_mq_queue_q WHERE delivered_at IS NULL AND visible_at <= sent_at"
    assert db.execute(ready_entries).fetchone()[0] == 100
    plan = "\n".join(
        r[0]
        for r in db.execute(
            "EXPLAIN SELECT msg_id FROM pg_mq_queue_q WHERE delivered_at IS NULL AND visible_at <= sent_at"
            " ORDER BY priority DESC, msg_id LIMIT 10"
        )
    )
    assert "priority_msg_id_idx" in plan and "Filter" not in plan
    # The next read skips no leased row: it gets the 100 ready ones straight away.
    assert [r[2] for r in read(db, 200)] == [f"m{i}" for i in range(901, 1001)]


@pytest.mark.parametrize(
    "claim",
    [
        "SELECT msg_id FROM pg_mq_read('q', 10, '1 microsecond')",
        "SELECT msg_id FROM pg_mq_read_bin('q', 10, '1 microsecond')",
        "SELECT msg_id FROM pg_mq_read_bin('q', 10, '1 microsecond', wait => '1 second')",
    ],
)
def test_a_short_read_never_leases_a_message_twice(db, claim):
    """A short claim runs a second statement for the rest: it must count time as the
    first did, or a lease shorter than the gap between them (here a microsecond) would
    be due again and the same messages come back twice in one call."""
    make(db, n=3)
    ids = [r[0] for r in db.execute(claim)]
    assert len(ids) == 3 and len(set(ids)) == 3, ids
