"""PgQ's batch API (pg_message_queue_pgq): the semantics PgQ's users rely on, on a
real PostgreSQL with both extensions in one database."""

from __future__ import annotations

import re
from collections.abc import Callable

import psycopg
import pytest
from helpers import fails


def tick(conn: psycopg.Connection, queue: str = "q") -> int:
    """Make the ticker tick the queue now (force_tick, then ticker); the new tick_id."""
    conn.execute("SELECT pgq.force_tick(%s)", (queue,))
    tick_id = conn.execute("SELECT pgq.ticker(%s)", (queue,)).fetchone()[0]
    assert tick_id is not None
    return tick_id


def drain(conn: psycopg.Connection, consumer: str, queue: str = "q") -> list[tuple]:
    """Every batch the consumer has, finished: the events (ev_id, ev_data, ev_retry)."""
    got: list[tuple] = []
    while True:
        batch = conn.execute("SELECT pgq.next_batch(%s, %s)", (queue, consumer)).fetchone()[0]
        if batch is None:
            return got
        got += conn.execute("SELECT ev_id, ev_data, ev_retry FROM pgq.get_batch_events(%s)", (batch,)).fetchall()
        assert conn.execute("SELECT pgq.finish_batch(%s)", (batch,)).fetchone()[0] == 1


def test_tutorial_flow_runs_verbatim(pgq: psycopg.Connection) -> None:
    # The PG/Q tutorial's statements, as written there (with SELECT in front).
    assert pgq.execute("SELECT pgq.create_queue('queueName')").fetchone()[0] == 1
    assert pgq.execute("SELECT pgq.register_consumer('queueName', 'consumerName')").fetchone()[0] == 1
    pgq.execute("SELECT pgq.insert_event('queueName', 'eventType', 'data')")
    tick(pgq, "queueName")
    batch_id = pgq.execute("SELECT pgq.next_batch('queueName', 'consumerName')").fetchone()[0]
    assert batch_id is not None
    events = pgq.execute("SELECT ev_type, ev_data FROM pgq.get_batch_events(%s)", (batch_id,)).fetchall()
    assert events == [("eventType", "data")]
    assert pgq.execute("SELECT pgq.finish_batch(%s)", (batch_id,)).fetchone()[0] == 1
    # Nothing new: next_batch says so with NULL (the tutorial's "sleep" branch).
    assert pgq.execute("SELECT pgq.next_batch('queueName', 'consumerName')").fetchone()[0] is None


def test_every_committed_event_reaches_every_consumer_exactly_once(
    pgq: psycopg.Connection, pgq_connect: Callable[..., psycopg.Connection]
) -> None:
    pgq.execute("SELECT pgq.create_queue('q')")
    for c in ("c1", "c2"):
        pgq.execute("SELECT pgq.register_consumer('q', %s)", (c,))
    producer = pgq_connect(autocommit=False)
    committed: list[str] = []
    c1: list[str] = []
    for round_ in range(6):
        for n in range(50):
            producer.execute("SELECT pgq.insert_event('q', 't', %s)", (f"{round_}-{n}",))
        if round_ == 3:
            producer.rollback()  # rolled back: never delivered
        else:
            producer.commit()
            committed += [f"{round_}-{n}" for n in range(50)]
        tick(pgq)
        if round_ % 2:  # c1 reads as it goes, c2 only at the end
            c1 += [d for _, d, _ in drain(pgq, "c1")]
    tick(pgq)
    c1 += [d for _, d, _ in drain(pgq, "c1")]
    c2 = [d for _, d, _ in drain(pgq, "c2")]
    for got in (c1, c2):
        assert sorted(got) == sorted(committed)
        assert len(got) == len(set(got))


def test_rolled_back_events_never_appear(
    pgq: psycopg.Connection, pgq_connect: Callable[..., psycopg.Connection]
) -> None:
    pgq.execute("SELECT pgq.create_queue('q')")
    pgq.execute("SELECT pgq.register_consumer('q', 'c')")
    other = pgq_connect(autocommit=False)
    other.execute("SELECT pgq.insert_event('q', 't', 'lost')")
    other.rollback()
    pgq.execute("SELECT pgq.insert_event('q', 't', 'kept')")
    tick(pgq)
    assert [d for _, d, _ in drain(pgq, "c")] == ["kept"]


