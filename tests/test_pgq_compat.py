"""PgQ 3 behaviour, proven against real PgQ first, then required of ours.

Every test runs twice through the ``pgq_backend`` fixture (tests/conftest.py): ``pgq3`` is
Debian's postgresql-15-pgq3 in its own database, ``ours`` is pg_message_queue_pgq
in another. Same scenarios, same assertions: an assertion that real PgQ fails is
a wrong assertion, one that ours fails is a bug in ours. Only ``ours`` may skip,
when the companion extension is not installed.

Nothing runs a ticker daemon here: ``tick()`` does what pgqd does on its timer
(``pgq.ticker()``), after ``pgq.force_tick()`` so the tick is due now instead of
after ticker_max_lag.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

SEED = Path("/work/shared/seeds/004_0cff0c9d5fbf4132.txt")
EVENT_COLUMNS = [
    "ev_id",
    "ev_time",
    "ev_txid",
    "ev_retry",
    "ev_type",
    "ev_data",
    "ev_extra1",
    "ev_extra2",
    "ev_extra3",
    "ev_extra4",
]


def one(conn: psycopg.Connection, sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def tick(conn: psycopg.Connection, queue: str) -> None:
    """Make the ticker cut a tick of ``queue`` now, as pgqd's ``pgq.ticker()`` would."""
    before = one(conn, "SELECT max(last_tick_id) FROM pgq.get_queue_info(%s)", (queue,))
    conn.execute("SELECT pgq.force_tick(%s)", (queue,))
    assert one(conn, "SELECT pgq.ticker()") >= 1
    after = one(conn, "SELECT max(last_tick_id) FROM pgq.get_queue_info(%s)", (queue,))
    assert after > before


def events(conn: psycopg.Connection, batch_id: int) -> list[dict[str, Any]]:
    cur = conn.execute("SELECT * FROM pgq.get_batch_events(%s)", (batch_id,))
    assert [d.name for d in cur.description] == EVENT_COLUMNS
    return sorted((dict(zip(EVENT_COLUMNS, r, strict=True)) for r in cur.fetchall()), key=lambda e: e["ev_id"])


def take(conn: psycopg.Connection, queue: str, consumer: str) -> list[dict[str, Any]] | None:
    """One whole batch for ``consumer``: its events, finished; None when there is none."""
    batch = one(conn, "SELECT pgq.next_batch(%s, %s)", (queue, consumer))
    if batch is None:
        return None
    got = events(conn, batch)
    assert one(conn, "SELECT pgq.finish_batch(%s)", (batch,)) == 1
    return got


def drain(conn: psycopg.Connection, queue: str, consumer: str) -> list[dict[str, Any]]:
    """Every event of every batch ``consumer`` has waiting."""
    got: list[dict[str, Any]] = []
    while (batch := take(conn, queue, consumer)) is not None:
        got.extend(batch)
    return got


def setup_queue(conn: psycopg.Connection, queue: str = "q", consumers: tuple[str, ...] = ("c",)) -> None:
    assert one(conn, "SELECT pgq.create_queue(%s)", (queue,)) == 1
    for c in consumers:
        assert one(conn, "SELECT pgq.register_consumer(%s, %s)", (queue, c)) == 1


def fails(conn: psycopg.Connection, sql: str, sqlstate: str, message: str, params: Any = None) -> None:
    """``sql`` fails with exactly real PgQ's SQLSTATE and primary message."""
    with pytest.raises(psycopg.Error) as info:
        conn.execute(sql, params)
    err = info.value
    assert (err.sqlstate, err.diag.message_primary) == (sqlstate, message), str(err)


def tutorial_sql() -> list[str]:
    """The tutorial's SQL, as printed in the seed: the ``pgq.*(...)`` code paragraphs
    of its 'Use PG/Q' section (its consumer loop is pseudo-code, run by the test),
    HTML entities and typographic quotes undone, placeholders (in <em>) kept as the
    literal names the tutorial shows."""
    text = SEED.read_text()
    section = text[text.index("### Use PG/Q") :]
    calls = re.findall(r'<p class="code">\s*(pgq\.[a-z_]+\(.*?\));\s*</p>', section, flags=re.S)
    clean = []
    for call in calls:
        call = re.sub(r"</?em>", "", call)
        call = call.replace("&#8216;", "'").replace("&#8217;", "'")
        clean.append("SELECT " + call)
    return clean


# --------------------------------------------------------------------------- tutorial


