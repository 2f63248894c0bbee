"""Sending and receiving with pg_message_queue's original semantics.

Receiving claims rows with FOR UPDATE SKIP LOCKED and marks them delivered in
the caller's transaction: competing consumers never wait for each other, never
see the same message, and a rollback hands the messages back.
"""

from __future__ import annotations

from typing import Any

from . import _db, queues
from .queues import BYTEA_OID, Queue

TEXT_OIDS = (25, 1043, 705)  # text, varchar, unknown: parsed by the queue type's input
_SENT = "msg_id, sent_at, sent_by, visible_at"


def _check_payload_type(queue: Queue, type_oid: int) -> None:
    if type_oid == queue.type_oid or type_oid in TEXT_OIDS:
        return
    given = _db.run("SELECT pg_catalog.format_type($1, NULL) AS t", ("oid",), (type_oid,))[0]["t"]
    _db.fail(
        "42804",
        f'queue "{queue.channel}" holds {queue.type_sql}, not {given}',
        hint=f"Cast the payload: pg_mq_send_message(channel, payload::{queue.type_sql}).",
    )


def _check_options(priority: int | None, delay: str | None, headers: str | None) -> None:
    if priority is None:
        _db.fail("22004", "priority must not be NULL")
    if delay is not None:
        negative = _db.run("SELECT $1 < '0'::pg_catalog.interval AS neg", ("interval",), (delay,))[0]["neg"]
        if negative:
            _db.fail("22023", f"delay must not be negative (got {delay})")
    if headers is not None and not headers.startswith("{"):
        _db.fail("22023", f"headers must be a JSON object (got {headers[:100]})")


def send(
    channel: str | None,
    type_oid: int,
    payload: str | None,
    delay: str | None = None,
    priority: int | None = 0,
    dedup_key: str | None = None,
    headers: str | None = None,
) -> dict[str, Any]:
    """Insert one message; with a live ``dedup_key`` return the existing one instead."""
    queue = queues.get(channel)
    if payload is None:
        _db.fail("22004", f'payload for queue "{queue.channel}" must not be NULL')
    _check_payload_type(queue, type_oid)
    _check_options(priority, delay, headers)
    if not queue.settings.get("priority_ordering", True):
        priority = 0
    if dedup_key is not None:
        existing = _find_duplicate(queue, dedup_key)
        if existing is not None:
            existing.update(channel=queue.channel, deduplicated=True)
            return existing
    row = _db.run(
        f"INSERT INTO {queue.table} (payload, visible_at, priority, dedup_key, headers)"
        f" VALUES ($1::{queue.type_sql},"
        " pg_catalog.now() + COALESCE($2, '0'::pg_catalog.interval), $3, $4, $5)"
        f" RETURNING {_SENT}",
        ("text", "interval", "int4", "text", "jsonb"),
        (payload, delay, priority, dedup_key, headers),
    )[0]
    row.update(channel=queue.channel, deduplicated=False)
    return row


def _find_duplicate(queue: Queue, dedup_key: str) -> dict[str, Any] | None:
    """A not yet acknowledged message with ``dedup_key`` sent within the window.

    The transaction-scoped advisory lock makes a second sender of the same key
    wait until the first commits or rolls back, so two never both insert.
    """
    window = queue.settings.get("dedup_window", "1 hour")
    _db.run(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext($1), pg_catalog.hashtext($2))",
        ("text", "text"),
        (queue.table, dedup_key),
    )
    rows = _db.run(
        f"SELECT {_SENT} FROM {queue.table} WHERE dedup_key = $1 AND delivered_at IS NULL"
        " AND sent_at > pg_catalog.now() - $2::pg_catalog.interval ORDER BY msg_id LIMIT 1",
        ("text", "text"),
        (dedup_key, window),
    )
    return dict(rows[0]) if rows else None