def test_event_of_a_transaction_committing_after_a_tick_lands_in_a_later_batch(
    pgq: psycopg.Connection, pgq_connect: Callable[..., psycopg.Connection]
) -> None:
    pgq.execute("SELECT pgq.create_queue('q')")
    pgq.execute("SELECT pgq.register_consumer('q', 'c')")
    late = pgq_connect(autocommit=False)
    late.execute("SELECT pgq.insert_event('q', 't', 'late')")  # begun before the tick, open across it
    pgq.execute("SELECT pgq.insert_event('q', 't', 'early')")
    tick(pgq)
    late.commit()  # commits after the tick
    assert [d for _, d, _ in drain(pgq, "c")] == ["early"]
    tick(pgq)
    assert [d for _, d, _ in drain(pgq, "c")] == ["late"]


def test_next_batch_before_finish_returns_the_same_batch(pgq: psycopg.Connection) -> None:
    pgq.execute("SELECT pgq.create_queue('q')")
    pgq.execute("SELECT pgq.register_consumer('q', 'c')")
    pgq.execute("SELECT pgq.insert_event('q', 't', 'x')")
    tick(pgq)
    first = pgq.execute("SELECT pgq.next_batch('q', 'c')").fetchone()[0]
    pgq.execute("SELECT pgq.insert_event('q', 't', 'y')")
    tick(pgq)
    assert pgq.execute("SELECT pgq.next_batch('q', 'c')").fetchone()[0] == first
    assert [r[0] for r in pgq.execute("SELECT ev_data FROM pgq.get_batch_events(%s)", (first,))] == ["x"]


def test_event_retry_returns_the_event_to_that_consumer_alone(pgq: psycopg.Connection) -> None:
    pgq.execute("SELECT pgq.create_queue('q')")
    for c in ("c1", "c2"):
        pgq.execute("SELECT pgq.register_consumer('q', %s)", (c,))
    ev_id = pgq.execute("SELECT pgq.insert_event('q', 't', 'again')").fetchone()[0]
    tick(pgq)
    batch = pgq.execute("SELECT pgq.next_batch('q', 'c1')").fetchone()[0]
    assert pgq.execute("SELECT pgq.event_retry(%s, %s, 0)", (batch, ev_id)).fetchone()[0] == 1
    assert pgq.execute("SELECT pgq.event_retry(%s, %s, 0)", (batch, ev_id)).fetchone()[0] == 0  # already there
    pgq.execute("SELECT pgq.finish_batch(%s)", (batch,))
    assert drain(pgq, "c2") == [(ev_id, "again", None)]
    assert pgq.execute("SELECT pgq.maint_retry_events()").fetchone()[0] == 1
    tick(pgq)
    assert drain(pgq, "c1") == [(ev_id, "again", 1)]
    assert drain(pgq, "c2") == []


def test_unregister_consumer(pgq: psycopg.Connection) -> None:
    pgq.execute("SELECT pgq.create_queue('q')")
    pgq.execute("SELECT pgq.register_consumer('q', 'c')")
    assert pgq.execute("SELECT pgq.register_consumer('q', 'c')").fetchone()[0] == 0
    assert pgq.execute("SELECT pgq.unregister_consumer('q', 'c')").fetchone()[0] == 1
    assert pgq.execute("SELECT pgq.unregister_consumer('q', 'c')").fetchone()[0] == 0
    assert pgq.execute("SELECT count(*) FROM pgq.consumer").fetchone()[0] == 0
    fails(pgq, "SELECT pgq.next_batch('q', 'c')", sqlstate="P0001", match="^Not subscriber to queue: q/c$")


def test_drop_queue_needs_force_while_consumers_are_attached(pgq: psycopg.Connection) -> None:
    pgq.execute("SELECT pgq.create_queue('q')")
    pgq.execute("SELECT pgq.register_consumer('q', 'c')")
    fails(pgq, "SELECT pgq.drop_queue('q')", sqlstate="P0001", match="^cannot drop queue, consumers still attached$")
    assert pgq.execute("SELECT pgq.drop_queue('q', true)").fetchone()[0] == 1
    assert pgq.execute("SELECT count(*) FROM pgq.queue").fetchone()[0] == 0
    tables = pgq.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'pgq' AND tablename ~ '^event_[0-9]'")
    assert tables.fetchone()[0] == 0
    pgq.execute("SELECT pgq.create_queue('q2')")
    assert pgq.execute("SELECT pgq.drop_queue('q2')").fetchone()[0] == 1