def test_tutorial_sql_verbatim(pgq_backend) -> None:
    """The seed's SQL in its order: create_queue, insert_event, register_consumer, then
    its consumer loop (next_batch; NULL means wait for the ticker; finish_batch)."""
    statements = tutorial_sql()
    assert statements == [
        "SELECT pgq.create_queue('queueName')",
        "SELECT pgq.insert_event('queueName', 'eventType', 'data')",
        "SELECT pgq.register_consumer('queueName', 'consumerName')",
    ]
    db = pgq_backend.connect()
    results = [one(db, s) for s in statements]
    assert results[0] == 1 and results[2] == 1
    event_id = results[1]
    # The tutorial's loop: the event inserted before register_consumer is still
    # seen, since a consumer starts at the queue's last tick (create_queue's own).
    seen = []
    for _ in range(3):
        batch_id = one(db, "SELECT pgq.next_batch('queueName', 'consumerName')")
        if batch_id is None:
            tick(db, "queueName")  # the ticker daemon's part ("sleep(delayInterval)")
            continue
        seen.extend((e["ev_id"], e["ev_type"], e["ev_data"]) for e in events(db, batch_id))
        assert one(db, "SELECT pgq.finish_batch(%s)", (batch_id,)) == 1
    assert seen == [(event_id, "eventType", "data")]


def test_tutorial_loop_finishes_null_batch(pgq_backend) -> None:
    """The tutorial's pseudo-code calls finish_batch(batchId) after a NULL batchId too:
    PgQ answers 0 with a WARNING, no error."""
    db = pgq_backend.connect()
    setup_queue(db)
    notices: list[tuple[str, str]] = []
    db.add_notice_handler(lambda d: notices.append((d.severity_nonlocalized, d.message_primary)))
    batch_id = one(db, "SELECT pgq.next_batch('q', 'c')")
    assert batch_id is None
    assert one(db, "SELECT pgq.finish_batch(%s)", (batch_id,)) == 0
    assert notices == [("WARNING", "finish_batch: batch <NULL> not found")]


# --------------------------------------------------------------------------- admin


def test_create_queue_and_register_consumer_return_1_then_0(pgq_backend) -> None:
    db = pgq_backend.connect()
    assert one(db, "SELECT pgq.create_queue('q')") == 1
    assert one(db, "SELECT pgq.create_queue('q')") == 0
    assert one(db, "SELECT pgq.register_consumer('q', 'c')") == 1
    assert one(db, "SELECT pgq.register_consumer('q', 'c')") == 0
    assert one(db, "SELECT pgq.version()") == "3.5"


def test_unregister_consumer(pgq_backend) -> None:
    db = pgq_backend.connect()
    setup_queue(db, consumers=("c", "d"))
    assert one(db, "SELECT pgq.unregister_consumer('q', 'c')") == 1
    assert one(db, "SELECT pgq.unregister_consumer('q', 'c')") == 0
    assert db.execute("SELECT consumer_name FROM pgq.get_consumer_info('q')").fetchall() == [("d",)]
    fails(db, "SELECT pgq.next_batch('q', 'c')", "P0001", "Not subscriber to queue: q/c")
    # registering again starts afresh at the current tick: earlier events are not replayed
    db.execute("SELECT pgq.insert_event('q', 't', 'before')")
    tick(db, "q")
    assert one(db, "SELECT pgq.register_consumer('q', 'c')") == 1
    db.execute("SELECT pgq.insert_event('q', 't', 'after')")
    tick(db, "q")
    assert [e["ev_data"] for e in drain(db, "q", "c")] == ["after"]
    assert [e["ev_data"] for e in drain(db, "q", "d")] == ["before", "after"]


def test_unregister_consumer_with_open_batch(pgq_backend) -> None:
    db = pgq_backend.connect()
    setup_queue(db)
    db.execute("SELECT pgq.insert_event('q', 't', 'x')")
    tick(db, "q")
    batch = one(db, "SELECT pgq.next_batch('q', 'c')")
    assert batch is not None
    assert one(db, "SELECT pgq.unregister_consumer('q', 'c')") == 1
    assert db.execute("SELECT * FROM pgq.get_batch_info(%s)", (batch,)).fetchone() == (None,) * 9


def test_drop_queue_with_consumers_needs_force(pgq_backend) -> None:
    db = pgq_backend.connect()
    setup_queue(db)
    db.execute("SELECT pgq.insert_event('q', 't', 'x')")
    fails(db, "SELECT pgq.drop_queue('q')", "P0001", "cannot drop queue, consumers still attached")
    fails(db, "SELECT pgq.drop_queue('q', false)", "P0001", "cannot drop queue, consumers still attached")
    assert db.execute("SELECT queue_name FROM pgq.get_queue_info()").fetchall() == [("q",)]
    assert one(db, "SELECT pgq.drop_queue('q', true)") == 1
    assert db.execute("SELECT * FROM pgq.get_queue_info()").fetchall() == []
    assert db.execute("SELECT * FROM pgq.get_consumer_info()").fetchall() == []
    fails(db, "SELECT pgq.insert_event('q', 't', 'x')", "XX000", "No such queue")
    fails(db, "SELECT pgq.next_batch('q', 'c')", "P0001", "Not subscriber to queue: q/c")
    # the name is free again
    assert one(db, "SELECT pgq.create_queue('q')") == 1


def test_drop_queue_without_consumers(pgq_backend) -> None:
    db = pgq_backend.connect()
    setup_queue(db, consumers=())
    assert one(db, "SELECT pgq.drop_queue('q')") == 1
    assert db.execute("SELECT * FROM pgq.get_queue_info()").fetchall() == []
    fails(db, "SELECT pgq.drop_queue('q')", "P0001", "No such event queue")


