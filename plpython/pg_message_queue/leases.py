"""Lease-based consumption: read with a visibility timeout, ack, nack, extend, pop.

A read hides messages for ``visibility_timeout`` (visible_at moves forward) and
counts the delivery (read_count). A consumer that dies without acking loses its
lease when the timeout passes and the messages are read again: at-least-once.
Messages read ``max_deliveries`` times move, with their history, to the queue's
dead-letter queue instead of being handed out again.
"""

from __future__ import annotations

from . import _db, queues
from .messages import (
    PICKED,
    check_count,
    dead_letter,
    dead_letter_overdue,
    keep_priority,
    payload_expr,
    ready_order,
    select_ready,
)
from .queues import SCHEDULED, Queue

_LEASED = "msg_id, read_count, sent_at AS enqueued_at, visible_at, priority, headers"


def _check_interval(name: str, value: str | None, allow_null: bool = False, positive: bool = False) -> None:
    if value is None:
        if allow_null:
            return
        _db.fail("22004", f"{name} must not be NULL")
    seconds = _db.interval_seconds(value)
    if positive and seconds <= 0:
        _db.fail("22023", f"{name} must be positive (got {value})")
    if seconds < 0:
        _db.fail("22023", f"{name} must not be negative (got {value})")


def _ids(msg_ids: list[int] | None) -> list[int]:
    if msg_ids is None:
        _db.fail("22004", "msg_ids must not be NULL")
    if any(i is None for i in msg_ids):
        _db.fail("22004", "msg_ids must not contain NULL")
    return msg_ids


_DUE_LIMIT = 10000  # messages moved per call


def dead_letter_due(channel: str | None, msg_ids: list[int] | None) -> int:
    """SECURITY DEFINER: move the queue's messages that have used up max_deliveries and
    whose lease has expired (all of them, or those of ``msg_ids``) to its dead-letter
    queue, keeping msg_id and adding their history to headers. Returns how many.

    Safe for anyone to call: it moves only what the next read would move anyway,
    and takes every value from the queue itself.
    """
    queue = queues.get(channel)
    limit = queue.settings.max_deliveries
    if not limit:
        return 0
    dlq = queues.get(queue.dlq)
    moved = _db.run(
        f"WITH due AS (SELECT msg_id FROM {queue.table} WHERE {SCHEDULED}"
        " AND read_count >= $1 AND visible_at <= pg_catalog.clock_timestamp()"
        " AND ($2::int8[] IS NULL OR msg_id = ANY($2)) LIMIT $4 FOR UPDATE SKIP LOCKED),"
        f" gone AS (DELETE FROM {queue.table} AS q USING due WHERE q.msg_id = due.msg_id RETURNING q.*)"
        f" INSERT INTO {dlq.table} (msg_id, sent_at, visible_at, sent_by, priority, headers, payload)"
        f" SELECT msg_id, sent_at, sent_at, sent_by, {keep_priority(dlq)},"
        " COALESCE(headers, '{}'::pg_catalog.jsonb) || pg_catalog.jsonb_build_object('x-dead-letter',"
        " pg_catalog.jsonb_build_object('queue', $3::text, 'msg_id', msg_id, 'read_count', read_count,"
        " 'sent_at', sent_at, 'dead_lettered_at', pg_catalog.clock_timestamp(), 'reason', 'max_deliveries')),"
        f" payload::{dlq.type_sql} FROM gone",
        ("int4", "int8[]", "text", "int4"),
        (limit, msg_ids, queue.channel, _DUE_LIMIT),
    )
    return int(moved.nrows())


