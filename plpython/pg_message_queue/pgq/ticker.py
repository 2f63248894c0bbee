"""Ticks, retries falling due, table rotation, and run_ticker (no daemon needed).

A tick records the transaction snapshot at a moment: a batch holds the events whose
transaction the end tick sees committed and the start tick does not.
"""

from __future__ import annotations

import time
from typing import Any

from .. import _db
from .common import fail, one, quote_fqname

# NOTIFY channel of every tick; the payload is the queue's name.
TICK_CHANNEL = "pgq_tick"
NOTIFY_MAX = 7999


def _notify(queue: str) -> None:
    if len(queue.encode()) <= NOTIFY_MAX:
        _db.run("SELECT pg_catalog.pg_notify($1, $2)", ("text", "text"), (TICK_CHANNEL, queue))


def tick(queue: str | None) -> int | None:
    """Tick the queue when PgQ's rules call for it: new events reached
    ticker_max_count, or ticker_max_lag passed since the last tick with some new
    event, or (no new events) ticker_idle_period passed; the new tick_id, else NULL."""
    q = one(
        "SELECT queue_id, queue_tick_seq, queue_external_ticker, queue_ticker_max_count, queue_ticker_max_lag,"
        " queue_ticker_idle_period, queue_event_seq, queue_ticker_paused FROM pgq.queue WHERE queue_name = $1",
        ("text",),
        (queue,),
    )
    if q is None:
        fail("no such queue")
    if q["queue_external_ticker"]:
        fail("This queue has external tick source.")
    if q["queue_ticker_paused"]:
        fail("Ticker has been paused for this queue")
    seq = one(f"SELECT last_value FROM {quote_fqname(q['queue_event_seq'])}")["last_value"]
    state = one(
        "SELECT t.tick_id, t.tick_event_seq, $2 - t.tick_event_seq AS new_events,"
        " pg_catalog.txid_snapshot_xmax(t.tick_snapshot) AS sxmax,"
        " pg_catalog.txid_snapshot_xmin(t.tick_snapshot) AS sxmin,"
        " pg_catalog.txid_current() AS txid,"
        " pg_catalog.now() - t.tick_time < $3::pg_catalog.interval AS under_max_lag,"
        " pg_catalog.now() - t.tick_time < $3::pg_catalog.interval / 2 AS under_half_lag,"
        " pg_catalog.now() - t.tick_time < $4::pg_catalog.interval AS under_idle,"
        " pg_catalog.now() - t.tick_time < 2 * (t.tick_time - prev.tick_time) AS under_twice_last,"
        " prev.tick_id IS NOT NULL AS has_prev"
        " FROM pgq.tick t LEFT JOIN LATERAL (SELECT p.tick_time, p.tick_id FROM pgq.tick p"
        "   WHERE p.tick_queue = t.tick_queue AND p.tick_id < t.tick_id"
        "   ORDER BY p.tick_queue DESC, p.tick_id DESC LIMIT 1) prev ON true"
        " WHERE t.tick_queue = $1 ORDER BY t.tick_queue DESC, t.tick_id DESC LIMIT 1",
        ("int4", "int8", "text", "text"),
        (q["queue_id"], seq, q["queue_ticker_max_lag"], q["queue_ticker_idle_period"]),
    )
    if state is not None:
        if state["sxmin"] > state["txid"]:
            fail(f"Invalid PgQ state: old xmin={state['sxmin']}, old xmax={state['sxmax']}, cur txid={state['txid']}")
        if state["new_events"] < 0:
            _db.warn(f"Negative new_events?  old={state['tick_event_seq']} cur={seq}")
        if state["sxmax"] > state["txid"]:
            _db.warn(f"Dubious PgQ state: old xmax={state['sxmax']}, cur txid={state['txid']}")
        if state["new_events"] > 0:
            if state["new_events"] < q["queue_ticker_max_count"] and state["under_max_lag"]:
                return None
        elif state["has_prev"] and (state["under_half_lag"] or (state["under_twice_last"] and state["under_idle"])):
            return None
    tick_id = one(
        "INSERT INTO pgq.tick (tick_queue, tick_id, tick_event_seq)"
        f" VALUES ($1, pg_catalog.nextval({_db.literal(quote_fqname(q['queue_tick_seq']))}::pg_catalog.regclass), $2)"
        " RETURNING tick_id",
        ("int4", "int8"),
        (q["queue_id"], seq),
    )["tick_id"]
    _notify(queue)
    return tick_id