# --------------------------------------------------------------------------- batches


def test_batch_events_columns_and_values(pgq_backend) -> None:
    db = pgq_backend.connect()
    setup_queue(db)
    with db.transaction():
        txid = one(db, "SELECT txid_current()")
        t0 = one(db, "SELECT now()")
        e1 = one(db, "SELECT pgq.insert_event('q', 'type1', 'data1')")
        e2 = one(db, "SELECT pgq.insert_event('q', 'type2', 'data2', 'x1', 'x2', 'x3', 'x4')")
        e3 = one(db, "SELECT pgq.insert_event('q', NULL, NULL)")
    assert e1 < e2 < e3
    tick(db, "q")
    batch = one(db, "SELECT pgq.next_batch('q', 'c')")
    assert batch is not None
    got = events(db, batch)
    assert got == [
        dict(ev_id=e1, ev_time=t0, ev_txid=txid, ev_retry=None, ev_type="type1", ev_data="data1",
             ev_extra1=None, ev_extra2=None, ev_extra3=None, ev_extra4=None),
        dict(ev_id=e2, ev_time=t0, ev_txid=txid, ev_retry=None, ev_type="type2", ev_data="data2",
             ev_extra1="x1", ev_extra2="x2", ev_extra3="x3", ev_extra4="x4"),
        dict(ev_id=e3, ev_time=t0, ev_txid=txid, ev_retry=None, ev_type=None, ev_data=None,
             ev_extra1=None, ev_extra2=None, ev_extra3=None, ev_extra4=None),
    ]  # fmt: skip
    # get_batch_cursor serves the same rows, with the same columns
    with db.transaction():
        cur = db.execute("SELECT * FROM pgq.get_batch_cursor(%s, 'c1', 2)", (batch,))
        assert [d.name for d in cur.description] == EVENT_COLUMNS
        first = cur.fetchall()
        rest = db.execute("FETCH ALL FROM c1").fetchall()
    assert sorted(r[0] for r in first + rest) == [e1, e2, e3]
    assert len(first) == 2
    assert one(db, "SELECT pgq.finish_batch(%s)", (batch,)) == 1
    assert one(db, "SELECT pgq.next_batch('q', 'c')") is None


def test_next_batch_with_nothing_to_do_is_null(pgq_backend) -> None:
    db = pgq_backend.connect()
    setup_queue(db)
    assert one(db, "SELECT pgq.next_batch('q', 'c')") is None
    # events without a tick: still nothing
    db.execute("SELECT pgq.insert_event('q', 't', 'x')")
    assert one(db, "SELECT pgq.next_batch('q', 'c')") is None
    assert db.execute("SELECT * FROM pgq.next_batch_info('q', 'c')").fetchone() == (None,) * 7
    tick(db, "q")
    assert [e["ev_data"] for e in take(db, "q", "c")] == ["x"]
    assert one(db, "SELECT pgq.next_batch('q', 'c')") is None


def test_tick_without_events_gives_an_empty_batch(pgq_backend) -> None:
    """Surprising but PgQ: every tick is a batch, events or not."""
    db = pgq_backend.connect()
    setup_queue(db)
    tick(db, "q")
    assert take(db, "q", "c") == []
    assert take(db, "q", "c") is None


def test_next_batch_twice_before_finish_is_the_same_batch(pgq_backend) -> None:
    db = pgq_backend.connect()
    setup_queue(db)
    db.execute("SELECT pgq.insert_event('q', 't', 'a')")
    tick(db, "q")
    first = one(db, "SELECT pgq.next_batch('q', 'c')")
    db.execute("SELECT pgq.insert_event('q', 't', 'b')")
    tick(db, "q")
    assert one(db, "SELECT pgq.next_batch('q', 'c')") == first
    info = db.execute("SELECT * FROM pgq.next_batch_info('q', 'c')").fetchone()
    assert info[0] == first
    assert [e["ev_data"] for e in events(db, first)] == ["a"]
    assert one(db, "SELECT pgq.finish_batch(%s)", (first,)) == 1
    second = one(db, "SELECT pgq.next_batch('q', 'c')")
    assert second is not None and second != first
    assert [e["ev_data"] for e in events(db, second)] == ["b"]


def test_two_consumers_each_get_every_committed_event_once(pgq_backend) -> None:
    db = pgq_backend.connect()
    setup_queue(db, consumers=("c1", "c2"))
    sent: list[int] = []
    got: dict[str, list[int]] = {"c1": [], "c2": []}
    for round_ in range(6):
        with db.transaction():
            for i in range(round_ * 7 + 1):
                sent.append(one(db, "SELECT pgq.insert_event('q', 't', %s)", (f"{round_}.{i}",)))
        tick(db, "q")
        # c1 keeps up every round, c2 every third: one batch per tick either way
        for e in drain(db, "q", "c1"):
            got["c1"].append(e["ev_id"])
        if round_ % 3 == 2:
            for e in drain(db, "q", "c2"):
                got["c2"].append(e["ev_id"])
    assert sorted(got["c1"]) == sorted(sent) and len(got["c1"]) == len(set(got["c1"]))
    assert sorted(got["c2"]) == sorted(sent) and len(got["c2"]) == len(set(got["c2"]))