def rotate(conn: psycopg.Connection) -> None:
    """A maintenance round as pgqd runs it: each operation in its own transaction."""
    for name, arg in conn.execute("SELECT func_name, func_arg FROM pgq.maint_operations()").fetchall():
        if name == "pgq.maint_rotate_tables_step1":
            conn.execute("SELECT pgq.maint_rotate_tables_step1(%s)", (arg,))
        elif name == "pgq.maint_rotate_tables_step2":
            conn.execute("SELECT pgq.maint_rotate_tables_step2()")


def test_rotation_under_a_slow_consumer_loses_nothing_and_reclaims_space(pgq: psycopg.Connection) -> None:
    pgq.execute("SELECT pgq.create_queue('q')")
    pgq.execute("SELECT pgq.set_queue_config('q', 'rotation_period', '0')")
    for c in ("fast", "slow"):
        pgq.execute("SELECT pgq.register_consumer('q', %s)", (c,))
    sent: list[str] = []
    fast: list[str] = []
    for round_ in range(8):
        for n in range(20):
            pgq.execute("SELECT pgq.insert_event('q', 't', %s)", (f"{round_}-{n}",))
            sent.append(f"{round_}-{n}")
        tick(pgq)
        fast += [d for _, d, _ in drain(pgq, "fast")]
        rotate(pgq)
    assert fast == sent
    # The slow consumer's position holds the rotation back: the table it still needs is not truncated.
    slow = [d for _, d, _ in drain(pgq, "slow")]
    assert slow == sent
    switches_before = pgq.execute("SELECT queue_cur_table FROM pgq.queue").fetchone()[0]
    for _round in range(6):
        pgq.execute("SELECT pgq.insert_event('q', 't', 'late')")
        tick(pgq)
        drain(pgq, "fast")
        drain(pgq, "slow")
        rotate(pgq)
    rows = pgq.execute("SELECT count(*) FROM pgq.event_1").fetchone()[0]
    assert rows < len(sent), f"rotation reclaimed nothing: {rows} rows (cur_table was {switches_before})"


def test_insert_event_follows_rotation_and_the_queue_rules(
    pgq: psycopg.Connection, pgq_connect: Callable[..., psycopg.Connection]
) -> None:
    pgq.execute("SELECT pgq.create_queue('q')")
    pgq.execute("SELECT pgq.set_queue_config('q', 'rotation_period', '0')")
    ev = pgq.execute("SELECT pgq.insert_event('q', 't', 'first')").fetchone()[0]
    assert pgq.execute("SELECT ev_id FROM pgq.event_1_0").fetchall() == [(ev,)]
    rotate(pgq)
    assert pgq.execute("SELECT pgq.current_event_table('q')").fetchone()[0] == "pgq.event_1_1"
    ev = pgq.execute("SELECT pgq.insert_event('q', 't', 'second', 'a', 'b', 'c', 'd')").fetchone()[0]
    row = pgq.execute("SELECT ev_id, ev_data, ev_extra1, ev_extra4 FROM pgq.event_1_1").fetchall()
    assert row == [(ev, "second", "a", "d")]
    # A queue made later, and one dropped: the generated INSERTs follow.
    pgq.execute("SELECT pgq.create_queue('r')")
    assert pgq.execute("SELECT pgq.insert_event('r', 't', 'x')").fetchone()[0] == 1
    pgq.execute("SELECT pgq.drop_queue('r')")
    fails(pgq, "SELECT pgq.insert_event('r', 't', 'x')", sqlstate="XX000", match="^No such queue$")
    # queue_disable_insert: refused, except to a replica's apply session.
    pgq.execute("UPDATE pgq.queue SET queue_disable_insert = true")
    fails(pgq, "SELECT pgq.insert_event('q', 't', 'x')", sqlstate="XX000", match="^Insert into queue disallowed$")
    fails(pgq, "SELECT pgq.current_event_table('q')", sqlstate="P0001", match="^Writing to queue disabled$")
    replica = pgq_connect()
    replica.execute("SET session_replication_role = replica")
    assert replica.execute("SELECT pgq.insert_event('q', 't', 'replicated')").fetchone()[0] is not None
    # queue_per_tx_limit: PgQ's C check, per transaction.
    pgq.execute("UPDATE pgq.queue SET queue_disable_insert = false, queue_per_tx_limit = 2")
    with pgq.transaction():
        pgq.execute("SELECT pgq.insert_event('q', 't', '1')")
        pgq.execute("SELECT pgq.insert_event('q', 't', '2')")
        with pytest.raises(psycopg.Error) as info:
            pgq.execute("SELECT pgq.insert_event('q', 't', '3')")
        assert info.value.diag.message_primary == "Queue 'q' allows max 2 events from one TX"
        raise psycopg.Rollback
    pgq.execute("SELECT pgq.insert_event('q', 't', 'next transaction')")