def read_sql(
    channel: str | None,
    n: int | None,
    visibility_timeout: str | None,
    wait: str | None,
    as_text: bool,
    beyond: bool = False,
) -> str:
    """SQL ($1 = n, $2 = visibility timeout, $3 = now) leasing up to ``n`` ready messages.

    The PL/pgSQL body of pg_mq_read runs it, and for ``wait`` calls again after
    a pause until a message is ready: a function cannot receive NOTIFY, and in
    READ COMMITTED each statement sees what other sessions committed meanwhile.
    Messages already read max_deliveries times are never leased again; they are
    dead-lettered first.
    """
    queue = queues.get(channel)
    check_count(n)
    _check_interval("visibility_timeout", visibility_timeout, positive=True)
    _check_interval("wait", wait, allow_null=True)
    if not beyond:  # the claim's first statement, moments ago in this call, did it
        dead_letter_overdue(queue)
    return read_statement(queue, as_text, beyond=beyond)


def read_statement(queue: Queue, as_text: bool, generic: bool = False, beyond: bool = False, count: str = "$1") -> str:
    """read_sql's statement for ``queue``, without the call's checks (see get_statement)."""
    payload = payload_expr(queue, as_text)
    return (
        f"WITH picked AS ({select_ready(queue, '$3', generic, beyond, count)}),"
        f" leased AS (UPDATE {queue.table} AS q"
        " SET visible_at = $3 + $2, read_count = q.read_count + 1"
        f" WHERE {PICKED} RETURNING q.*)"
        f" SELECT {_LEASED}, {payload} AS payload FROM leased ORDER BY {ready_order(queue)}"
    )


def ack(channel: str | None, msg_ids: list[int] | None) -> list[int]:
    """Acknowledge: delete (or archive, when the queue retains); returns the ids acked."""
    queue = queues.get(channel)
    ids = _ids(msg_ids)
    return [r["msg_id"] for r in _db.run(ack_statement(queue), ("int8[]",), (ids,))]


def ack_statement(queue: Queue) -> str:
    """ack's statement ($1 = the ids) for ``queue``, its ids in order (see get_statement)."""
    if _retains(queue):
        change = (
            f"UPDATE {queue.table} SET delivered_at = pg_catalog.clock_timestamp()"
            " WHERE msg_id = ANY($1) AND delivered_at IS NULL RETURNING msg_id"
        )
    else:
        change = f"DELETE FROM {queue.table} WHERE msg_id = ANY($1) AND delivered_at IS NULL RETURNING msg_id"
    return f"WITH acked AS ({change}) SELECT acked.msg_id FROM acked ORDER BY acked.msg_id"


def _retains(queue: Queue) -> bool:
    retention = queue.settings.retention
    return (
        retention not in ("0", "00:00:00")
        and _db.run("SELECT $1::pg_catalog.interval > '0'::pg_catalog.interval AS r", ("text",), (retention,))[0]["r"]
    )


def nack(channel: str | None, msg_ids: list[int] | None, delay: str | None) -> list[int]:
    """Give leased messages back, visible again after ``delay``; over the limit → DLQ."""
    queue = queues.get(channel)
    ids = _ids(msg_ids)
    _check_interval("delay", delay)
    limit = queue.settings.max_deliveries
    if limit:
        # End the lease of those that used up their deliveries (with the caller's
        # rights, which proves it may consume them); the mover then takes them.
        spent = _db.run(
            f"UPDATE {queue.table} SET visible_at = pg_catalog.clock_timestamp()"
            " WHERE msg_id = ANY($1) AND delivered_at IS NULL AND read_count >= $2 RETURNING msg_id",
            ("int8[]", "int4"),
            (ids, limit),
        )
        if spent:
            dead_letter(queue, [r["msg_id"] for r in spent])
    rows = _db.run(
        f"UPDATE {queue.table} SET visible_at = pg_catalog.clock_timestamp() + $2"
        " WHERE msg_id = ANY($1) AND delivered_at IS NULL RETURNING msg_id",
        ("int8[]", "interval"),
        (ids, delay),
    )
    return sorted(r["msg_id"] for r in rows)


