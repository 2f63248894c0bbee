"""AMQP from SQL with on-commit semantics: the Python behind schema ``amqp``.

``amqp.publish`` (PL/pgSQL) only inserts into ``amqp.outbox``. At commit the
outbox's deferred constraint trigger calls :func:`send_transaction`, which
publishes the transaction's rows with confirms and deletes the confirmed ones;
whatever is not confirmed stays (with a WARNING) and commits with the
transaction, for :func:`flush` / :func:`relay` to deliver later, in order.
Connections and the pipelined confirm logic live in ``amqp_link``.
"""

from __future__ import annotations

import decimal
import json
import time
import uuid
from typing import Any

from . import _db
from . import amqp_link as link

# The optional properties travel as one JSON array, NULL when all are (the usual
# case): PL/Python converts every column of every row, so fewer columns are cheaper.
_ROW = (
    "id, broker_id, exchange, routing_key, message, message_id, mandatory, txid::text AS txid,"
    " CASE WHEN pg_catalog.num_nonnulls(delivery_mode, content_type, reply_to, correlation_id, headers,"
    " expiration, priority) > 0 THEN pg_catalog.json_build_array(delivery_mode, content_type, reply_to,"
    " correlation_id, headers, expiration, priority)::text END AS props"
)
_HOSTS = (
    "SELECT host, port, vhost, username, password, tls, tls_ca_file, heartbeat, connect_timeout,"
    " confirm_timeout FROM amqp.broker WHERE broker_id = $1 ORDER BY failover_order, host, port"
)
TXID_HEADER = "x-pg-txid"
CHUNK = 2000
_MAX_ID = 2**63 - 1


def _run_checked(sql: str, types: tuple[str, ...], args: tuple[Any, ...], hint: str | None = None) -> Any:
    """_db.run for statements whose errors are the caller's (argument checks,
    privileges): re-raised with their SQLSTATE and text, without PL/Python's
    exception-class prefix."""
    try:
        return _db.run(sql, types, args)
    except _db.SPIError as exc:
        if _db.must_propagate(exc):
            raise
        message = str(exc.args[0] if exc.args else exc).removeprefix("pg_message_queue: ")
        _db.fail(exc.sqlstate or "XX000", message, getattr(exc, "detail", None), getattr(exc, "hint", None) or hint)


def _hosts(broker_id: int) -> list[dict[str, Any]]:
    return [dict(r) for r in _db.run(_HOSTS, ("integer",), (broker_id,))]


_txid_tables: dict[str, bytes] = {}


def _txid_table(txid: str) -> bytes:
    """The headers table {x-pg-txid: txid}, encoded once per transaction id."""
    table = _txid_tables.get(txid)
    if table is None:
        if len(_txid_tables) >= 64:
            _txid_tables.clear()
        table = _txid_tables[txid] = link.encode_table({TXID_HEADER: txid})
    return table


def _json(text: str) -> Any:
    """JSON as the encoder takes it: numbers with a fraction as Decimal (AMQP decimal)."""
    return json.loads(text, parse_float=decimal.Decimal)


def check_headers(headers: str) -> None:
    """publish()'s check of its headers argument: the encoder used at send time judges."""
    try:
        table = _json(headers)
        if not isinstance(table, dict):
            raise link.EncodeError("headers must be a JSON object")
        link.encode_table({**table, TXID_HEADER: "0"})
    except link.EncodeError as exc:
        _db.fail("22023", f"amqp: {exc}")
    except RecursionError:
        _db.fail("22023", f"amqp: headers nest deeper than {link.MAX_TABLE_DEPTH} levels")
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        _db.fail("22023", f"amqp: headers cannot be read: {link.reason(exc)}")


_prefixes: dict[tuple[str | None, str], bytes] = {}


def _properties(row: dict[str, Any]) -> bytes:
    """The encoded AMQP properties of an outbox row (_ROW) or of a row dict with
    one key per property (autonomous_publish): headers get x-pg-txid.

    message_id is the last property AMQP encodes, so an outbox row's encoding is
    the encoding of its other properties and transaction (computed once per
    batch for rows that share them, e.g. a watch's) followed by its message_id."""
    if "delivery_mode" in row:
        return _encode_properties(
            row["delivery_mode"],
            row["content_type"],
            row["reply_to"],
            row["correlation_id"],
            _json(row["headers"]) if row.get("headers") else None,
            row["expiration"],
            row["priority"],
            row["txid"],
            row["message_id"],
        )
    key = (row["props"], row["txid"])
    prefix = _prefixes.get(key)
    if prefix is None:
        props = _json(row["props"]) if row["props"] is not None else [None] * 7
        prefix = _encode_properties(*props, row["txid"], "")[:-1]  # without message_id's length byte
        if len(_prefixes) >= 256:
            _prefixes.clear()
        _prefixes[key] = prefix
    return prefix + link._shortstr(row["message_id"])