def test_ticker_max_count_max_lag_and_idle_period(pgq: psycopg.Connection) -> None:
    pgq.execute("SELECT pgq.create_queue('q')")
    pgq.execute("SELECT pgq.set_queue_config('q', 'ticker_max_count', '5')")
    pgq.execute("SELECT pgq.set_queue_config('q', 'ticker_max_lag', '1 hour')")
    pgq.execute("SELECT pgq.set_queue_config('q', 'ticker_idle_period', '1 hour')")
    tick(pgq)  # a second tick, so the idle rule has a previous interval
    for _ in range(4):
        pgq.execute("SELECT pgq.insert_event('q', 't', 'x')")
    assert pgq.execute("SELECT pgq.ticker('q')").fetchone()[0] is None  # 4 < max_count, lag < max_lag
    pgq.execute("SELECT pgq.insert_event('q', 't', 'x')")
    assert pgq.execute("SELECT pgq.ticker('q')").fetchone()[0] is not None  # max_count reached
    assert pgq.execute("SELECT pgq.ticker('q')").fetchone()[0] is None  # idle, within idle_period
    pgq.execute("SELECT pgq.set_queue_config('q', 'ticker_max_lag', '0')")
    pgq.execute("SELECT pgq.insert_event('q', 't', 'x')")
    assert pgq.execute("SELECT pgq.ticker('q')").fetchone()[0] is not None  # max_lag passed with one event
    pgq.execute("SELECT pgq.set_queue_config('q', 'ticker_idle_period', '0')")
    assert pgq.execute("SELECT pgq.ticker('q')").fetchone()[0] is not None  # idle_period passed
    pgq.execute("SELECT pgq.set_queue_config('q', 'ticker_paused', 'true')")
    assert pgq.execute("SELECT pgq.ticker()").fetchone()[0] == 0
    fails(pgq, "SELECT pgq.ticker('q')", sqlstate="P0001", match="^Ticker has been paused for this queue$")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        # PgQ's insert path is C: its errors are elog(ERROR), SQLSTATE XX000
        ("SELECT pgq.insert_event('nope', 't', 'd')", "XX000 No such queue"),
        ("SELECT pgq.insert_event(NULL, 't', 'd')", "XX000 Queue name must not be NULL"),
        ("SELECT pgq.insert_event('nope', 't', 'd', 'a', 'b', 'c', 'd')", "XX000 No such queue"),
        # constraint errors of the statements inside come out as PgQ's do, without a prefix
        ("SELECT pgq.register_consumer('q', NULL)",
         '23502 null value in column "co_name" of relation "consumer" violates not-null constraint'),
        ("SELECT pgq.set_queue_config('q', 'ticker_max_count', 'x')",
         '22P02 invalid input syntax for type integer: "x"'),
        # PgQ looks up the subscription first: an unknown or finished batch is "event not found"
        ("SELECT pgq.event_retry(999, 1, 0)", "event not found"),
        ("SELECT pgq.event_retry(NULL, 1, now())", "event not found"),
        ("SELECT pgq.create_queue(NULL)", "Invalid NULL value"),
        ("SELECT pgq.drop_queue('nope')", "No such event queue"),
        ("SELECT pgq.drop_queue('nope', true)", "No such event queue"),
        ("SELECT pgq.current_event_table('nope')", "Event queue not found"),
        ("SELECT pgq.register_consumer('nope', 'c')", "Event queue not created yet"),
        ("SELECT pgq.register_consumer_at('q', 'c', 999)", "cannot reposition, tick not found: 999"),
        ("SELECT pgq.next_batch('q', 'nope')", "Not subscriber to queue: q/nope"),
        ("SELECT pgq.next_batch(NULL, NULL)", "Not subscriber to queue: NULL/NULL"),
        ("SELECT * FROM pgq.get_batch_events(999)", "batch not found"),
        ("SELECT pgq.batch_retry(999, 0)", "batch_retry: batch 999 not found"),
        ("SELECT pgq.set_queue_config('nope', 'ticker_max_count', '1')", "No such event queue"),
        ("SELECT pgq.set_queue_config('q', 'bogus', '1')", 'cannot change parameter "boguss"'),
        ("SELECT pgq.set_queue_config(NULL, 'ticker_max_count', '1')", "Invalid NULL value"),
        ("SELECT pgq.ticker('nope')", "no such queue"),
        ("SELECT pgq.ticker('q', 5, now(), 5)", "queue not found or ticker disabled: q"),
        ("SELECT pgq.grant_perms('nope')", "Queue not found"),
        ("SELECT pgq.event_retry_raw('q', 'nope', now(), NULL, now(), 0, 't', 'd', NULL, NULL, NULL, NULL)",
         "consumer not registered"),
    ],
)  # fmt: skip
def test_bad_input_gives_pgq_errors(pgq: psycopg.Connection, sql: str, message: str) -> None:
    pgq.execute("SELECT pgq.create_queue('q')")
    coded = re.match(r"([0-9A-Z]{5}) (.*)$", message)  # "SQLSTATE text"; P0001 (RAISE EXCEPTION) otherwise
    sqlstate, text = coded.groups() if coded else ("P0001", message)
    fails(pgq, sql, sqlstate=sqlstate, match="^" + re.escape(text) + "$")