def send_batch(
    channel: str | None,
    type_oid: int,
    payloads: list[str | None] | None,
    delay: str | None = None,
    priority: int | None = 0,
    headers: str | None = None,
) -> list[int]:
    """Insert many messages in one statement; returns their ids in input order."""
    queue = queues.get(channel)
    if payloads is None:
        _db.fail("22004", f'payloads for queue "{queue.channel}" must not be NULL')
    for i, item in enumerate(payloads):
        if item is None:
            _db.fail("22004", f'payloads[{i + 1}] for queue "{queue.channel}" is NULL')
    if not payloads:
        return []
    _check_payload_type(queue, type_oid)
    _check_options(priority, delay, headers)
    if not queue.settings.get("priority_ordering", True):
        priority = 0
    # Rows are inserted in ordinality order, so ids ascend in input order.
    rows = _db.run(
        f"INSERT INTO {queue.table} (payload, visible_at, priority, headers)"
        f" SELECT u.p::{queue.type_sql},"
        " pg_catalog.now() + COALESCE($2, '0'::pg_catalog.interval), $3, $4"
        " FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS u(p, i) ORDER BY u.i"
        " RETURNING msg_id",
        ("text[]", "interval", "int4", "jsonb"),
        (payloads, delay, priority, headers),
    )
    return sorted(int(r["msg_id"]) for r in rows)


def _payload_expr(queue: Queue, as_text: bool) -> str:
    if as_text:
        if queue.type_oid == BYTEA_OID:
            _db.fail(
                "42804",
                f'queue "{queue.channel}" holds bytea, which has no text form',
                hint="Use pg_mq_get_msg_bin for bytea queues.",
            )
        return "payload::text"
    if queue.type_oid == BYTEA_OID:
        return "payload"
    return "pg_catalog.convert_to(payload::text, 'UTF8')"


def check_count(n: int | None) -> int:
    if n is None:
        _db.fail("22004", "number of messages must not be NULL")
    if n <= 0:
        _db.fail("22023", f"number of messages must be positive (got {n})")
    return n


def get_messages(channel: str | None, n: int | None, as_text: bool) -> Any:
    """Claim the ``n`` oldest ready messages and mark them delivered."""
    queue = queues.get(channel)
    check_count(n)
    payload = _payload_expr(queue, as_text)
    return _db.run(
        "WITH picked AS ("
        f" SELECT msg_id FROM {queue.table}"
        " WHERE delivered_at IS NULL AND visible_at <= pg_catalog.clock_timestamp()"
        " ORDER BY priority DESC, msg_id LIMIT $1 FOR UPDATE SKIP LOCKED),"
        " done AS ("
        f" UPDATE {queue.table} AS q SET delivered_at = pg_catalog.now()"
        " FROM picked WHERE q.msg_id = picked.msg_id"
        " RETURNING q.msg_id, q.sent_at, q.sent_by, q.priority, q.payload)"
        f" SELECT msg_id, sent_at, sent_by, false AS was_delivered, {payload} AS payload"
        " FROM done ORDER BY priority DESC, msg_id",
        ("int4",),
        (n,),
    )


def get_message_by_id(channel: str | None, msg_id: int | None, as_text: bool) -> Any:
    """One message by id, delivered or not; marks it delivered if it was not."""
    queue = queues.get(channel)
    if msg_id is None:
        _db.fail("22004", "msg_id must not be NULL")
    payload = _payload_expr(queue, as_text)
    rows = _db.run(
        f"SELECT msg_id, sent_at, sent_by, delivered_at IS NOT NULL AS was_delivered,"
        f" {payload} AS payload FROM {queue.table} WHERE msg_id = $1 FOR UPDATE",
        ("int8",),
        (msg_id,),
    )
    if rows and not rows[0]["was_delivered"]:
        _db.run(
            f"UPDATE {queue.table} SET delivered_at = pg_catalog.now() WHERE msg_id = $1",
            ("int8",),
            (msg_id,),
        )
    return rows