def _encode_properties(
    mode: int | None,
    ctype: str | None,
    reply_to: str | None,
    corr: str | None,
    headers: dict[str, Any] | None,
    expiration: str | None,
    priority: int | None,
    txid: str,
    message_id: str,
) -> bytes:
    table = link.encode_table({**headers, TXID_HEADER: txid}) if headers else _txid_table(txid)
    return link.encode_properties(
        content_type=ctype,
        headers=table,
        delivery_mode=mode,
        priority=priority,
        correlation_id=corr,
        reply_to=reply_to,
        expiration=expiration,
        message_id=message_id,
    )


def _message(row: dict[str, Any]) -> link.Message:
    return link.Message(
        row["exchange"], row["routing_key"], row["message"], _properties(row), bool(row["mandatory"]), row["message_id"]
    )


def _send(broker_id: int, rows: list[dict[str, Any]], meanwhile: Any = None) -> list[link.Outcome]:
    """Publish ``rows`` to ``broker_id``; never raises for broker trouble.

    ``meanwhile()`` is called once the messages are written, before the wait for
    their confirms (not at all when nothing could be written).
    """
    hosts = _hosts(broker_id)
    try:
        if not hosts:
            raise link.LinkError("42704", f"no AMQP broker with broker_id {broker_id} in amqp.broker")
        timeout = float(hosts[0]["confirm_timeout"])
        outcomes: list[link.Outcome | None] = [None] * len(rows)
        messages, index = [], []
        for i, r in enumerate(rows):
            try:
                messages.append(_message(r))
            except Exception as exc:  # a property over 255 bytes, bad headers: only this row fails
                outcomes[i] = link.Outcome(link.INVALID, f"cannot be encoded: {link.reason(exc)}")
                continue
            index.append(i)
        if messages:
            for i, o in zip(index, link.send_then(broker_id, hosts, messages, timeout, meanwhile), strict=True):
                outcomes[i] = o
        return outcomes  # type: ignore[return-value]
    except link.LinkError as exc:
        return [link.Outcome(link.UNCONFIRMED, exc.message) for _ in rows]
    except Exception as exc:  # a broker problem must never abort the caller's commit
        return [link.Outcome(link.UNCONFIRMED, f"unexpected error publishing: {link.reason(exc)}") for _ in rows]


def _record(broker_id: int, rows: list[dict[str, Any]], outcomes: list[link.Outcome]) -> tuple[int, str | None]:
    """Delete the confirmed rows, note the error on the others. Returns (delivered, first error or None)."""
    acked = [r["id"] for r, o in zip(rows, outcomes, strict=True) if o.status == link.ACK]
    if acked:
        _db.run("DELETE FROM amqp.outbox WHERE id = ANY($1)", ("bigint[]",), (acked,))
    kept: dict[tuple[str, bool], list[int]] = {}
    for r, o in zip(rows, outcomes, strict=True):
        if o.status != link.ACK:
            kept.setdefault((o.error or o.status, o.status in link.FINAL_FAILURES), []).append(r["id"])
    for (error, failed), ids in kept.items():
        _db.run(
            "UPDATE amqp.outbox SET attempts = attempts + 1, last_error = $2, failed = $3,"
            " last_attempt_at = pg_catalog.clock_timestamp() WHERE id = ANY($1)",
            ("bigint[]", "text", "boolean"),
            (ids, error, failed),
        )
    return len(acked), f"broker {broker_id}: " + next(iter(kept))[0] if kept else None


def _warn_kept(broker_id: int, outcomes: list[link.Outcome], when: str) -> None:
    kept = [o for o in outcomes if o.status != link.ACK]
    if not kept:
        return
    failed = sum(o.status in link.FINAL_FAILURES for o in kept)
    detail = (
        f"{len(kept)} of {len(outcomes)} message(s) stay in amqp.outbox"
        + (f", {failed} marked failed (see amqp.retry_failed)" if failed else "")
        + ". CALL amqp.relay() or SELECT amqp.flush() delivers them once the broker is back;"
        " SELECT * FROM amqp.status shows what is kept."
    )
    _db.warn(
        f"pg_message_queue: amqp: {len(kept)} message(s) for broker {broker_id} not confirmed {when},"
        f" kept in amqp.outbox: {kept[0].error}",
        detail=detail,
    )