def test_finished_batch_id_warns_and_returns_zero(pgq: psycopg.Connection) -> None:
    pgq.execute("SELECT pgq.create_queue('q')")
    pgq.execute("SELECT pgq.register_consumer('q', 'c')")
    tick(pgq)
    batch = pgq.execute("SELECT pgq.next_batch('q', 'c')").fetchone()[0]
    assert pgq.execute("SELECT pgq.finish_batch(%s)", (batch,)).fetchone()[0] == 1
    notices: list[str] = []
    pgq.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    assert pgq.execute("SELECT pgq.finish_batch(%s)", (batch,)).fetchone()[0] == 0
    assert notices == [f"finish_batch: batch {batch} not found"]
    fails(pgq, "SELECT * FROM pgq.get_batch_events(%s)", (batch,), sqlstate="P0001", match="^batch not found$")
    assert pgq.execute("SELECT * FROM pgq.get_batch_info(%s)", (batch,)).fetchone() == (None,) * 9


def test_next_batch_custom_min_count_merges_ticks(pgq: psycopg.Connection) -> None:
    pgq.execute("SELECT pgq.create_queue('q')")
    pgq.execute("SELECT pgq.register_consumer('q', 'c')")
    for n in range(3):
        pgq.execute("SELECT pgq.insert_event('q', 't', %s)", (str(n),))
        pgq.execute("SELECT pgq.ticker('q')")  # first ticks: max_count not reached, so no tick yet
        tick(pgq)
    info = pgq.execute("SELECT * FROM pgq.next_batch_info('q', 'c')").fetchone()
    assert info[2] is not None and info[1] == info[2] + 1  # plain next_batch: one tick
    pgq.execute("SELECT pgq.finish_batch(%s)", (info[0],))
    batch, cur, prev = pgq.execute(
        "SELECT batch_id, cur_tick_id, prev_tick_id FROM pgq.next_batch_custom('q', 'c', NULL, 1, NULL)"
    ).fetchone()
    assert batch is not None and cur > prev


def test_notify_per_tick(pgq: psycopg.Connection, pgq_connect: Callable[..., psycopg.Connection]) -> None:
    listener = pgq_connect()
    listener.execute("LISTEN pgq_tick")
    pgq.execute("SELECT pgq.create_queue('q')")
    tick(pgq)
    got = [n.payload for n in listener.notifies(timeout=2, stop_after=2)]
    assert got == ["q", "q"]  # create_queue's first tick, then ours


