"""Changing a queue's settings (pg_mq_set_queue_config), and the dead-letter queue
that max_deliveries provisions."""

from __future__ import annotations

import json

from . import _db, settings
from .names import channel_problem
from .queues import Queue, _catalog, check_channel, create_queue, find, get


def set_queue_config(channel: str | None, key: str | None, value: str | None) -> str:
    """Change one setting of a queue; returns all its settings (jsonb).

    Setting max_deliveries creates the dead-letter queue if it does not exist
    yet (same payload type), and lets the queue's receivers write to it.
    """
    # First the catalog's lock, as create and drop take it: the catalog's trigger
    # regenerates the dispatchers (queues.catalog_changed), which needs it, and
    # taking it after the row lock would let two concurrent changes deadlock.
    _db.ddl(f"LOCK TABLE {_catalog()} IN SHARE ROW EXCLUSIVE MODE")
    queue = get(check_channel(channel), lock=True)
    if key is None:
        _db.fail("22004", "setting name must not be NULL")
    parsed, problem = settings.parse(key, value)
    if problem is not None:
        _db.fail(problem.sqlstate, problem.message)
    assert key is not None
    if key in settings.INTERVAL_KEYS and parsed is not None:
        try:
            with _db.subtransaction():
                negative = _db.run(
                    "SELECT $1::pg_catalog.interval < '0'::pg_catalog.interval AS neg", ("text",), (parsed,)
                )[0]["neg"]
        except _db.SPIError:
            _db.fail("22007", f"{key} must be an interval (got {value!r})")
        if negative:
            _db.fail("22023", f"{key} must not be negative (got {value})")
        try:  # reads and maintenance compute now() - it: it must stay a timestamp
            with _db.subtransaction():
                _db.run(
                    "SELECT pg_catalog.now() - $1::pg_catalog.interval, pg_catalog.now() + $1::pg_catalog.interval",
                    ("text",),
                    (parsed,),
                )
        except _db.SPIError:
            _db.fail("22008", f"{key} is out of range (got {value!r})", hint="Use at most a few thousand years.")
    if key == "fifo_group_header" and parsed is not None and not parsed.strip():
        _db.fail("22023", "fifo_group_header must name a header key")
    merged = dict(queue.stored)
    merged[key] = parsed
    if key == "dead_letter_queue" and parsed is not None:
        check_channel(parsed)
        if parsed == queue.channel:
            _db.fail("22023", f'queue "{queue.channel}" cannot be its own dead-letter queue')
        _check_dlq_type(queue, parsed)
    if merged.get("max_deliveries"):
        _ensure_dlq(queue, settings.Settings.from_stored(merged).dlq_name(queue.channel))
    if key == "priority_ordering" and parsed is False:
        # Priorities are ignored from now on: reads take msg_id order from the
        # (priority DESC, msg_id) index, which needs every waiting message at 0.
        _db.run(f"UPDATE {queue.table} SET priority = 0 WHERE delivered_at IS NULL AND priority <> 0")
    if key == "notify":
        _db.ddl(f"ALTER TABLE {queue.table} {'ENABLE' if parsed else 'DISABLE'} TRIGGER pg_mq_notify")
    rows = _db.run(
        f"UPDATE {_catalog()} SET settings = $2::pg_catalog.jsonb WHERE channel = $1 RETURNING settings",
        ("text", "text"),
        (queue.channel, json.dumps(merged)),
    )  # the catalog's trigger rebuilds the send functions (queues.catalog_changed)
    return rows[0]["settings"]


def _check_dlq_type(queue: Queue, dlq_channel: str) -> None:
    dlq = find(dlq_channel)
    if dlq is not None and dlq.type_oid != queue.type_oid:
        _db.fail(
            "42804",
            f'dead-letter queue "{dlq_channel}" holds {dlq.type_sql}, queue "{queue.channel}" {queue.type_sql}',
        )


def _ensure_dlq(queue: Queue, dlq_channel: str) -> None:
    """Create the dead-letter queue (same payload type) unless it exists. Consumers
    need no rights on it: _pg_mq_dead_letter moves messages with the owner's."""
    problem = channel_problem(dlq_channel)
    if problem is not None:
        _db.fail(
            problem.sqlstate,
            f'dead-letter queue for "{queue.channel}": {problem.message}',
            hint="Name a shorter one: pg_mq_set_queue_config(channel, 'dead_letter_queue', name).",
        )
    _check_dlq_type(queue, dlq_channel)
    if find(dlq_channel) is None:
        create_queue(dlq_channel, queue.type_sql)