def _by_broker(rows: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    groups: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["broker_id"], []).append(r)
    return groups


class _Undo(Exception):
    """Rolls back the optimistic DELETE of a batch that was not entirely confirmed."""


def _send_and_delete(broker_id: int, rows: list[dict[str, Any]]) -> list[link.Outcome]:
    """Publish ``rows`` and delete the confirmed ones.

    The DELETE of the whole batch runs in a subtransaction while the broker is
    working on the messages (it overlaps the confirm wait); it is kept if every
    message was confirmed, else rolled back and only the confirmed rows deleted.
    ``rows`` are this transaction's rows of one broker as send_transaction read
    them, so the DELETE takes their id range with the same conditions (an index
    range, no array of ids); a count that differs undoes it (then _record deletes
    by id).
    """
    opened: list[Any] = []

    def delete_all() -> None:
        sub = _db.subtransaction()
        sub.__enter__()
        try:
            done = _db.run(
                "DELETE FROM amqp.outbox WHERE id BETWEEN $1 AND $2 AND broker_id = $3"
                " AND txid = pg_catalog.pg_current_xact_id() AND NOT strict AND NOT failed",
                ("bigint", "bigint", "integer"),
                (rows[0]["id"], rows[-1]["id"], broker_id),
            )
            if done.nrows() != len(rows):
                raise _Undo
        except Exception as exc:
            sub.__exit__(type(exc), exc, exc.__traceback__)
            return
        opened.append(sub)

    try:
        outcomes = _send(broker_id, rows, delete_all)
    except BaseException:
        if opened:
            opened.pop().__exit__(_Undo, _Undo(), None)
        raise
    if opened:
        sub = opened.pop()
        if all(o.status == link.ACK for o in outcomes):
            sub.__exit__(None, None, None)
            return outcomes
        sub.__exit__(_Undo, _Undo(), None)
    _record(broker_id, rows, outcomes)
    return outcomes


def send_transaction(first_id: int) -> int:
    """Commit hook: publish this transaction's rows from ``first_id`` on; returns the last id seen."""
    # The upper bound ($2, always the largest bigint) is for the planner: a generic
    # plan for "id >= $1" alone guesses a third of the table and scans all of it,
    # dead rows and kept messages included; a range gets the primary key index.
    rows = _db.run(
        f"SELECT {_ROW} FROM amqp.outbox WHERE id BETWEEN $1 AND $2 AND txid = pg_catalog.pg_current_xact_id()"
        " AND NOT strict AND NOT failed ORDER BY id",
        ("bigint", "bigint"),
        (first_id, _MAX_ID),
    )
    if not rows:
        return first_id
    rows = list(rows)
    for broker_id, group in _by_broker(rows).items():
        outcomes = _send_and_delete(broker_id, group)
        _warn_kept(broker_id, outcomes, "at commit")
    return int(rows[-1]["id"])


def _lock_broker(broker_id: int) -> bool:
    """Take the relay lock of ``broker_id`` for this transaction: a row lock on its
    first amqp.broker row (taking one needs UPDATE on amqp.broker, which publishers
    lack). False when another transaction holds it; True when the broker has no row
    (its messages then fail with "no AMQP broker", nothing is sent)."""
    got = _db.run(
        "SELECT 1 AS ok FROM amqp.broker WHERE broker_id = $1 ORDER BY failover_order, host, port LIMIT 1"
        " FOR NO KEY UPDATE SKIP LOCKED",
        ("integer",),
        (broker_id,),
    )
    if got:
        return True
    return not _db.run("SELECT 1 AS x FROM amqp.broker WHERE broker_id = $1 LIMIT 1", ("integer",), (broker_id,))