def test_run_ticker_ticks_and_moves_retries(pgq: psycopg.Connection) -> None:
    pgq.execute("SELECT pgq.create_queue('q')")
    pgq.execute("SELECT pgq.set_queue_config('q', 'ticker_max_lag', '0')")
    pgq.execute("SELECT pgq.register_consumer('q', 'c')")
    ev = pgq.execute("SELECT pgq.insert_event('q', 't', 'x')").fetchone()[0]
    pgq.execute("CALL pgq.run_ticker(loop_delay => '10 ms', max_runtime => '50 ms')")
    batch = pgq.execute("SELECT pgq.next_batch('q', 'c')").fetchone()[0]
    assert batch is not None
    pgq.execute("SELECT pgq.event_retry(%s, %s, 0)", (batch, ev))
    pgq.execute("SELECT pgq.finish_batch(%s)", (batch,))
    pgq.execute("CALL pgq.run_ticker(loop_delay => '10 ms', max_runtime => '50 ms')")
    assert pgq.execute("SELECT count(*) FROM pgq.retry_queue").fetchone()[0] == 0
    # A retried event keeps its ev_id, so the event sequence (what the ticker counts)
    # does not move: as in PgQ, it waits for the next tick the settings call for.
    tick(pgq)
    assert drain(pgq, "c") == [(ev, "x", 1)]
    with pgq.transaction():
        fails(pgq, "CALL pgq.run_ticker()", sqlstate="2D000", match="cannot run inside a transaction block")


def test_create_extension_refuses_an_existing_pgq_schema(db: psycopg.Connection) -> None:
    db.execute("CREATE SCHEMA pgq")
    db.execute("CREATE TABLE pgq.queue (queue_id int)")
    fails(db, "CREATE EXTENSION pg_message_queue_pgq", sqlstate="42P06", match='schema "pgq" already exists')
    db.execute("DROP SCHEMA pgq CASCADE")
    db.execute("CREATE EXTENSION pg_message_queue_pgq")
    assert db.execute("SELECT pgq.version()").fetchone()[0] == "3.5"


def test_drop_extension_refused_while_queues_exist_then_leaves_nothing(pgq: psycopg.Connection) -> None:
    pgq.execute("SELECT pgq.create_queue('q')")
    fails(pgq, "DROP EXTENSION pg_message_queue_pgq", sqlstate="2BP01", match="cannot drop")
    pgq.execute("SELECT pgq.drop_queue('q')")
    pgq.execute("DROP EXTENSION pg_message_queue_pgq")
    left = pgq.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'pgq'::regnamespace").fetchone()[0]
    assert left == 0  # the schema itself stays, empty (CREATE EXTENSION made it, not the script)
    roles = pgq.execute("SELECT count(*) FROM pg_roles WHERE rolname IN ('pgq_reader', 'pgq_writer', 'pgq_admin')")
    assert roles.fetchone()[0] == 3  # cluster-wide, other databases may use them
    pgq.execute("CREATE EXTENSION pg_message_queue_pgq")  # and it comes back
    assert pgq.execute("SELECT pgq.create_queue('q')").fetchone()[0] == 1


def test_external_ticks_and_a_retry_into_a_disabled_queue(pgq: psycopg.Connection) -> None:
    pgq.execute("SELECT pgq.create_queue('q')")
    pgq.execute("SELECT pgq.register_consumer('q', 'c')")
    pgq.execute("SELECT pgq.set_queue_config('q', 'external_ticker', 'true')")
    assert pgq.execute("SELECT pgq.ticker('q', 100, now(), 5000)").fetchone()[0] == 100
    fails(pgq, "SELECT pgq.ticker('q')", sqlstate="P0001", match="^This queue has external tick source.$")
    assert pgq.execute("SELECT pgq.ticker()").fetchone()[0] == 0  # not ours to tick
    seqs = pgq.execute(
        "SELECT pgq.seq_getval(queue_tick_seq), pgq.seq_getval(queue_event_seq) FROM pgq.queue"
    ).fetchone()
    assert seqs == (100, 5000)
    batch = pgq.execute("SELECT pgq.next_batch('q', 'c')").fetchone()[0]
    ev = pgq.execute("SELECT pgq.insert_event('q', 't', 'x')").fetchone()[0]
    pgq.execute("SELECT pgq.finish_batch(%s)", (batch,))
    pgq.execute("SELECT pgq.ticker('q', 101, now(), 6000)")
    batch = pgq.execute("SELECT pgq.next_batch('q', 'c')").fetchone()[0]
    pgq.execute("SELECT pgq.event_retry(%s, %s, 0)", (batch, ev))
    pgq.execute("UPDATE pgq.queue SET queue_disable_insert = true")
    # The retry cannot go back into a queue that takes no inserts: PgQ's error, and the
    # retry stays in the retry queue.
    fails(pgq, "SELECT pgq.maint_retry_events()", sqlstate="XX000", match="^Insert into queue disallowed$")
    assert pgq.execute("SELECT count(*) FROM pgq.retry_queue").fetchone()[0] == 1
