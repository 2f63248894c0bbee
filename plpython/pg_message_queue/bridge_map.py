"""Server side of the NOTIFY -> AMQP bridge: the channel map and pg_mq_notify.

The map (table ``pg_mq_bridge_channel``) says where a channel's notifications go. The
client command (``bridge.py``) LISTENs on the mapped channels and hands each
notification to ``amqp.publish``. ``pg_mq_notify(channel, payload)`` is pg_notify plus,
for a mapped channel, the same ``amqp.publish`` in the caller's transaction, so the
message is kept by the outbox whether or not the bridge runs; a marker on the control
channel, sent just before the notification, tells the bridge to skip it.
"""

from __future__ import annotations

import json
from typing import Any

from . import _db
from .bridge_format import (
    AMQP_SHORTSTR_MAX,
    CONTROL_CHANNEL,
    RELOAD,
    Binding,
    channel_problem,
    message_id,
    skip_marker,
)

# (txid, marker digest) -> outbox id of the message pg_mq_notify recorded in this
# transaction; emptied when the transaction changes. A second identical pg_mq_notify in
# one transaction publishes nothing more (NOTIFY folds identical notifications), unless
# a rollback to a savepoint removed the first row.
_recorded: dict[tuple[str, str], int] = _db.cache({})


def _check_channel(channel: str | None) -> str:
    problem = channel_problem(channel)
    if problem:
        _db.fail(problem.sqlstate, problem.message)
    assert channel is not None
    return channel


def _table() -> str:
    return f"{_db.schema()}.pg_mq_bridge_channel"


def _lookup(channel: str) -> dict[str, Any] | None:
    """The channel's map row and, when it has one, this transaction's id (one statement)."""
    rows = _db.run(
        "SELECT broker_id, exchange, routing_key, delivery_mode, pg_catalog.pg_current_xact_id()::text AS txid"
        f" FROM {_table()} WHERE channel = $1",
        ("text",),
        (channel,),
    )
    return rows[0] if rows else None


def notify(channel: str | None, payload: str | None) -> None:
    """pg_notify(channel, payload); for a mapped channel, also amqp.publish in this transaction."""
    payload = "" if payload is None else payload  # as pg_notify
    if channel == CONTROL_CHANNEL:
        _db.run("SELECT pg_catalog.pg_notify($1, $2)", ("text", "text"), (channel, payload))
        return
    channel = _check_channel(channel)
    row = _lookup(channel)
    if row is None:
        _db.run("SELECT pg_catalog.pg_notify($1, $2)", ("text", "text"), (channel, payload))
        return
    marker = _record(channel, payload, row)
    # the marker first: a transaction's notifications reach the bridge in this order
    _db.run(
        "SELECT pg_catalog.pg_notify($1, $2) AS marker, pg_catalog.pg_notify($3, $4) AS notification",
        ("text", "text", "text", "text"),
        (CONTROL_CHANNEL, marker, channel, payload),
    )


def _record(channel: str, payload: str, row: dict[str, Any]) -> str:
    """amqp.publish the message unless this transaction did already; returns the marker."""
    binding = Binding(
        channel, row["broker_id"], row["exchange"], row["routing_key"], int(row["delivery_mode"]), "text/plain"
    )
    exchange, key, body, headers = binding.message(payload)
    if len(key.encode()) > AMQP_SHORTSTR_MAX:
        _db.fail("22023", f"the routing key in the payload of channel {channel!r} is longer than 255 bytes")
    txid = row["txid"]
    marker = skip_marker(channel, payload)
    if _recorded and next(iter(_recorded))[0] != txid:
        _recorded.clear()
    kept = _recorded.get((txid, marker))
    if (
        kept is None
        or not _db.run("SELECT EXISTS (SELECT FROM amqp.outbox WHERE id = $1) AS ok", ("int8",), (kept,))[0]["ok"]
    ):
        rows = _db.run(
            "SELECT amqp.publish($1, $2, $3, $4, $5, 'text/plain', NULL, NULL, $6::jsonb, $7) AS ok,"
            " pg_catalog.currval('amqp.outbox_id_seq') AS id",
            ("int4", "text", "text", "text", "int4", "text", "text"),
            (
                binding.broker_id,
                exchange,
                key,
                body,
                binding.delivery_mode,
                None if headers is None else json.dumps(headers),
                message_id(txid, channel, payload),
            ),
        )
        _recorded[(txid, marker)] = int(rows[0]["id"])
    return marker


def bridge_map(
    channel: str | None, broker_id: int | None, exchange: str | None, routing_key: str | None, delivery_mode: int | None
) -> None:
    """Map ``channel`` to (broker_id, exchange, routing_key); bridges reload at commit."""
    channel = _check_channel(channel)
    if broker_id is None:
        _db.fail("22004", "broker_id must not be NULL")
    if exchange is None:
        _db.fail("22004", "exchange must not be NULL")
    if len(exchange.encode()) > AMQP_SHORTSTR_MAX:
        _db.fail("22023", f"exchange {exchange[:40]!r}... is longer than 255 bytes")
    if routing_key is not None and len(routing_key.encode()) > AMQP_SHORTSTR_MAX:
        _db.fail("22023", f"routing_key {routing_key[:40]!r}... is longer than 255 bytes")
    if delivery_mode not in (1, 2):
        _db.fail("22023", f"delivery_mode must be 1 (transient) or 2 (persistent), not {delivery_mode}")
    if not _db.run(
        "SELECT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = SESSION_USER)"
        " OR pg_catalog.has_schema_privilege(SESSION_USER, 'amqp', 'USAGE') AS ok"
    )[0]["ok"]:
        _db.fail("42501", "only roles with USAGE on schema amqp may map channels to AMQP")
    if not _db.run("SELECT EXISTS (SELECT FROM amqp.broker WHERE broker_id = $1) AS ok", ("int4",), (broker_id,))[0][
        "ok"
    ]:
        _db.fail("42704", f"no AMQP broker with broker_id {broker_id}")
    _db.run(
        f"INSERT INTO {_table()} AS m (channel, broker_id, exchange, routing_key, delivery_mode)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (channel) DO UPDATE SET broker_id = EXCLUDED.broker_id,"
        " exchange = EXCLUDED.exchange, routing_key = EXCLUDED.routing_key, delivery_mode = EXCLUDED.delivery_mode,"
        " created_at = pg_catalog.now(), created_by = SESSION_USER",
        ("text", "int4", "text", "text", "int2"),
        (channel, broker_id, exchange, routing_key, delivery_mode),
    )
    _db.run("SELECT pg_catalog.pg_notify($1, $2)", ("text", "text"), (CONTROL_CHANNEL, RELOAD))


def bridge_unmap(channel: str | None) -> bool:
    """Stop bridging ``channel``; returns whether it was mapped."""
    channel = _check_channel(channel)
    rows = _db.run(f"DELETE FROM {_table()} WHERE channel = $1 RETURNING channel", ("text",), (channel,))
    if rows:
        _db.run("SELECT pg_catalog.pg_notify($1, $2)", ("text", "text"), (CONTROL_CHANNEL, RELOAD))
    return bool(rows)