def test_rolled_back_events_never_appear(pgq_backend) -> None:
    db = pgq_backend.connect()
    setup_queue(db)
    other = pgq_backend.connect(autocommit=False)
    other.execute("SELECT pgq.insert_event('q', 't', 'rolled back')")
    other.rollback()
    db.execute("SELECT pgq.insert_event('q', 't', 'kept')")
    with db.transaction():
        db.execute("SAVEPOINT s")
        db.execute("SELECT pgq.insert_event('q', 't', 'savepoint rolled back')")
        db.execute("ROLLBACK TO SAVEPOINT s")
    tick(db, "q")
    assert [e["ev_data"] for e in drain(db, "q", "c")] == ["kept"]


def test_transaction_open_across_a_tick_lands_in_a_later_batch(pgq_backend) -> None:
    """A transaction that began before a tick and committed after it: its event is
    not in the tick's batch (not committed in its snapshot) but in the next one."""
    db = pgq_backend.connect()
    setup_queue(db)
    late = pgq_backend.connect(autocommit=False)
    late_id = one(late, "SELECT pgq.insert_event('q', 't', 'late')")
    early_id = one(db, "SELECT pgq.insert_event('q', 't', 'early')")
    assert late_id < early_id
    tick(db, "q")
    late.commit()
    assert [e["ev_id"] for e in take(db, "q", "c")] == [early_id]
    assert take(db, "q", "c") is None
    tick(db, "q")
    assert [e["ev_id"] for e in take(db, "q", "c")] == [late_id]


# --------------------------------------------------------------------------- retries


def _retry_until_moved(db: psycopg.Connection) -> int:
    moved = 0
    while (n := one(db, "SELECT pgq.maint_retry_events()")) > 0:
        moved += n
    return moved


def test_event_retry_returns_the_event_to_that_consumer_alone(pgq_backend) -> None:
    db = pgq_backend.connect()
    setup_queue(db, consumers=("c1", "c2"))
    ev = one(db, "SELECT pgq.insert_event('q', 't', 'retry me')")
    other = one(db, "SELECT pgq.insert_event('q', 't', 'fine')")
    tick(db, "q")
    b1 = one(db, "SELECT pgq.next_batch('q', 'c1')")
    assert [e["ev_id"] for e in events(db, b1)] == [ev, other]
    assert one(db, "SELECT pgq.event_retry(%s, %s, 0)", (b1, ev)) == 1
    assert one(db, "SELECT pgq.event_retry(%s, %s, 0)", (b1, ev)) == 0  # already queued for retry
    assert one(db, "SELECT pgq.finish_batch(%s)", (b1,)) == 1
    assert [e["ev_id"] for e in drain(db, "q", "c2")] == [ev, other]
    assert _retry_until_moved(db) == 1
    tick(db, "q")
    again = drain(db, "q", "c1")
    assert [(e["ev_id"], e["ev_data"], e["ev_retry"]) for e in again] == [(ev, "retry me", 1)]
    assert drain(db, "q", "c2") == []
    # a second retry counts up
    tick(db, "q")
    assert drain(db, "q", "c1") == []
    db.execute("SELECT pgq.insert_event('q', 't', 'next')")
    tick(db, "q")
    b = one(db, "SELECT pgq.next_batch('q', 'c1')")
    (nxt,) = events(db, b)
    assert one(db, "SELECT pgq.event_retry(%s, %s, now())", (b, nxt["ev_id"])) == 1
    assert one(db, "SELECT pgq.finish_batch(%s)", (b,)) == 1
    assert _retry_until_moved(db) == 1
    tick(db, "q")
    assert [(e["ev_id"], e["ev_retry"]) for e in drain(db, "q", "c1")] == [(nxt["ev_id"], 1)]


def test_event_retry_waits_for_its_time(pgq_backend) -> None:
    db = pgq_backend.connect()
    setup_queue(db)
    ev = one(db, "SELECT pgq.insert_event('q', 't', 'later')")
    tick(db, "q")
    b = one(db, "SELECT pgq.next_batch('q', 'c')")
    assert one(db, "SELECT pgq.event_retry(%s, %s, 3600)", (b, ev)) == 1
    assert one(db, "SELECT pgq.finish_batch(%s)", (b,)) == 1
    assert _retry_until_moved(db) == 0
    tick(db, "q")
    assert drain(db, "q", "c") == []