def tick_external(queue: str | None, tick_id: int | None, orig_time: Any, event_seq: int | None) -> int | None:
    """A tick from an external source (a replica following its provider)."""
    q = one(
        "INSERT INTO pgq.tick (tick_queue, tick_id, tick_time, tick_event_seq)"
        " SELECT queue_id, $2, $3, $4 FROM pgq.queue"
        " WHERE queue_name = $1 AND queue_external_ticker AND NOT queue_ticker_paused"
        " RETURNING (SELECT ROW(queue_tick_seq, queue_event_seq)::pg_catalog.text FROM pgq.queue"
        "   WHERE queue_name = $1) AS seqs",
        ("text", "int8", "timestamptz", "int8"),
        (queue, tick_id, orig_time, event_seq),
    )
    if q is None:
        fail(f"queue not found or ticker disabled: {queue if queue is not None else '<NULL>'}")
    from .admin import queue_row, seq_setval

    row = queue_row(queue)
    seq_setval(row["queue_tick_seq"], tick_id)
    seq_setval(row["queue_event_seq"], event_seq)
    _notify(queue)
    return tick_id


def tick_all() -> int:
    """pgq.ticker(): tick every queue with its own ticker; how many ticked."""
    count = 0
    for row in _db.run(
        "SELECT queue_name FROM pgq.queue WHERE NOT queue_external_ticker AND NOT queue_ticker_paused"
        " ORDER BY queue_name"
    ):
        tick_id = tick(row["queue_name"])
        if tick_id is not None and tick_id > 0:
            count += 1
    return count


def force_tick(queue: str | None) -> int | None:
    """Push the event sequence far enough that the next ticker() call ticks; returns
    the last tick_id (the new tick comes with that next call)."""
    _db.run(
        "SELECT pg_catalog.setval(queue_event_seq::pg_catalog.regclass,"
        " pg_catalog.nextval(queue_event_seq::pg_catalog.regclass)"
        " + queue_ticker_max_count * 2 + 1000) FROM pgq.queue"
        " WHERE queue_name = $1 AND NOT queue_external_ticker AND NOT queue_ticker_paused",
        ("text",),
        (queue,),
    )
    t = one(
        "SELECT tick_id FROM pgq.tick, pgq.queue WHERE tick_queue = queue_id AND queue_name = $1"
        " ORDER BY tick_queue DESC, tick_id DESC LIMIT 1",
        ("text",),
        (queue,),
    )
    return None if t is None else t["tick_id"]


def maint_retry_events() -> int:
    """Move up to 10 due events from the retry queue back into their queue's current
    event table (owned by their consumer); how many moved."""
    from .producer import insert_event_raw, insert_problem

    _db.ddl("LOCK TABLE pgq.retry_queue IN SHARE UPDATE EXCLUSIVE MODE")
    rows = _db.run(
        "SELECT queue_name, ev_id, ev_time, ev_owner, ev_retry, ev_type, ev_data,"
        " ev_extra1, ev_extra2, ev_extra3, ev_extra4 FROM pgq.retry_queue, pgq.queue"
        " WHERE ev_retry_after <= CURRENT_TIMESTAMP AND queue_id = ev_queue ORDER BY ev_retry_after LIMIT 10"
    )
    for r in rows:
        if insert_event_raw(
            r["queue_name"], r["ev_id"], r["ev_time"], r["ev_owner"], r["ev_retry"],
            r["ev_type"], r["ev_data"], r["ev_extra1"], r["ev_extra2"], r["ev_extra3"], r["ev_extra4"],
        ) is None:  # fmt: skip
            _db.fail("XX000", insert_problem(r["queue_name"]))  # PgQ's C insert_event_raw refuses it so
        _db.run(
            "DELETE FROM pgq.retry_queue WHERE ev_owner = $1 AND ev_id = $2",
            ("int4", "int8"),
            (r["ev_owner"], r["ev_id"]),
        )
    return len(rows)


