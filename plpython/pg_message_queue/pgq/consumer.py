"""Consumers: subscriptions, batches between two ticks, retries, finishing."""

from __future__ import annotations

from typing import Any

from .. import _db
from .common import fail, one, plpgsql_text, quote_fqname

BATCH_FIELDS = (
    "batch_id", "cur_tick_id", "prev_tick_id", "cur_tick_time", "prev_tick_time",
    "cur_tick_event_seq", "prev_tick_event_seq",
)  # fmt: skip
EVENT_COLUMNS = "ev_id, ev_time, ev_txid, ev_retry, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4"


def register_consumer_at(queue: str | None, consumer: str | None, tick_pos: int | None) -> int:
    """Subscribe ``consumer`` from the queue's last tick (or ``tick_pos``): 1; already
    subscribed: 0 (repositioned to ``tick_pos`` when given)."""
    q = one("SELECT queue_id FROM pgq.queue WHERE queue_name = $1", ("text",), (queue,))
    if q is None:
        fail("Event queue not created yet")
    qid = q["queue_id"]
    c = one("SELECT co_id FROM pgq.consumer WHERE co_name = $1 FOR UPDATE", ("text",), (consumer,))
    if c is None:
        c = one("INSERT INTO pgq.consumer (co_name) VALUES ($1) RETURNING co_id", ("text",), (consumer,))
    cid = c["co_id"]
    if tick_pos is not None and not one(
        "SELECT 1 FROM pgq.tick WHERE tick_queue = $1 AND tick_id = $2", ("int4", "int8"), (qid, tick_pos)
    ):
        fail(f"cannot reposition, tick not found: {tick_pos}")
    if one("SELECT 1 FROM pgq.subscription WHERE sub_consumer = $1 AND sub_queue = $2", ("int4", "int4"), (cid, qid)):
        if tick_pos is not None:
            _db.run(
                "UPDATE pgq.subscription SET sub_last_tick = $3, sub_batch = NULL, sub_next_tick = NULL,"
                " sub_active = pg_catalog.now() WHERE sub_consumer = $1 AND sub_queue = $2",
                ("int4", "int4", "int8"),
                (cid, qid, tick_pos),
            )
        return 0
    if tick_pos is None:
        last = one(
            "SELECT tick_id FROM pgq.tick WHERE tick_queue = $1 ORDER BY tick_queue DESC, tick_id DESC LIMIT 1",
            ("int4",),
            (qid,),
        )
        if last is None:
            fail("No ticks for this queue.  Please run ticker on database.")
        tick_pos = last["tick_id"]
    _db.run(
        "INSERT INTO pgq.subscription (sub_queue, sub_consumer, sub_last_tick) VALUES ($1, $2, $3)",
        ("int4", "int4", "int8"),
        (qid, cid, tick_pos),
    )
    return 1


def unregister_consumer(queue: str | None, consumer: str | None) -> int:
    """Drop the subscription and its pending retries (and the consumer when it has no
    other queue); the number of subscriptions removed, 0 when there was none."""
    s = one(
        "SELECT s.sub_id, c.co_id,"
        " (s.sub_last_tick IS NULL AND s.sub_next_tick IS NULL)"
        " OR (s.sub_last_tick IS NOT NULL AND s.sub_next_tick IS NOT NULL) AS is_sub"
        " FROM pgq.subscription s, pgq.consumer c, pgq.queue q"
        " WHERE s.sub_queue = q.queue_id AND s.sub_consumer = c.co_id"
        " AND q.queue_name = $1 AND c.co_name = $2 FOR UPDATE OF s, c",
        ("text", "text"),
        (queue, consumer),
    )
    if s is None:
        return 0
    count = one("SELECT pg_catalog.count(*) AS n FROM pgq.subscription WHERE sub_id = $1", ("int4",), (s["sub_id"],))[
        "n"
    ]
    if count > 1 and s["is_sub"]:
        _db.run(
            "DELETE FROM pgq.subscription WHERE sub_id = $1 AND sub_consumer = $2",
            ("int4", "int4"),
            (s["sub_id"], s["co_id"]),
        )
        return 1
    _db.run("DELETE FROM pgq.retry_queue WHERE ev_owner = $1", ("int4",), (s["sub_id"],))
    _db.run("DELETE FROM pgq.subscription WHERE sub_id = $1", ("int4",), (s["sub_id"],))
    if not one("SELECT 1 FROM pgq.subscription WHERE sub_consumer = $1 LIMIT 1", ("int4",), (s["co_id"],)):
        _db.run("DELETE FROM pgq.consumer WHERE co_id = $1", ("int4",), (s["co_id"],))
    return int(count)