def flush_batch(broker_id: int | None, max_messages: int | None, quiet: bool) -> tuple[int, bool, str | None]:
    """Deliver kept messages, oldest first per broker.

    Returns (delivered, pending, last_error): how many were confirmed, whether
    deliverable messages remain, the first error met (None if none). A
    transaction-scoped lock per broker (_lock_broker) keeps two relays from
    sending the same rows (and from mixing up their order); a broker whose lock
    is taken is skipped. A broker stops at the first chunk with an unanswered message.
    """
    limit = max_messages if max_messages is not None else 10000
    error: str | None = None
    brokers = _db.run(
        "SELECT DISTINCT broker_id FROM amqp.outbox WHERE NOT failed"
        " AND ($1::integer IS NULL OR broker_id = $1) ORDER BY broker_id",
        ("integer",),
        (broker_id,),
    )
    delivered = 0
    for b in [r["broker_id"] for r in brokers]:
        if not _lock_broker(b):
            continue
        while delivered < limit:
            rows = _db.run(
                f"SELECT {_ROW} FROM amqp.outbox WHERE broker_id = $1 AND NOT failed ORDER BY id LIMIT $2",
                ("integer", "integer"),
                (b, min(CHUNK, limit - delivered)),
            )
            if not rows:
                break
            rows = list(rows)
            outcomes = _send(b, rows)
            done, kept_error = _record(b, rows, outcomes)
            delivered += done
            error = error or kept_error
            if not quiet:
                _warn_kept(b, outcomes, "by amqp.flush")
            if any(o.status == link.UNCONFIRMED for o in outcomes):
                break
    pending = _db.run(
        "SELECT EXISTS (SELECT FROM amqp.outbox WHERE NOT failed AND ($1::integer IS NULL OR broker_id = $1)) AS p",
        ("integer",),
        (broker_id,),
    )[0]["p"]
    return delivered, bool(pending), error


def flush(broker_id: int | None, max_messages: int | None, quiet: bool) -> int:
    """amqp.flush(): how many kept messages were delivered (see flush_batch)."""
    return flush_batch(broker_id, max_messages, quiet)[0]


def relay(
    broker_id: int | None,
    batch_size: int,
    poll_interval: float,
    run_for: str | None,
    exit_when_empty: bool,
) -> None:
    """The relay loop: flush, COMMIT, and sleep when idle; reports changes of error state."""
    caller_path = _db.pin_search_path()  # a procedure that COMMITs cannot have a SET clause (_db.commit re-pins)
    try:
        _db.commit_first("amqp.relay")  # fails at once inside a transaction block, before anything is sent
        _relay_loop(broker_id, batch_size, poll_interval, run_for, exit_when_empty)
    finally:
        _db.restore_search_path(caller_path)


def _relay_loop(
    broker_id: int | None,
    batch_size: int,
    poll_interval: float,
    run_for: str | None,
    exit_when_empty: bool,
) -> None:
    seconds = None
    if run_for is not None:
        seconds = _db.interval_seconds(run_for)
    deadline = None if seconds is None else time.monotonic() + seconds
    reported: str | None = None
    while True:
        got = _run_checked(
            "SELECT delivered, pending, last_error FROM amqp._flush_batch($1, $2)",
            ("integer", "integer"),
            (broker_id, batch_size),
            hint="A relay role needs EXECUTE on amqp.relay and on amqp._flush_batch(integer, integer).",
        )[0]
        n, pending, error = got["delivered"], got["pending"], got["last_error"]
        if error is not None and error != reported:
            _db.warn(f"pg_message_queue: amqp.relay: cannot deliver yet: {error}")
        reported = error
        _db.commit()
        if exit_when_empty and not pending:
            return
        if deadline is not None and time.monotonic() >= deadline:
            return
        if n == 0 or error is not None:
            wait = poll_interval if deadline is None else min(poll_interval, max(deadline - time.monotonic(), 0))
            _db.run("SELECT pg_catalog.pg_sleep($1)", ("float8",), (wait,))


def _fail_outcome(broker_id: int, outcome: link.Outcome) -> None:
    if outcome.status == link.RETURNED:
        _db.fail("55000", f"AMQP broker {broker_id} returned the message: {outcome.error}")
    if outcome.status == link.REFUSED:
        code = {404: "42704", 403: "42501", 406: "55000"}.get(outcome.reply_code or 0, "08P01")
        _db.fail(code, f"AMQP broker {broker_id} {outcome.error}")
    if outcome.status == link.NACK:
        _db.fail("58000", f"AMQP broker {broker_id} did not accept the message: {outcome.error}")
    if outcome.status == link.INVALID:
        _db.fail("22023", f"amqp: the message {outcome.error}")
    _db.fail("08006", f"AMQP broker {broker_id}: {outcome.error}")


