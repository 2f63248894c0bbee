"""Queue statistics and maintenance (retention of delivered rows, in small batches)."""

from __future__ import annotations

import json
from typing import Any

from . import _db, queues

_NOW = "pg_catalog.clock_timestamp()"


def stats(channel: str | None) -> dict[str, Any]:
    """Depth, ready, in flight, delayed, retained, dead-lettered, oldest age, totals."""
    queue = queues.get(channel)
    if not queues.table_exists(queue):
        _db.fail(
            "42P01",
            f'queue "{queue.channel}" has lost its table {queue.table}',
            hint="Drop the queue with pg_mq_drop_queue(channel, force => true) and create it again.",
        )
    row = _db.run(
        "SELECT"
        " pg_catalog.count(*) FILTER (WHERE delivered_at IS NULL) AS depth,"
        f" pg_catalog.count(*) FILTER (WHERE delivered_at IS NULL AND visible_at <= {_NOW}) AS ready,"
        f" pg_catalog.count(*) FILTER (WHERE delivered_at IS NULL AND visible_at > {_NOW}"
        " AND read_count > 0) AS in_flight,"
        f" pg_catalog.count(*) FILTER (WHERE delivered_at IS NULL AND visible_at > {_NOW}"
        " AND read_count = 0) AS delayed,"
        " pg_catalog.count(*) FILTER (WHERE delivered_at IS NOT NULL) AS retained,"
        f" {_NOW} - pg_catalog.min(sent_at) FILTER (WHERE delivered_at IS NULL AND visible_at <= {_NOW})"
        " AS oldest_ready_age"
        f" FROM {queue.table}"
    )[0]
    totals = _db.run(
        "SELECT n_tup_ins AS sent_total, n_tup_del AS removed_total FROM pg_catalog.pg_stat_all_tables"
        " WHERE relid = $1::pg_catalog.regclass",
        ("text",),
        (queue.table,),
    )
    dead = None
    if queue.settings.max_deliveries:
        dlq = queues.find(queue.dlq)
        if dlq is not None:
            dead = _db.run(f"SELECT pg_catalog.count(*) AS n FROM {dlq.table} WHERE delivered_at IS NULL")[0]["n"]
    result = dict(row)
    result.update(
        channel=queue.channel,
        payload_type=queue.type_sql,
        dead_lettered=dead,
        sent_total=totals[0]["sent_total"] if totals else None,
        removed_total=totals[0]["removed_total"] if totals else None,
        settings=json.dumps(queue.stored),
    )
    return result


def _expire_batch(queue: queues.Queue, batch_size: int) -> int:
    retention = queue.settings.retention
    return len(
        _db.run(
            f"WITH old AS (SELECT msg_id FROM {queue.table} WHERE delivered_at IS NOT NULL"
            f" AND delivered_at < {_NOW} - $1::pg_catalog.interval LIMIT $2 FOR UPDATE SKIP LOCKED)"
            f" DELETE FROM {queue.table} AS q USING old WHERE q.msg_id = old.msg_id RETURNING q.msg_id",
            ("text", "int4"),
            (retention, batch_size),
        )
    )


def _channels(channel: str | None) -> list[str]:
    if channel is not None:
        return [queues.get(channel).channel]
    return [r["channel"] for r in _db.run(f"SELECT channel FROM {queues._catalog()} ORDER BY channel")]


def _check_batch(batch_size: int | None) -> int:
    if batch_size is None:
        _db.fail("22004", "batch_size must not be NULL")
    if batch_size <= 0:
        _db.fail("22023", f"batch_size must be a positive integer (got {batch_size})")
    return batch_size


def maintain(channel: str | None, batch_size: int | None) -> int:
    """Delete delivered/acknowledged rows past their queue's retention; returns how many."""
    size = _check_batch(batch_size)
    total = 0
    for name in _channels(channel):
        queue = queues.get(name)
        if not queues.table_exists(queue):
            _db.warn(f'pg_message_queue: queue "{queue.channel}" has no table {queue.table}; skipped')
            continue
        while True:
            done = _expire_batch(queue, size)
            total += done
            if done < size:
                break
    return total


def maintenance_loop(pause: str | None, runs: int | None, batch_size: int | None) -> None:
    """CALLed outside a transaction block: expire rows batch by batch, committing each."""
    old_path = _db.pin_search_path()  # a procedure that COMMITs cannot have a SET clause
    try:
        _db.commit_first("pg_mq_maintenance_loop")
        _loop(pause, runs, batch_size)
    finally:
        _db.restore_search_path(old_path)


def _loop(pause: str | None, runs: int | None, batch_size: int | None) -> None:
    size = _check_batch(batch_size)
    if pause is None:
        _db.fail("22004", "pause must not be NULL")
    seconds = _db.interval_seconds(pause)
    if seconds < 0:
        _db.fail("22023", f"pause must not be negative (got {pause})")
    if runs is not None and runs < 0:
        _db.fail("22023", f"runs must not be negative (got {runs})")
    done_runs = 0
    while runs is None or done_runs < runs:
        for name in _channels(None):
            queue = queues.find(name)
            if queue is not None and not queues.table_exists(queue):
                queue = None
            while queue is not None and _expire_batch(queue, size) == size:
                _db.commit()
            _db.commit()
        done_runs += 1
        if runs is None or done_runs < runs:
            _db.run("SELECT pg_catalog.pg_sleep($1)", ("float8",), (seconds,))