SUBSCRIPTION = (
    "SELECT s.sub_queue, s.sub_consumer, s.sub_batch AS batch_id,"
    " t1.tick_id AS prev_tick_id, t1.tick_time AS prev_tick_time, t1.tick_event_seq AS prev_tick_event_seq,"
    " t2.tick_id AS cur_tick_id, t2.tick_time AS cur_tick_time, t2.tick_event_seq AS cur_tick_event_seq"
    " FROM pgq.consumer c, pgq.queue q, pgq.subscription s"
    " LEFT JOIN pgq.tick t1 ON t1.tick_queue = s.sub_queue AND t1.tick_id = s.sub_last_tick"
    " LEFT JOIN pgq.tick t2 ON t2.tick_queue = s.sub_queue AND t2.tick_id = s.sub_next_tick"
    " WHERE q.queue_name = $1 AND c.co_name = $2 AND s.sub_queue = q.queue_id AND s.sub_consumer = c.co_id"
)


def next_batch_custom(
    queue: str | None, consumer: str | None, min_lag: str | None, min_count: int | None, min_interval: str | None
) -> dict[str, Any]:
    """The consumer's open batch, or a new one up to the next tick (or the first tick
    that is min_count events or min_interval after the last one); NULLs when there is
    none yet, or it is younger than min_lag."""
    s = one(SUBSCRIPTION, ("text", "text"), (queue, consumer))
    if s is None:
        fail(f"Not subscriber to queue: {queue if queue is not None else 'NULL'}/"
             f"{consumer if consumer is not None else 'NULL'}")  # fmt: skip
    if s["prev_tick_id"] is None:
        fail(
            f"PgQ corruption: Consumer {plpgsql_text(consumer)} on queue {plpgsql_text(queue)}"
            f" does not see tick {plpgsql_text(None)}"
        )
    out = {k: s[k] for k in BATCH_FIELDS}
    if s["batch_id"] is not None:
        return out
    if min_interval is None and min_count is None:
        cur = one(
            "SELECT tick_id, tick_time, tick_event_seq FROM pgq.tick WHERE tick_id > $2 AND tick_queue = $1"
            " ORDER BY tick_queue ASC, tick_id ASC LIMIT 1",
            ("int4", "int8"),
            (s["sub_queue"], s["prev_tick_id"]),
        )
        cur = (cur["tick_id"], cur["tick_time"], cur["tick_event_seq"]) if cur else (None, None, None)
    else:
        found = find_tick_helper(
            s["sub_queue"], s["prev_tick_id"], s["prev_tick_time"], s["prev_tick_event_seq"], min_count, min_interval
        )
        cur = (found["next_tick_id"], found["next_tick_time"], found["next_tick_seq"])
    if (
        min_lag is not None
        and cur[0] is not None
        and one(
            "SELECT pg_catalog.now() - $1::pg_catalog.timestamptz < $2::pg_catalog.interval AS young",
            ("text", "text"),
            (cur[1], min_lag),
        )["young"]
    ):
        cur = (None, None, None)
    if cur[0] is None:
        return dict.fromkeys(BATCH_FIELDS)
    out["cur_tick_id"], out["cur_tick_time"], out["cur_tick_event_seq"] = cur
    out["batch_id"] = one(
        "UPDATE pgq.subscription SET sub_batch = pg_catalog.nextval('pgq.batch_id_seq'), sub_next_tick = $3,"
        " sub_active = pg_catalog.now() WHERE sub_queue = $1 AND sub_consumer = $2 RETURNING sub_batch",
        ("int4", "int4", "int8"),
        (s["sub_queue"], s["sub_consumer"], cur[0]),
    )["sub_batch"]
    return out