def _hosts_or_fail(broker_id: int | None) -> list[dict[str, Any]]:
    if broker_id is None:
        _db.fail("22004", "amqp: broker_id must not be NULL")
    hosts = _hosts(broker_id)
    if not hosts:
        _db.fail(
            "42704",
            f"no AMQP broker with broker_id {broker_id}",
            hint="Add it with INSERT INTO amqp.broker (host, port, vhost, username, password) ...",
        )
    return hosts


def _connect_or_fail(broker_id: int, hosts: list[dict[str, Any]]) -> link.Link:
    try:
        return link.connect(broker_id, hosts)
    except link.LinkError as exc:
        _db.fail(exc.sqlstate, exc.message, exc.detail)


def autonomous_publish(
    broker_id: int,
    exchange: str,
    routing_key: str,
    message: str,
    delivery_mode: int | None,
    content_type: str | None,
    reply_to: str | None,
    correlation_id: str | None,
    headers: str | None,
    message_id: str | None,
    expiration: str | None,
    priority: int | None,
    mandatory: bool | None,
) -> bool:
    """Publish now and wait for the confirm; raise on any failure."""
    _run_checked(
        "SELECT amqp._check_message($1, $2, $3, $4, $5, $6, $7, $8)",
        ("integer", "varchar", "varchar", "varchar", "integer", "integer", "varchar", "jsonb"),
        (broker_id, exchange, routing_key, message, delivery_mode, priority, expiration, headers),
    )
    hosts = _hosts_or_fail(broker_id)
    if mandatory is None:
        mandatory = bool(
            _db.run("SELECT bool_or(mandatory) AS m FROM amqp.broker WHERE broker_id = $1", ("integer",), (broker_id,))[
                0
            ]["m"]
        )
    txid = _db.run("SELECT pg_catalog.pg_current_xact_id()::text AS t")[0]["t"]
    row = {
        "exchange": exchange,
        "routing_key": routing_key,
        "message": message,
        "delivery_mode": delivery_mode,
        "content_type": content_type,
        "reply_to": reply_to,
        "correlation_id": correlation_id,
        "headers": headers,
        "message_id": message_id or str(uuid.uuid4()),
        "expiration": expiration,
        "priority": priority,
        "mandatory": mandatory,
        "txid": txid,
    }
    try:
        message = _message(row)
    except Exception as exc:
        _db.fail("22023", f"amqp.autonomous_publish: the message cannot be encoded: {link.reason(exc)}")
    _connect_or_fail(broker_id, hosts)
    try:
        (outcome,) = link.send(broker_id, hosts, [message], float(hosts[0]["confirm_timeout"]))
    except link.LinkError as exc:
        _db.fail(exc.sqlstate, exc.message, exc.detail)
    if outcome.status != link.ACK:
        _fail_outcome(broker_id, outcome)
    return True


def exchange_declare(
    broker_id: int,
    exchange: str,
    exchange_type: str | None,
    passive: bool | None,
    durable: bool | None,
    auto_delete: bool | None,
) -> bool:
    """Declare (or, passive, check) an exchange on a channel of its own."""
    import pika.exceptions as pe

    if exchange is None:
        _db.fail("22004", "amqp.exchange_declare: exchange must not be NULL")
    hosts = _hosts_or_fail(broker_id)
    conn = _connect_or_fail(broker_id, hosts)
    try:
        channel = conn.connection.channel()
    except Exception as exc:
        link.drop(conn)
        _db.fail("08006", f"AMQP broker {broker_id}: cannot open a channel: {link.reason(exc)}")
    try:
        channel.exchange_declare(
            exchange=exchange,
            exchange_type=exchange_type or "direct",
            passive=bool(passive),
            durable=bool(durable),
            auto_delete=bool(auto_delete),
        )
    except pe.ChannelClosedByBroker as exc:
        code = {404: "42704", 403: "42501", 406: "55000"}.get(exc.reply_code, "08P01")
        _db.fail(code, f"AMQP broker {broker_id} refused exchange '{exchange}': {exc.reply_code} {exc.reply_text}")
    except Exception as exc:
        link.drop(conn)
        _db.fail("08006", f"AMQP broker {broker_id}: declaring exchange '{exchange}' failed: {link.reason(exc)}")
    finally:
        if channel.is_open:
            channel.close()
    return True


def disconnect(broker_id: int) -> None:
    link.disconnect(broker_id)