def test_batch_retry(pgq_backend) -> None:
    db = pgq_backend.connect()
    setup_queue(db, consumers=("c1", "c2"))
    ids = [one(db, "SELECT pgq.insert_event('q', 't', %s)", (str(i),)) for i in range(3)]
    tick(db, "q")
    b = one(db, "SELECT pgq.next_batch('q', 'c1')")
    assert one(db, "SELECT pgq.batch_retry(%s, 0)", (b,)) == 3
    assert one(db, "SELECT pgq.batch_retry(%s, 0)", (b,)) == 0  # already queued for retry
    assert one(db, "SELECT pgq.finish_batch(%s)", (b,)) == 1
    assert [e["ev_id"] for e in drain(db, "q", "c2")] == ids
    assert _retry_until_moved(db) == 3
    tick(db, "q")
    assert [(e["ev_id"], e["ev_retry"]) for e in drain(db, "q", "c1")] == [(i, 1) for i in ids]
    assert drain(db, "q", "c2") == []


# --------------------------------------------------------------------------- info


QUEUE_INFO = [
    "queue_name",
    "queue_ntables",
    "queue_cur_table",
    "queue_rotation_period",
    "queue_switch_time",
    "queue_external_ticker",
    "queue_ticker_paused",
    "queue_ticker_max_count",
    "queue_ticker_max_lag",
    "queue_ticker_idle_period",
    "ticker_lag",
    "ev_per_sec",
    "ev_new",
    "last_tick_id",
]
CONSUMER_INFO = [
    "queue_name",
    "consumer_name",
    "lag",
    "last_seen",
    "last_tick",
    "current_batch",
    "next_tick",
    "pending_events",
]
BATCH_INFO = [
    "queue_name",
    "consumer_name",
    "batch_start",
    "batch_end",
    "prev_tick_id",
    "tick_id",
    "lag",
    "seq_start",
    "seq_end",
]
NEXT_BATCH_INFO = [
    "batch_id",
    "cur_tick_id",
    "prev_tick_id",
    "cur_tick_time",
    "prev_tick_time",
    "cur_tick_event_seq",
    "prev_tick_event_seq",
]


def _named(conn: psycopg.Connection, sql: str, params: Any = None) -> tuple[list[str], list[tuple]]:
    cur = conn.execute(sql, params)
    return [d.name for d in cur.description], cur.fetchall()


def test_info_functions_columns_and_values(pgq_backend) -> None:
    db = pgq_backend.connect()
    setup_queue(db, "q", ("c1", "c2"))
    setup_queue(db, "r", ("c1",))
    for sql in ("SELECT * FROM pgq.get_queue_info()", "SELECT * FROM pgq.get_queue_info('q')"):
        names, rows = _named(db, sql)
        assert names == QUEUE_INFO
    names, rows = _named(db, "SELECT * FROM pgq.get_queue_info()")
    assert [r[0] for r in rows] == ["q", "r"]
    q = dict(zip(names, rows[0], strict=True))
    assert (q["queue_ntables"], q["queue_cur_table"], q["queue_rotation_period"]) == (
        3, 0, datetime.timedelta(hours=2)
    )  # fmt: skip
    assert (q["queue_external_ticker"], q["queue_ticker_paused"], q["queue_ticker_max_count"]) == (False, False, 500)
    assert (q["queue_ticker_max_lag"], q["queue_ticker_idle_period"]) == (
        datetime.timedelta(seconds=3), datetime.timedelta(minutes=1)
    )  # fmt: skip
    assert _named(db, "SELECT * FROM pgq.get_queue_info('nope')")[1] == []

    for sql, expected in (
        ("SELECT * FROM pgq.get_consumer_info()", [("q", "c1"), ("q", "c2"), ("r", "c1")]),
        ("SELECT * FROM pgq.get_consumer_info('q')", [("q", "c1"), ("q", "c2")]),
        ("SELECT * FROM pgq.get_consumer_info('q', 'c2')", [("q", "c2")]),
        ("SELECT * FROM pgq.get_consumer_info('nope')", []),
        ("SELECT * FROM pgq.get_consumer_info('q', 'nope')", []),
    ):
        names, rows = _named(db, sql)
        assert names == CONSUMER_INFO
        assert [r[:2] for r in rows] == expected

    db.execute("SELECT pgq.insert_event('q', 't', 'x')")
    tick(db, "q")
    b = one(db, "SELECT pgq.next_batch('q', 'c1')")
    names, rows = _named(db, "SELECT * FROM pgq.get_consumer_info('q', 'c1')")
    c1 = dict(zip(names, rows[0], strict=True))
    assert c1["current_batch"] == b
    assert c1["next_tick"] > c1["last_tick"]
    names, rows = _named(db, "SELECT * FROM pgq.get_batch_info(%s)", (b,))
    assert names == BATCH_INFO
    info = dict(zip(names, rows[0], strict=True))
    assert (info["queue_name"], info["consumer_name"]) == ("q", "c1")
    assert info["tick_id"] == c1["next_tick"] and info["prev_tick_id"] == c1["last_tick"]
    assert info["batch_start"] <= info["batch_end"] and info["seq_start"] <= info["seq_end"]

    names, rows = _named(db, "SELECT * FROM pgq.next_batch_info('q', 'c2')")
    assert names == NEXT_BATCH_INFO
    assert rows[0][0] is not None and rows[0][1] == info["tick_id"] and rows[0][2] == info["prev_tick_id"]
    c2_batch = rows[0][0]
    # next_batch_info opened c2's batch: next_batch_custom hands back that same batch
    names, rows = _named(db, "SELECT * FROM pgq.next_batch_custom('q', 'c2', NULL, 1000000, NULL)")
    assert names == NEXT_BATCH_INFO
    assert rows[0][0] == c2_batch
    # min_lag: no tick old enough yet, no batch (all columns NULL)
    names, rows = _named(db, "SELECT * FROM pgq.next_batch_custom('r', 'c1', '1 hour', NULL, NULL)")
    assert names == NEXT_BATCH_INFO
    assert rows == [(None,) * 7]
    names, _ = _named(db, "SELECT * FROM pgq.maint_operations()")
    assert names == ["func_name", "func_arg"]
    assert one(db, "SELECT pgq.finish_batch(%s)", (b,)) == 1
    names, rows = _named(db, "SELECT * FROM pgq.get_consumer_info('q', 'c1')")
    assert dict(zip(names, rows[0], strict=True))["current_batch"] is None