def rotate_step1(queue: str | None) -> int:
    """Switch the queue to its next event table (TRUNCATEd first) once
    rotation_period has passed, unless a consumer may still need rows of that table
    (its last tick is older than the previous switch). Always returns 0, as PgQ."""
    cf = one(
        "SELECT *, pg_catalog.txid_current() AS txid FROM pgq.queue WHERE queue_name = $1"
        " AND queue_rotation_period IS NOT NULL AND queue_switch_step2 IS NOT NULL"
        " AND queue_switch_time + queue_rotation_period < CURRENT_TIMESTAMP FOR UPDATE",
        ("text",),
        (queue,),
    )
    if cf is None:
        return 0
    if cf["txid"] < cf["queue_switch_step1"]:
        fail(f"queue {queue} maint failure: step1={cf['queue_switch_step1']}, current={cf['txid']}")
    lowest = one(
        "SELECT min(sub_last_tick) AS t FROM pgq.subscription WHERE sub_queue = $1", ("int4",), (cf["queue_id"],)
    )["t"]
    if lowest is not None:
        xmin = one(
            "SELECT pg_catalog.txid_snapshot_xmin(tick_snapshot) AS x FROM pgq.tick"
            " WHERE tick_queue = $1 AND tick_id = $2",
            ("int4", "int8"),
            (cf["queue_id"], lowest),
        )
        if xmin is None:
            fail(f"queue {queue} maint failure: tick {lowest} not found")
        if xmin["x"] <= cf["queue_switch_step2"]:
            return 0
    nr = cf["queue_cur_table"] + 1
    if nr == cf["queue_ntables"]:
        nr = 0
    table = quote_fqname(f"{cf['queue_data_pfx']}_{nr}")
    try:
        with _db.subtransaction():
            _db.ddl(f"LOCK TABLE {table} NOWAIT")
            _db.ddl(f"TRUNCATE {table}")
    except _db.SPIError as exc:
        if getattr(exc, "sqlstate", None) == "55P03":
            return 0
        raise
    _db.run(
        "UPDATE pgq.queue SET queue_cur_table = $2, queue_switch_time = CURRENT_TIMESTAMP,"
        " queue_switch_step1 = pg_catalog.txid_current(), queue_switch_step2 = NULL WHERE queue_id = $1",
        ("int4", "int4"),
        (cf["queue_id"], nr),
    )
    _db.run(
        "DELETE FROM pgq.tick WHERE tick_queue = $1 AND pg_catalog.txid_snapshot_xmin(tick_snapshot) < $2",
        ("int4", "int8"),
        (cf["queue_id"], cf["queue_switch_step2"]),
    )
    return 0


def rotate_step2() -> int:
    """Second transaction of a rotation: record the txid after which no transaction
    can still write into the previous table."""
    _db.run("UPDATE pgq.queue SET queue_switch_step2 = pg_catalog.txid_current() WHERE queue_switch_step2 IS NULL")
    return 0


VACUUM_CANDIDATES = (
    ("pgq", "subscription"), ("pgq", "consumer"), ("pgq", "queue"), ("pgq", "tick"), ("pgq", "retry_queue"),
    ("pgq_ext", "completed_tick"), ("pgq_ext", "completed_batch"), ("pgq_ext", "completed_event"),
    ("pgq_ext", "partial_batch"), ("pgq_node", "local_state"), ("londiste", "seq_info"), ("txid", "epoch"),
    ("londiste", "completed"),
)  # fmt: skip


def tables_to_vacuum() -> list[str]:
    """PgQ's list of busy tables to VACUUM, only when autovacuum is off."""
    if one("SELECT pg_catalog.current_setting('autovacuum') AS a")["a"] == "on":
        return []
    out = []
    for schema, table in VACUUM_CANDIDATES:
        if one(
            "SELECT 1 FROM pg_catalog.pg_class t, pg_catalog.pg_namespace n"
            " WHERE n.oid = t.relnamespace AND n.nspname = $1 AND t.relname = $2",
            ("text", "text"),
            (schema, table),
        ):
            out.append(f"{schema}.{table}")
    return out


def _has_function(schema: str, name: str) -> bool:
    return bool(
        one(
            "SELECT 1 FROM pg_catalog.pg_proc p, pg_catalog.pg_namespace n"
            " WHERE p.pronamespace = n.oid AND n.nspname = $1 AND p.proname = $2 LIMIT 1",
            ("text", "text"),
            (schema, name),
        )
    )