def find_tick_helper(
    queue_id: int, prev_id: int, prev_time: Any, prev_seq: int, min_count: int | None, min_interval: str | None
) -> dict[str, Any]:
    """The first tick after ``prev_id`` that is min_count events or min_interval later,
    or the newest tick when it is not far past either (PgQ's find_tick_helper)."""
    none = {"next_tick_id": None, "next_tick_time": None, "next_tick_seq": None}
    t = one(
        "SELECT tick_id, tick_time, tick_event_seq, tick_event_seq - $3 AS cnt,"
        " tick_time - $4::pg_catalog.timestamptz AS ival,"
        " tick_time - $4::pg_catalog.timestamptz >= $5::pg_catalog.interval AS ival_ok,"
        " tick_time - $4::pg_catalog.timestamptz > $5::pg_catalog.interval * 2 AS ival_far"
        " FROM pgq.tick WHERE tick_queue = $1 AND tick_id > $2 ORDER BY tick_queue DESC, tick_id DESC LIMIT 1",
        ("int4", "int8", "int8", "text", "text"),
        (queue_id, prev_id, prev_seq, prev_time, min_interval),
    )
    if t is None:
        return none
    sure, can_set = True, False
    if min_count is not None:
        if t["cnt"] >= min_count:
            can_set = True
        if t["cnt"] > min_count * 2:
            sure = False
    if min_interval is not None:
        if t["ival_ok"]:
            can_set = True
        if t["ival_far"]:
            sure = False
    if not sure:
        t = one(
            "SELECT tick_id, tick_time, tick_event_seq FROM pgq.tick WHERE tick_queue = $1 AND tick_id > $2"
            " AND (($4::pg_catalog.int8 IS NOT NULL AND (tick_event_seq - $3) >= $4)"
            " OR ($6::pg_catalog.interval IS NOT NULL"
            " AND (tick_time - $5::pg_catalog.timestamptz) >= $6::pg_catalog.interval))"
            " ORDER BY tick_queue ASC, tick_id ASC LIMIT 1",
            ("int4", "int8", "int8", "int8", "text", "text"),
            (queue_id, prev_id, prev_seq, min_count, prev_time, min_interval),
        )
        can_set = True
    if can_set and t is not None:
        return {"next_tick_id": t["tick_id"], "next_tick_time": t["tick_time"], "next_tick_seq": t["tick_event_seq"]}
    return none


BATCH = (
    "SELECT s.sub_last_tick, s.sub_next_tick, s.sub_id, s.sub_queue,"
    " pg_catalog.txid_snapshot_xmax(last.tick_snapshot) AS tx_start,"
    " pg_catalog.txid_snapshot_xmax(cur.tick_snapshot) AS tx_end,"
    " pg_catalog.txid_snapshot_xmin(last.tick_snapshot) AS tx_min,"
    " ARRAY(SELECT id1 FROM pg_catalog.txid_snapshot_xip(last.tick_snapshot) id1"
    " LEFT JOIN pg_catalog.txid_snapshot_xip(cur.tick_snapshot) id2 ON id1 = id2"
    " WHERE id2 IS NULL ORDER BY 1 DESC) AS gone,"
    " q.queue_data_pfx, q.queue_ntables, q.queue_cur_table, q.queue_switch_step1, q.queue_switch_step2"
    " FROM pgq.subscription s, pgq.tick last, pgq.tick cur, pgq.queue q"
    " WHERE s.sub_batch = $1 AND last.tick_queue = s.sub_queue AND last.tick_id = s.sub_last_tick"
    " AND cur.tick_queue = s.sub_queue AND cur.tick_id = s.sub_next_tick AND q.queue_id = s.sub_queue"
)


def _batch(batch_id: int | None) -> dict[str, Any] | None:
    return one(BATCH, ("int8",), (batch_id,))