# --------------------------------------------------------------------------- errors

# (SQL, SQLSTATE, primary message), each as real PgQ 3.5 reports it. Queue 'q' with
# consumer 'c' exists; batch 99999 does not.
ERRORS = [
    ("SELECT pgq.insert_event('nope', 't', 'd')", "XX000", "No such queue"),
    ("SELECT pgq.insert_event('nope', 't', 'd', 'a', 'b', 'c', 'd')", "XX000", "No such queue"),
    ("SELECT pgq.insert_event(NULL, 't', 'd')", "XX000", "Queue name must not be NULL"),
    ("SELECT pgq.next_batch('nope', 'c')", "P0001", "Not subscriber to queue: nope/c"),
    ("SELECT pgq.next_batch('q', 'nope')", "P0001", "Not subscriber to queue: q/nope"),
    ("SELECT pgq.next_batch(NULL, 'c')", "P0001", "Not subscriber to queue: NULL/c"),
    ("SELECT pgq.next_batch('q', NULL)", "P0001", "Not subscriber to queue: q/NULL"),
    ("SELECT * FROM pgq.next_batch_info('nope', 'c')", "P0001", "Not subscriber to queue: nope/c"),
    ("SELECT * FROM pgq.next_batch_custom('q', 'nope', NULL, NULL, NULL)", "P0001", "Not subscriber to queue: q/nope"),
    ("SELECT pgq.register_consumer('nope', 'c')", "P0001", "Event queue not created yet"),
    ("SELECT pgq.register_consumer(NULL, 'c')", "P0001", "Event queue not created yet"),
    (
        "SELECT pgq.register_consumer('q', NULL)",
        "23502",
        'null value in column "co_name" of relation "consumer" violates not-null constraint',
    ),
    ("SELECT pgq.register_consumer_at('nope', 'c', 1)", "P0001", "Event queue not created yet"),
    ("SELECT pgq.register_consumer_at('q', 'c2', 99999)", "P0001", "cannot reposition, tick not found: 99999"),
    ("SELECT pgq.create_queue(NULL)", "P0001", "Invalid NULL value"),
    ("SELECT pgq.drop_queue('nope')", "P0001", "No such event queue"),
    ("SELECT pgq.drop_queue('nope', true)", "P0001", "No such event queue"),
    ("SELECT pgq.drop_queue(NULL, true)", "P0001", "No such event queue"),
    ("SELECT pgq.current_event_table('nope')", "P0001", "Event queue not found"),
    ("SELECT pgq.current_event_table(NULL)", "P0001", "Event queue not found"),
    ("SELECT pgq.set_queue_config('nope', 'ticker_max_count', '1')", "P0001", "No such event queue"),
    ("SELECT pgq.set_queue_config(NULL, 'ticker_max_count', '1')", "P0001", "Invalid NULL value"),
    ("SELECT pgq.set_queue_config('q', NULL, '1')", "P0001", "Invalid NULL value"),
    # sic: PgQ's format string has a stray "s" after the placeholder
    ("SELECT pgq.set_queue_config('q', 'bogus', '1')", "P0001", 'cannot change parameter "boguss"'),
    (
        "SELECT pgq.set_queue_config('q', 'ticker_max_count', 'x')",
        "22P02",
        'invalid input syntax for type integer: "x"',
    ),
    ("SELECT pgq.ticker('nope')", "P0001", "no such queue"),
    ("SELECT * FROM pgq.get_batch_events(99999)", "P0001", "batch not found"),
    ("SELECT * FROM pgq.get_batch_events(NULL)", "P0001", "batch not found"),
    ("SELECT * FROM pgq.get_batch_cursor(99999, 'cur', 10)", "P0001", "batch not found"),
    ("SELECT pgq.event_retry(99999, 1, 0)", "P0001", "event not found"),
    ("SELECT pgq.event_retry(NULL, 1, 0)", "P0001", "event not found"),
    ("SELECT pgq.event_retry(99999, 1, now())", "P0001", "event not found"),
    ("SELECT pgq.batch_retry(99999, 0)", "P0001", "batch_retry: batch 99999 not found"),
    ("SELECT pgq.batch_retry(NULL, 0)", "P0001", "batch_retry: batch <NULL> not found"),
]