def maint_operations() -> list[dict[str, Any]]:
    """What a maintenance round should call (func_name, func_arg), as PgQ lists it."""
    ops = [
        {"func_name": "pgq.maint_rotate_tables_step1", "func_arg": r["queue_name"]}
        for r in _db.run(
            "SELECT queue_name FROM pgq.queue WHERE queue_rotation_period IS NOT NULL"
            " AND queue_switch_step2 IS NOT NULL AND queue_switch_time + queue_rotation_period < CURRENT_TIMESTAMP"
            " ORDER BY 1"
        )
    ]
    nrot = (
        len(ops)
        or one(
            "SELECT pg_catalog.count(1) AS n FROM pgq.queue WHERE queue_rotation_period IS NOT NULL"
            " AND queue_switch_step2 IS NULL"
        )["n"]
    )
    if nrot > 0:
        ops.append({"func_name": "pgq.maint_rotate_tables_step2", "func_arg": None})
    for r in _db.run(
        "SELECT queue_name, queue_extra_maint FROM pgq.queue WHERE queue_extra_maint IS NOT NULL ORDER BY 1"
    ):
        ops.extend({"func_name": f, "func_arg": r["queue_name"]} for f in r["queue_extra_maint"])
    ops.extend({"func_name": "vacuum", "func_arg": t} for t in tables_to_vacuum())
    if _has_function("pgq_node", "maint_watermark"):
        ops.extend(
            {"func_name": "pgq_node.maint_watermark", "func_arg": r["queue_name"]}
            for r in _db.run("SELECT n.queue_name FROM pgq_node.node_info n WHERE n.node_type = 'root'")
        )
    if _has_function("londiste", "root_check_seqs"):
        ops.extend(
            {"func_name": "londiste.root_check_seqs", "func_arg": r["queue_name"]}
            for r in _db.run(
                "SELECT DISTINCT s.queue_name FROM londiste.seq_info s, pgq_node.node_info n"
                " WHERE s.local AND n.node_type = 'root' AND n.queue_name = s.queue_name"
            )
        )
    if _has_function("londiste", "periodic_maintenance"):
        ops.append({"func_name": "londiste.periodic_maintenance", "func_arg": None})
    return ops


def run_ticker(loop_delay: str | None, maint_period: str | None, max_runtime: str | None) -> None:
    """CALL pgq.run_ticker(): tick, move due retries, rotate, in a loop with a COMMIT
    after each step, until max_runtime passes (NULL: until cancelled)."""
    _db.commit_first("pgq.run_ticker")
    delay = _db.interval_seconds(loop_delay or "1 second")
    maint = _db.interval_seconds(maint_period or "2 minutes")
    stop = None if max_runtime is None else time.monotonic() + _db.interval_seconds(max_runtime)
    if delay < 0 or maint < 0:
        _db.fail("22023", "pg_message_queue: pgq.run_ticker: loop_delay and maint_period must not be negative")
    next_maint = 0.0
    while True:
        tick_all()
        _db.commit()
        while maint_retry_events() > 0:
            _db.commit()
        _db.commit()
        if time.monotonic() >= next_maint:
            run_maintenance()
            next_maint = time.monotonic() + maint
        if stop is not None and time.monotonic() >= stop:
            return
        _db.run("SELECT pg_catalog.pg_sleep($1)", ("float8",), (delay,))


def run_maintenance() -> None:
    """One maintenance round: every operation of maint_operations() in its own
    transaction (VACUUM cannot run inside a procedure: left to autovacuum)."""
    ops = maint_operations()
    _db.commit()
    for op in ops:
        name = op["func_name"]
        if name == "vacuum":
            continue
        if name == "pgq.maint_rotate_tables_step1":
            rotate_step1(op["func_arg"])
        elif name == "pgq.maint_rotate_tables_step2":
            rotate_step2()
        else:
            schema, _, fn = name.partition(".")
            target = _db.ident(schema) + "." + _db.ident(fn)
            if op["func_arg"] is None:
                _db.ddl(f"SELECT {target}()")
            else:
                _db.run(f"SELECT {target}($1)", ("text",), (op["func_arg"],))
        _db.commit()