def _tables(b: dict[str, Any]) -> list[str]:
    """The event tables a batch can have rows in: the previous one while the batch
    reaches before the last rotation's step 1, the current one unless it all comes
    before step 2 of the rotation."""
    use_prev, use_next = True, True
    if b["tx_end"] < b["queue_switch_step1"]:
        use_next = False
    elif b["queue_switch_step2"] is not None and b["tx_min"] > b["queue_switch_step2"]:
        use_prev = False
    out = []
    if use_prev:
        nr = b["queue_cur_table"] - 1
        out.append(f"{b['queue_data_pfx']}_{nr if nr >= 0 else b['queue_ntables'] - 1}")
    if use_next:
        out.append(f"{b['queue_data_pfx']}_{b['queue_cur_table']}")
    return out


def batch_event_tables(batch_id: int | None) -> list[str]:
    b = _batch(batch_id)
    if b is None:
        fail(f"Cannot find data for batch {plpgsql_text(batch_id)}")
    return _tables(b)


def batch_event_sql(batch_id: int | None) -> str:
    """The query of a batch's events: those whose txid the batch's end tick sees and
    its start tick does not (with a txid range first, so the txid index serves it;
    transactions open at the start tick far below the range are listed apart), and,
    among retried events, only the batch's consumer's own."""
    b = _batch(batch_id)
    if b is None:
        fail("batch not found")
    tx_start, listed = b["tx_start"], []
    for txid in b["gone"] or []:
        if tx_start - 100 <= txid:
            tx_start = txid
        else:
            listed.append(str(int(txid)))
    fields = f"select {EVENT_COLUMNS}"
    retry = f" and (ev_owner is null or ev_owner = {int(b['sub_id'])})"
    parts = []
    for name in _tables(b):
        table = quote_fqname(name)
        part = (
            f"{fields} from pgq.tick cur, pgq.tick last, {table} ev "
            f" where cur.tick_id = {int(b['sub_next_tick'])} and cur.tick_queue = {int(b['sub_queue'])}"
            f" and last.tick_id = {int(b['sub_last_tick'])} and last.tick_queue = {int(b['sub_queue'])}"
            f" and ev.ev_txid >= {int(tx_start)} and ev.ev_txid <= {int(b['tx_end'])}"
            " and pg_catalog.txid_visible_in_snapshot(ev.ev_txid, cur.tick_snapshot)"
            " and not pg_catalog.txid_visible_in_snapshot(ev.ev_txid, last.tick_snapshot)" + retry
        )
        if listed:
            part += f" union all {fields} from {table} ev  where ev.ev_txid in ({','.join(listed)}){retry}"
        parts.append(part)
    if not parts:
        fail(f"could not construct sql for batch {batch_id}")
    return " union all ".join(parts) + " order by 1"


def batch_cursor_sql(batch_id: int | None, cursor: str, extra_where: str | None) -> str:
    """DECLARE of get_batch_cursor: the batch's query, filtered by ``extra_where`` (SQL
    the caller wrote, run with the caller's rights)."""
    sql = batch_event_sql(batch_id)
    if extra_where is not None:
        sql = f"select * from ({sql.replace(' order by 1', '')}) _evs where {extra_where} order by 1"
    return f"declare {_db.ident(cursor)} no scroll cursor for {sql}"


def event_retry(batch_id: int | None, event_id: int | None, retry_time: Any) -> int:
    """Put one event of the batch in the retry queue for this consumer alone: 1, or 0
    when it is already there."""
    if not one("SELECT 1 FROM pgq.subscription WHERE sub_batch = $1", ("int8",), (batch_id,)):
        fail("event not found")  # PgQ's join finds no subscription before it reads the batch
    sql = batch_event_sql(batch_id)
    rows = _db.run_once(
        "INSERT INTO pgq.retry_queue (ev_retry_after, ev_queue, ev_id, ev_time, ev_txid, ev_owner, ev_retry,"
        " ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4)"
        " SELECT $3, s.sub_queue, e.ev_id, e.ev_time, NULL, s.sub_id, COALESCE(e.ev_retry, 0) + 1,"
        " e.ev_type, e.ev_data, e.ev_extra1, e.ev_extra2, e.ev_extra3, e.ev_extra4"
        f" FROM ({sql}) e, pgq.subscription s WHERE s.sub_batch = $1 AND e.ev_id = $2"
        " ON CONFLICT DO NOTHING RETURNING 1",
        ("int8", "int8", "timestamptz"),
        (batch_id, event_id, retry_time),
    )
    if rows:
        return 1
    if not _db.run_once(f"SELECT 1 FROM ({sql}) e WHERE e.ev_id = $1", ("int8",), (event_id,)):
        fail("event not found")
    return 0