@pytest.mark.parametrize(("sql", "sqlstate", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_match_pgq(pgq_backend, sql: str, sqlstate: str, message: str) -> None:
    db = pgq_backend.connect()
    setup_queue(db)
    fails(db, sql, sqlstate, message)
    # nothing half-done: the queue and its consumer are as they were
    assert db.execute("SELECT queue_name FROM pgq.get_queue_info()").fetchall() == [("q",)]
    assert db.execute("SELECT queue_name, consumer_name FROM pgq.get_consumer_info()").fetchall() == [("q", "c")]


def test_unknown_things_that_are_not_errors(pgq_backend) -> None:
    """Where PgQ answers instead of raising, ours must answer the same."""
    db = pgq_backend.connect()
    setup_queue(db)
    notices: list[tuple[str, str]] = []
    db.add_notice_handler(lambda d: notices.append((d.severity_nonlocalized, d.message_primary)))
    assert one(db, "SELECT pgq.unregister_consumer('q', 'nope')") == 0
    assert one(db, "SELECT pgq.unregister_consumer('nope', 'c')") == 0
    assert one(db, "SELECT pgq.unregister_consumer(NULL, 'c')") == 0
    assert one(db, "SELECT pgq.unregister_consumer('q', NULL)") == 0
    assert one(db, "SELECT pgq.drop_queue(NULL)") is None
    assert one(db, "SELECT pgq.finish_batch(99999)") == 0
    assert db.execute("SELECT * FROM pgq.get_batch_info(99999)").fetchall() == [(None,) * 9]
    assert notices == [("WARNING", "finish_batch: batch 99999 not found")]


def test_finished_batch_id(pgq_backend) -> None:
    db = pgq_backend.connect()
    setup_queue(db)
    ev = one(db, "SELECT pgq.insert_event('q', 't', 'x')")
    tick(db, "q")
    b = one(db, "SELECT pgq.next_batch('q', 'c')")
    assert one(db, "SELECT pgq.finish_batch(%s)", (b,)) == 1
    notices: list[tuple[str, str]] = []
    db.add_notice_handler(lambda d: notices.append((d.severity_nonlocalized, d.message_primary)))
    assert one(db, "SELECT pgq.finish_batch(%s)", (b,)) == 0
    assert notices == [("WARNING", f"finish_batch: batch {b} not found")]
    fails(db, "SELECT * FROM pgq.get_batch_events(%s)", "P0001", "batch not found", (b,))
    fails(db, "SELECT pgq.event_retry(%s, %s, 0)", "P0001", "event not found", (b, ev))
    fails(db, "SELECT pgq.batch_retry(%s, 0)", "P0001", f"batch_retry: batch {b} not found", (b,))
    assert db.execute("SELECT * FROM pgq.get_batch_info(%s)", (b,)).fetchall() == [(None,) * 9]


def test_ticker_refuses_paused_and_external_queues(pgq_backend) -> None:
    db = pgq_backend.connect()
    setup_queue(db)
    assert one(db, "SELECT pgq.set_queue_config('q', 'ticker_paused', 'true')") == 1
    fails(db, "SELECT pgq.ticker('q')", "P0001", "Ticker has been paused for this queue")
    assert one(db, "SELECT pgq.ticker()") == 0
    assert one(db, "SELECT pgq.set_queue_config('q', 'ticker_paused', 'false')") == 1
    assert one(db, "SELECT pgq.set_queue_config('q', 'external_ticker', 'true')") == 1
    fails(db, "SELECT pgq.ticker('q')", "P0001", "This queue has external tick source.")
    assert one(db, "SELECT pgq.ticker()") == 0


def _last_tick(db: psycopg.Connection) -> int:
    return one(db, "SELECT last_tick_id FROM pgq.get_queue_info('q')")


def test_ticker_max_count_max_lag_and_idle_period(pgq_backend) -> None:
    """pgq.ticker() cuts a tick when ticker_max_count events are waiting or the last
    tick is ticker_max_lag old; with no events, only after the idle period (and at
    least max_lag/2); the first tick after create_queue's own comes at once."""
    db = pgq_backend.connect()
    setup_queue(db)
    db.execute("SELECT pgq.set_queue_config('q', 'ticker_max_count', '3')")
    db.execute("SELECT pgq.set_queue_config('q', 'ticker_max_lag', '1 hour')")
    db.execute("SELECT pgq.set_queue_config('q', 'ticker_idle_period', '1 hour')")
    first = _last_tick(db)
    assert one(db, "SELECT pgq.ticker()") == 1  # only create_queue's tick so far: ticks
    second = _last_tick(db)
    assert second > first
    assert one(db, "SELECT pgq.ticker()") == 0  # idle, younger than max_lag/2
    db.execute("SELECT pgq.insert_event('q', 't', '1')")
    db.execute("SELECT pgq.insert_event('q', 't', '2')")
    assert one(db, "SELECT pgq.ticker()") == 0  # 2 < max_count, younger than max_lag
    assert one(db, "SELECT pgq.ticker('q')") is None
    db.execute("SELECT pgq.insert_event('q', 't', '3')")
    # Surprising but PgQ: the queue's first events count one short (the tick before
    # them recorded the event sequence's last_value 1 before its first nextval)
    assert one(db, "SELECT pgq.ticker()") == 0
    db.execute("SELECT pgq.insert_event('q', 't', '4')")
    assert one(db, "SELECT pgq.ticker()") == 1  # max_count reached
    third = _last_tick(db)
    assert third > second
    for data in ("5", "6"):
        db.execute("SELECT pgq.insert_event('q', 't', %s)", (data,))
        assert one(db, "SELECT pgq.ticker()") == 0
    db.execute("SELECT pgq.insert_event('q', 't', '7')")
    assert one(db, "SELECT pgq.ticker()") == 1  # from then on, exactly max_count
    third = _last_tick(db)
    db.execute("SELECT pgq.insert_event('q', 't', '8')")
    assert one(db, "SELECT pgq.ticker()") == 0
    db.execute("SELECT pgq.set_queue_config('q', 'ticker_max_lag', '0')")
    assert one(db, "SELECT pgq.ticker('q')") > third  # max_lag passed: ticks, returns its id
    fourth = _last_tick(db)
    db.execute("SELECT pgq.set_queue_config('q', 'ticker_max_lag', '1 hour')")
    assert one(db, "SELECT pgq.ticker()") == 0  # idle
    db.execute("SELECT pgq.set_queue_config('q', 'ticker_max_lag', '0')")
    db.execute("SELECT pgq.set_queue_config('q', 'ticker_idle_period', '0')")
    assert one(db, "SELECT pgq.ticker()") == 1  # idle period over
    assert _last_tick(db) > fourth
    assert [e["ev_data"] for e in drain(db, "q", "c")] == [str(i) for i in range(1, 9)]


def maint(db: psycopg.Connection) -> None:
    """What pgqd's maintenance loop does: every operation pgq.maint_operations() lists,
    each in its own transaction."""
    for func, arg in db.execute("SELECT func_name, func_arg FROM pgq.maint_operations()").fetchall():
        assert func in ("pgq.maint_rotate_tables_step1", "pgq.maint_rotate_tables_step2"), func
        if arg is None:
            db.execute(f"SELECT {func}()")
        else:
            db.execute(f"SELECT {func}(%s)", (arg,))


def test_rotation_under_a_slow_consumer_loses_nothing(pgq_backend) -> None:
    """Event tables rotate (rotation_period 0: whenever maintenance runs), but not past a
    consumer that has not read them: the slow consumer still gets every event, once."""
    db = pgq_backend.connect()
    setup_queue(db, consumers=("fast", "slow"))
    assert one(db, "SELECT pgq.set_queue_config('q', 'rotation_period', '0')") == 1
    # the control: queue r, same settings, only a consumer that keeps up
    setup_queue(db, "r", consumers=("fast",))
    assert one(db, "SELECT pgq.set_queue_config('r', 'rotation_period', '0')") == 1
    first_table = one(db, "SELECT pgq.current_event_table('q')")
    sent: list[int] = []
    got: dict[str, list[int]] = {"fast": [], "slow": []}
    tables = []
    control = []
    for round_ in range(10):
        with db.transaction():
            sent += [one(db, "SELECT pgq.insert_event('q', 't', %s)", (f"{round_}.{i}",)) for i in range(5)]
            db.execute("SELECT pgq.insert_event('r', 't', 'x')")
        tick(db, "q")
        tick(db, "r")
        got["fast"] += [e["ev_id"] for e in drain(db, "q", "fast")]
        drain(db, "r", "fast")
        if round_ >= 4:  # the slow consumer catches up from round 4 on
            got["slow"] += [e["ev_id"] for e in drain(db, "q", "slow")]
        maint(db)
        tables.append(one(db, "SELECT pgq.current_event_table('q')"))
        control.append(one(db, "SELECT pgq.current_event_table('r')"))
    # no rotation while the slow consumer still needed the first table; the control rotated
    assert tables[:4] == [first_table] * 4
    assert len(set(control[:4])) == 3
    # then it rotates, through all three tables
    assert len(set(tables[4:])) >= 2
    assert one(db, "SELECT queue_ntables FROM pgq.get_queue_info('q')") == 3
    got["slow"] += [e["ev_id"] for e in drain(db, "q", "slow")]
    for consumer in ("fast", "slow"):
        assert sorted(got[consumer]) == sorted(sent), consumer
        assert len(got[consumer]) == len(set(got[consumer])), consumer