def extend(channel: str | None, msg_ids: list[int] | None, visibility_timeout: str | None) -> list[int]:
    """Push the lease of messages still in flight to now + ``visibility_timeout``."""
    queue = queues.get(channel)
    ids = _ids(msg_ids)
    _check_interval("visibility_timeout", visibility_timeout, positive=True)
    rows = _db.run(
        f"UPDATE {queue.table} SET visible_at = pg_catalog.clock_timestamp() + $2"
        " WHERE msg_id = ANY($1) AND delivered_at IS NULL AND read_count > 0"
        " AND visible_at > pg_catalog.clock_timestamp() RETURNING msg_id",
        ("int8[]", "interval"),
        (ids, visibility_timeout),
    )
    return sorted(r["msg_id"] for r in rows)


def pop_sql(channel: str | None, n: int | None, as_text: bool, beyond: bool = False) -> str:
    """SQL ($1 = n, $2 = now) reading and acknowledging at once: at-most-once, no lease."""
    queue = queues.get(channel)
    check_count(n)
    if not beyond:  # the claim's first statement, moments ago in this call, did it
        dead_letter_overdue(queue)
    return pop_statement(queue, as_text, beyond=beyond)


def pop_statement(queue: Queue, as_text: bool, generic: bool = False, beyond: bool = False, count: str = "$1") -> str:
    """pop_sql's statement for ``queue``, without the call's checks (see get_statement)."""
    payload = payload_expr(queue, as_text)
    picked = f"WITH picked AS ({select_ready(queue, '$2', generic, beyond, count)})"
    if _retains(queue):
        change = (
            f"UPDATE {queue.table} AS q SET delivered_at = pg_catalog.clock_timestamp(),"
            f" read_count = q.read_count + 1 WHERE {PICKED} RETURNING q.*"
        )
        counted = "read_count"
    else:
        change = f"DELETE FROM {queue.table} AS q WHERE {PICKED} RETURNING q.*"
        counted = "read_count + 1"
    return (
        f"{picked}, gone AS ({change})"
        f" SELECT msg_id, {counted} AS read_count, sent_at AS enqueued_at, visible_at, priority, headers,"
        f" {payload} AS payload FROM gone ORDER BY {ready_order(queue)}"
    )


def move(source: str | None, target: str | None, n: int | None, msg_ids: list[int] | None) -> int:
    """Move undelivered messages (all, the first ``n``, or ``msg_ids``) to another queue.

    For replaying a dead-letter queue: messages keep msg_id, payload and headers
    (the x-dead-letter history stays), become ready at once with read_count 0.
    """
    src = queues.get(source)
    dst = queues.get(target)
    if src.channel == dst.channel:
        _db.fail("22023", f'cannot move messages from queue "{src.channel}" to itself')
    if src.type_oid != dst.type_oid:
        _db.fail("42804", f'queue "{src.channel}" holds {src.type_sql}, queue "{dst.channel}" {dst.type_sql}')
    if n is not None:
        check_count(n)
    if msg_ids is not None:
        _ids(msg_ids)
    picked = (
        f"SELECT msg_id FROM {src.table} WHERE delivered_at IS NULL"
        " AND ($1::int8[] IS NULL OR msg_id = ANY($1)) ORDER BY msg_id LIMIT $2 FOR UPDATE SKIP LOCKED"
    )
    moved = _db.run(
        f"WITH picked AS ({picked}),"
        f" gone AS (DELETE FROM {src.table} AS q USING picked WHERE q.msg_id = picked.msg_id RETURNING q.*)"
        f" INSERT INTO {dst.table} (msg_id, sent_at, visible_at, sent_by, priority, dedup_key, headers, payload)"
        # A key already live in the target stays with that message (one live message per key).
        f" SELECT msg_id, sent_at, sent_at, sent_by, {keep_priority(dst)},"
        f" CASE WHEN EXISTS (SELECT FROM {dst.table} AS t WHERE t.dedup_key = gone.dedup_key"
        " AND t.delivered_at IS NULL) THEN NULL ELSE dedup_key END, headers, payload FROM gone",
        ("int8[]", "int8"),
        (msg_ids, n),
    )
    return int(moved.nrows())