def batch_retry(batch_id: int | None, seconds: int | None) -> int:
    """Every event of the batch not yet in the retry queue goes there; how many."""
    s = one("SELECT sub_queue, sub_id FROM pgq.subscription WHERE sub_batch = $1", ("int8",), (batch_id,))
    if s is None:
        fail(f"batch_retry: batch {plpgsql_text(batch_id)} not found")
    sql = batch_event_sql(batch_id)
    rows = _db.run_once(
        "INSERT INTO pgq.retry_queue (ev_retry_after, ev_queue, ev_id, ev_time, ev_txid, ev_owner, ev_retry,"
        " ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4)"
        " SELECT DISTINCT CURRENT_TIMESTAMP + ($2::pg_catalog.text || ' seconds')::pg_catalog.interval,"
        " $3, b.ev_id, b.ev_time, NULL::pg_catalog.int8, $4, COALESCE(b.ev_retry, 0) + 1,"
        " b.ev_type, b.ev_data, b.ev_extra1, b.ev_extra2, b.ev_extra3, b.ev_extra4"
        f" FROM ({sql}) b LEFT JOIN pgq.retry_queue rq"
        " ON rq.ev_id = b.ev_id AND rq.ev_owner = $4 AND rq.ev_queue = $3"
        " WHERE rq.ev_id IS NULL AND $1::pg_catalog.int8 IS NOT NULL RETURNING 1",
        ("int8", "int4", "int4", "int4"),
        (batch_id, seconds, s["sub_queue"], s["sub_id"]),
    )
    return len(rows)


def finish_batch(batch_id: int | None) -> int:
    """Close the batch: the consumer's position moves to its end tick. 0 with a WARNING
    when no consumer has that batch open."""
    rows = _db.run(
        "UPDATE pgq.subscription SET sub_active = pg_catalog.now(), sub_last_tick = sub_next_tick,"
        " sub_next_tick = NULL, sub_batch = NULL WHERE sub_batch = $1 RETURNING 1",
        ("int8",),
        (batch_id,),
    )
    if not rows:
        _db.warn(f"finish_batch: batch {plpgsql_text(batch_id)} not found")
        return 0
    return 1


def event_retry_raw(
    queue: str | None, consumer: str | None, retry_after: Any, ev_id: int | None, ev_time: Any, ev_retry: int | None,
    *fields: Any,
) -> int:  # fmt: skip
    q = one(
        "SELECT sub_id, queue_event_seq, sub_queue FROM pgq.consumer, pgq.queue, pgq.subscription"
        " WHERE queue_name = $1 AND co_name = $2 AND sub_consumer = co_id AND sub_queue = queue_id",
        ("text", "text"),
        (queue, consumer),
    )
    if q is None:
        fail("consumer not registered")
    if ev_id is None:
        ev_id = one(f"SELECT pg_catalog.nextval({_db.literal(q['queue_event_seq'])}::pg_catalog.regclass) AS id")["id"]
    _db.run(
        "INSERT INTO pgq.retry_queue (ev_retry_after, ev_queue, ev_id, ev_time, ev_owner, ev_retry,"
        " ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        ("timestamptz", "int4", "int8", "timestamptz", "int4", "int4", "text", "text", "text", "text", "text", "text"),
        (retry_after, q["sub_queue"], ev_id, ev_time, q["sub_id"], ev_retry, *fields),
    )
    return ev_id
