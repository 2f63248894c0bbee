"""Sending and receiving with pg_message_queue's original semantics.

Receiving claims rows with FOR UPDATE SKIP LOCKED and marks them delivered in
the caller's transaction: competing consumers never wait for each other, never
see the same message, and a rollback hands the messages back.

The receive paths return SQL text that a thin PL/pgSQL body executes, so rows
go straight to the client instead of through Python objects (measured: a third
faster for 100 messages).
"""

from __future__ import annotations

from typing import Any

from . import _db, queues
from .queues import BYTEA_OID, DEDUP_LIVE, SCHEDULED, TEXT_OIDS, Queue

_SENT = "msg_id, sent_at, sent_by, delivered_at, visible_at"
# What a new message returns before pg_mq_send_message fills in its times (pg_mq_sent,
# by name: its attributes are the original's pg_mq_base columns, then ours).
_NEW_SENT = {"sent_at": None, "sent_by": None, "delivered_at": None, "visible_at": None, "deduplicated": False}

# Queues looked up by senders in this backend. Each send re-checks, inside its
# INSERT, that the catalog row is still the one cached (its xmin): a dropped,
# re-created or reconfigured queue is looked up again. (The guarded INSERT that
# found a stale entry inserted nothing, but its statement trigger still fired:
# listeners may see one extra notification after a queue changed.)
_sending: dict[str, Queue] = _db.cache({})
MAX_DEDUP_BYTES = 1024  # a btree entry holds at most ~2700 bytes; keys are ids, not documents


def _type_problem(queue: Queue, type_oid: int) -> bool:
    return type_oid != queue.type_oid and type_oid not in TEXT_OIDS


def _fail_type(queue: Queue, type_oid: int) -> None:
    given = _db.run("SELECT pg_catalog.format_type($1, NULL) AS t", ("oid",), (type_oid,))[0]["t"]
    _db.fail(
        "42804",
        f'queue "{queue.channel}" holds {queue.type_sql}, not {given}',
        hint=f"Cast the payload: pg_mq_send_message(channel, payload::{queue.type_sql}).",
    )


def _check_options(priority: int | None, delay: str | None, headers: str | None) -> None:
    if priority is None:
        _db.fail("22004", "priority must not be NULL")
    if delay is not None and _db.interval_seconds(delay) < 0:
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
) -> Any:
    """Insert one message; with a live ``dedup_key`` return the existing one instead
    (see :func:`_send` for what comes back)."""
    if channel is None:
        _db.fail("22004", "channel must not be NULL")
    cached = _sending.get(channel)
    if cached is not None and not _type_problem(cached, type_oid):
        try:
            row = _send(cached, payload, delay, priority, dedup_key, headers)
        except _db.SPIError as exc:
            # The queue may have been dropped or re-created (another type) since it
            # was cached: look it up afresh and try once more; a real error recurs.
            if _db.must_propagate(exc):
                raise
            row = None
        if row is not None:
            return row
    queue = queues.get(channel)
    if len(_sending) >= 1000:
        _sending.clear()
    _sending[channel] = queue
    if _type_problem(queue, type_oid):
        _fail_type(queue, type_oid)
    row = _send(queue, payload, delay, priority, dedup_key, headers)
    if row is None:
        _db.fail("40001", f'queue "{channel}" was changed while sending to it; send again')
    return row


def _send(
    queue: Queue,
    payload: str | None,
    delay: str | None,
    priority: int | None,
    dedup_key: str | None,
    headers: str | None,
) -> Any:
    """The INSERT, guarded by the catalog row's version; None when that changed.

    A new message comes back as a tuple with its times left NULL (the caller's
    wrapper fills them in), a live duplicate as the row it found."""
    if payload is None:
        _db.fail("22004", f'payload for queue "{queue.channel}" must not be NULL')
    _check_options(priority, delay, headers)
    if not queue.settings.priority_ordering:
        priority = 0
    insert = (
        f"INSERT INTO {queue.table} (payload, visible_at, priority, dedup_key, headers)"
        f" SELECT $1::{queue.type_sql}, pg_catalog.now() + COALESCE($2, '0'::pg_catalog.interval), $3, $4, $5"
        f" WHERE EXISTS (SELECT FROM {_db.schema()}.pg_mq_config_catalog"
        " WHERE channel = $6 AND xmin::text || ':' || ctid::text = $7)"
    )
    args = (payload, delay, priority, dedup_key, headers, queue.channel, queue.version)
    types = ("text", "interval", "int4", "text", "jsonb", "text", "text")
    if dedup_key is None:
        rows = _db.run(insert + " RETURNING msg_id", types, args)
        # A new row's times are its defaults: pg_mq_send_message fills them in
        # (sent_at and visible_at from now() and delay, sent_by SESSION_USER), as
        # the columns did; taking them back from the row through Python costs a
        # sixth of a send (README, Benchmark).
        return {**_NEW_SENT, "msg_id": rows[0]["msg_id"], "channel": queue.channel} if rows else None
    return _send_once(
        queue,
        dedup_key,
        insert
        + f" ON CONFLICT (dedup_key) WHERE {DEDUP_LIVE} DO NOTHING"
        + f" RETURNING {_SENT}, $6 AS channel, false AS deduplicated",
        types,
        args,
    )


def _send_once(
    queue: Queue, dedup_key: str, sql: str, types: tuple[str, ...], args: tuple[Any, ...]
) -> dict[str, Any] | None:
    """Insert unless a message with ``dedup_key`` is live (not yet acknowledged, sent
    within the queue's dedup_window): then return that one, marked deduplicated.

    The queue's unique index on live keys decides: a second sender of the same key
    waits for the first one's transaction. A live key older than the window is
    released (its message stays, it just no longer deduplicates) and we try again.
    """
    size = len(dedup_key.encode())
    if size > MAX_DEDUP_BYTES:
        _db.fail("22023", f'dedup_key for queue "{queue.channel}" is too long: {size} bytes, at most {MAX_DEDUP_BYTES}')
    for _attempt in range(5):
        rows = _db.run(sql, types, args)
        if rows:
            return rows[0]
        live = _db.run(
            f"SELECT {_SENT}, sent_at > pg_catalog.now() - $2::pg_catalog.interval AS fresh"
            f" FROM {queue.table} WHERE dedup_key = $1 AND {DEDUP_LIVE}",
            ("text", "text"),
            (dedup_key, queue.settings.dedup_window),
        )
        if not live:
            if not _current(queue):
                return None  # the queue changed under the cached entry: look it up again
            continue  # the live one was acknowledged meanwhile
        found = dict(live[0])
        if found.pop("fresh"):
            found.update(channel=queue.channel, deduplicated=True)
            return found
        _db.run(f"SELECT {_db.schema()}._pg_mq_release_dedup($1, $2)", ("text", "text"), (queue.channel, dedup_key))
    _db.fail("40001", f'queue "{queue.channel}": dedup_key {dedup_key!r} keeps changing hands; send again')


def _current(queue: Queue) -> bool:
    """Whether the cached ``queue`` is still the catalog's row."""
    return bool(
        _db.run(
            f"SELECT EXISTS (SELECT FROM {_db.schema()}.pg_mq_config_catalog"
            " WHERE channel = $1 AND xmin::text || ':' || ctid::text = $2) AS ok",
            ("text", "text"),
            (queue.channel, queue.version),
        )[0]["ok"]
    )


def release_dedup(channel: str | None, dedup_key: str | None) -> int:
    """SECURITY DEFINER helper of sends: forget ``dedup_key`` on live messages sent
    before the queue's dedup_window. Safe for anyone: the window already let it go."""
    queue = queues.get(channel)
    if dedup_key is None:
        return 0
    return int(
        _db.run(
            f"UPDATE {queue.table} SET dedup_key = NULL WHERE dedup_key = $1 AND {DEDUP_LIVE}"
            " AND sent_at <= pg_catalog.now() - $2::pg_catalog.interval",
            ("text", "text"),
            (dedup_key, queue.settings.dedup_window),
        ).nrows()
    )


_elements: dict[int, int] = _db.cache({})


def _element_type(array_oid: int) -> int:
    found = _elements.get(array_oid)
    if found is None:
        found = int(
            _db.run("SELECT typelem FROM pg_catalog.pg_type WHERE oid = $1", ("oid",), (array_oid,))[0]["typelem"]
        )
        _elements[array_oid] = found
    return found


def send_batch_sql(
    channel: str | None,
    array_oid: int,
    count: int | None,
    first_null: int | None,
    delay: str | None = None,
    priority: int | None = 0,
    headers: str | None = None,
) -> str:
    """Check a pg_mq_send_batch call and return the SQL that inserts the batch.

    The thin PL/pgSQL body runs it with the payloads as they came ($1, the typed
    array, never converted to Python objects and back), then delay, priority and
    headers ($2..$4); it returns the new ids in input order. ``count`` is the
    array's cardinality (NULL for a NULL array), ``first_null`` the position of
    its first NULL element (one-dimensional arrays; a NULL in a deeper array is
    refused by the payload column's NOT NULL).
    """
    queue = queues.get(channel)
    if count is None:
        _db.fail("22004", f'payloads for queue "{queue.channel}" must not be NULL')
    if first_null is not None:
        _db.fail("22004", f'payloads[{first_null}] for queue "{queue.channel}" is NULL')
    _check_options(priority, delay, headers)
    if not count:
        return "SELECT NULL::pg_catalog.int8 WHERE false"
    type_oid = _element_type(array_oid)
    if _type_problem(queue, type_oid):
        _fail_type(queue, type_oid)
    # The queue's own type goes in as it is; text is parsed by the type's input.
    payload = "u.p" if type_oid == queue.type_oid else f"u.p::pg_catalog.text::{queue.type_sql}"
    # Rows are inserted in ordinality order, so ids ascend in input order.
    return (
        f"WITH i AS (INSERT INTO {queue.table} (payload, visible_at, priority, headers)"
        f" SELECT {payload}, pg_catalog.now() + COALESCE($2, '0'::pg_catalog.interval),"
        f" {'$3' if queue.settings.priority_ordering else '0'}, $4"
        " FROM pg_catalog.unnest($1) WITH ORDINALITY AS u(p, i) ORDER BY u.i"
        " RETURNING msg_id) SELECT msg_id FROM i ORDER BY msg_id"
    )


def payload_expr(queue: Queue, as_text: bool) -> str:
    """The payload as text (for bytea, PostgreSQL's text form ``\\x...``, as in the
    original) or as bytea (the bytea itself, or the UTF-8 bytes of the text form)."""
    if as_text:
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


def ready_order(queue: Queue) -> str:
    return "priority DESC, msg_id" if queue.settings.priority_ordering else "msg_id"


def keep_priority(queue: Queue) -> str:
    """What a message entering ``queue`` keeps of its priority: on a queue with
    priority_ordering off, none (so the ready index gives msg_id order)."""
    return "priority" if queue.settings.priority_ordering else "0"


CANDIDATE_SLACK = 1000  # ready messages looked at beyond the n asked for, in case others hold some
# The largest claim the generated statements take (queues.build_dispatch); larger ones
# go through the Python path. It makes the candidates' bound a constant, see select_ready.
GENERIC_MAX = 1000


def select_ready(queue: Queue, now: str, generic: bool = False, beyond: bool = False, count: str = "$1") -> str:
    """SQL picking up to $1 ready messages in delivery order and locking them, and
    only them: what another consumer holds is skipped, never waited for.

    ``now`` is a parameter holding one timestamp for the whole statement, so the
    due-time test is an index condition. The candidates come from two branches, one
    per index (messages never leased nor delayed; leased, delayed and given-back ones
    that are due), each in delivery order and limited, merged lazily in delivery
    order; the lateral subquery locks a candidate and re-checks on the row itself
    that it is undelivered, due and below max_deliveries (also after following a
    concurrent update), in delivery order; the LIMIT stops as soon as enough rows are
    locked. The candidates are limited (CANDIDATE_SLACK more than asked for): that
    lets the planner walk the indexes instead of sorting every ready message, and
    keeps the candidates' order the only order there is, so no plan can lock a
    candidate before the ones ahead of it.

    ``beyond``: the claim's second statement, which the claim runs (in a new statement,
    so with a new snapshot) only when the first locked fewer than asked for: others
    hold most of the first candidates (consumers working on big batches in open
    transactions). It walks on past them, unbounded but just as lazy: the same two
    branches merged in delivery order, fenced (OFFSET 0) so that order is the one the
    rows are locked in. So a claim is never short while unheld messages wait. ``count``
    is the SQL of how many to lock ($1, or the dispatcher's variable for the rest). A
    queue with fifo_group_header has none (it locks nothing): a claim takes at most one
    message of a group, and the second statement would see the group heads the first one
    took as gone and take the next of each group too. Its first statement goes on instead,
    once its candidates are used up, to the heads of the groups past them
    (_fifo_heads_past), in the same snapshot.

    ``generic``: the statement is planned once and its plan reused (the generated
    dispatchers; $1 <= GENERIC_MAX there). Each branch's bound is then a constant
    (GENERIC_MAX + CANDIDATE_SLACK, never less than $1 + CANDIDATE_SLACK), so a
    plan made without knowing $1 still walks the indexes in order rather than
    sorting every ready message.
    """
    # One order for every queue: on queues with priority_ordering off every
    # undelivered message has priority 0 (see keep_priority), so it is msg_id order.
    order = "priority DESC, msg_id"
    branch_bound = str(GENERIC_MAX + CANDIDATE_SLACK) if generic else f"{count}::pg_catalog.int8 + {CANDIDATE_SLACK}"
    branches = [queues.UNTOUCHED, f"{queues.SCHEDULED} AND visible_at <= {now}"]

    def candidates(limit: str) -> str:
        return " UNION ALL ".join(
            f"(SELECT ctid AS tid, priority, msg_id FROM {queue.table} WHERE {where} ORDER BY {order}{limit})"
            for where in branches
        )

    check = f"q.ctid = c.tid AND q.delivered_at IS NULL AND q.visible_at <= {now}"
    limit = queue.settings.max_deliveries
    if limit:
        # A setting checked when it was stored (1 .. 2^31-1), part of the queue's definition.
        check += f" AND q.read_count < {int(limit)}"
    group = queue.settings.fifo_group_header
    if group and beyond:
        return "SELECT NULL::pg_catalog.int8 AS msg_id WHERE false"
    indexed = bool(group) and queues.fifo_index(queue) == group
    if indexed:
        # Only the oldest undelivered message of a group may go out, and only
        # while it is ready, so a group never has two messages in flight.
        # A message sent with a delay joins its group's order when it is due, so a
        # sender cannot hold a group back with a long delay. One probe of the
        # queue's group index (queues.ensure_fifo_index), backwards from the
        # candidate: the waiting message just before it in its group, if any.
        q_key, o_key = queues.fifo_key(group, "q"), queues.fifo_key(group, "o")
        check += (
            f" AND ({q_key} IS NULL OR (SELECT o.msg_id FROM {queue.table} AS o"
            f" WHERE pg_catalog.md5({o_key}) OPERATOR(pg_catalog.=) pg_catalog.md5({q_key})"
            f" AND o.msg_id < q.msg_id AND o.delivered_at IS NULL AND {o_key} IS NOT NULL"
            f" AND {o_key} OPERATOR(pg_catalog.=) {q_key}"
            f" AND NOT (o.read_count = 0 AND o.visible_at > {now}) ORDER BY o.msg_id DESC LIMIT 1) IS NULL)"
        )
    elif group:
        # The same without the index (a queue whose index was dropped by hand): the
        # heads of all groups, from every waiting message.
        key = f"(headers ->> {_db.literal(group)})"
        check += (
            f" AND ((q.{key[1:]} IS NULL OR q.msg_id IN (SELECT DISTINCT ON ({key}) msg_id FROM {queue.table}"
            f" WHERE delivered_at IS NULL AND {key} IS NOT NULL AND NOT (read_count = 0 AND visible_at > {now})"
            f" ORDER BY {key}, msg_id))"
        )
    outer = ", ".join(f"c.{column}" for column in order.split(", "))
    lock = f"LATERAL (SELECT q.msg_id FROM {queue.table} AS q WHERE {check} FOR UPDATE SKIP LOCKED) AS l"
    if beyond:
        return (
            f"SELECT l.msg_id FROM (SELECT c.tid, c.priority, c.msg_id FROM ({candidates('')}) AS c"
            f" ORDER BY {outer} OFFSET 0) AS c, {lock} ORDER BY {outer} LIMIT {count}"
        )
    bound = f"{count}::pg_catalog.int8 + {CANDIDATE_SLACK}"
    window = (
        f"SELECT c.tid, c.priority, c.msg_id FROM ({candidates(f' LIMIT {branch_bound}')}) AS c"
        f" ORDER BY {outer} LIMIT {bound}"
    )
    if indexed:
        # Past the window, the heads of the groups: one large group, or groups whose heads
        # are in flight, can fill the window while other groups wait behind it. Appended
        # after the window, so they are only looked for once the window is used up (an
        # Append starts its second part only then; no ORDER BY over both, which would
        # read both at once). One statement, one snapshot: what this claim takes is not
        # yet gone when it looks, so it never takes a group's next message too.
        return (
            f"SELECT l.msg_id FROM (({window}) UNION ALL ({_fifo_heads_past(queue, group, now, window, bound)}))"
            f" AS c, {lock} LIMIT {count}"
        )
    return f"SELECT l.msg_id FROM ({window}) AS c, {lock} ORDER BY {outer} LIMIT {count}"


def _fifo_heads_past(queue: Queue, group: str, now: str, window: str, bound: str) -> str:
    """SQL of the heads of ``queue``'s groups that come after the claim's candidate window
    (``window``, ``bound`` rows when full), in delivery order: nothing when the window is
    not full (it then held every ready message). A group's head is its oldest waiting
    message, not counting those sent with a delay that is not over; the claim's own check
    then decides whether it is ready. The groups are found by skipping through the
    queue's group index, two probes a group (queues.ensure_fifo_index)."""
    key, o_key = queues.fifo_key(group), queues.fifo_key(group, "o")
    waiting = f"delivered_at IS NULL AND {key} IS NOT NULL"
    o_waiting = f"o.delivered_at IS NULL AND {o_key} IS NOT NULL"
    groups = (
        f"WITH RECURSIVE g (h) AS ((SELECT pg_catalog.md5({key}) FROM {queue.table} WHERE {waiting}"
        f" ORDER BY pg_catalog.md5({key}) LIMIT 1) UNION ALL SELECT (SELECT pg_catalog.md5({o_key})"
        f" FROM {queue.table} AS o WHERE pg_catalog.md5({o_key}) OPERATOR(pg_catalog.>) g.h AND {o_waiting}"
        f" ORDER BY pg_catalog.md5({o_key}) LIMIT 1) FROM g WHERE g.h IS NOT NULL)"
        " SELECT g.h FROM g WHERE g.h IS NOT NULL"
    )
    head = (
        f"SELECT o.ctid AS tid, o.priority, o.msg_id FROM {queue.table} AS o"
        f" WHERE pg_catalog.md5({o_key}) OPERATOR(pg_catalog.=) g.h AND {o_waiting}"
        f" AND NOT (o.read_count = 0 AND o.visible_at > {now}) ORDER BY o.msg_id LIMIT 1"
    )
    end = (
        f"SELECT w.priority, w.msg_id FROM ({window}) AS w"
        f" ORDER BY w.priority DESC, w.msg_id OFFSET {bound} - 1 LIMIT 1"
    )
    return (  # the window's end read once, whatever the join order
        f"WITH e AS MATERIALIZED ({end})"
        f" SELECT h.tid, h.priority, h.msg_id FROM e, ({groups}) AS g, LATERAL ({head}) AS h"
        " WHERE h.priority OPERATOR(pg_catalog.<) e.priority"
        " OR (h.priority OPERATOR(pg_catalog.=) e.priority AND h.msg_id OPERATOR(pg_catalog.>) e.msg_id)"
        " ORDER BY h.priority DESC, h.msg_id"
    )


# How a claim's change finds the rows select_ready locked: their ids as one array, an
# index condition on the primary key whatever the plan (a join could be planned as a
# scan of the whole table when the plan was made for an empty one).
PICKED = "q.msg_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT picked.msg_id FROM picked))"


def get_sql(channel: str | None, n: int | None, as_text: bool, beyond: bool = False) -> str:
    """SQL ($1 = n, $2 = now) claiming the ``n`` first ready messages and marking them
    delivered (``beyond``: the claim's second statement, see select_ready)."""
    queue = queues.get(channel)
    check_count(n)
    if not beyond:  # the claim's first statement, moments ago in this call, did it
        dead_letter_overdue(queue)
    return get_statement(queue, as_text, beyond=beyond)


def get_statement(queue: Queue, as_text: bool, generic: bool = False, beyond: bool = False, count: str = "$1") -> str:
    """get_sql's statement for ``queue``, without the call's checks: what the generated
    claim dispatcher runs (queues.build_dispatch, ``generic``)."""
    payload = payload_expr(queue, as_text)
    order = ready_order(queue)
    return (
        f"WITH picked AS ({select_ready(queue, '$2', generic, beyond, count)}),"
        " done AS ("
        f" UPDATE {queue.table} AS q SET delivered_at = pg_catalog.now(), read_count = q.read_count + 1"
        f" WHERE {PICKED}"
        " RETURNING q.msg_id, q.sent_at, q.sent_by, q.delivered_at, q.priority, q.payload)"
        f" SELECT msg_id, sent_at, sent_by, delivered_at, {payload} AS payload"
        f" FROM done ORDER BY {order}"
    )


def dead_letter_overdue(queue: Queue) -> None:
    """Have the mover take messages that used up max_deliveries and are due again.
    Claims never return them anyway; this only checks (no locks) whether there are
    any before calling the SECURITY DEFINER mover."""
    limit = queue.settings.max_deliveries
    if not limit:
        return
    due = _db.run(
        f"SELECT EXISTS (SELECT FROM {queue.table} WHERE {SCHEDULED}"
        " AND visible_at <= pg_catalog.clock_timestamp() AND read_count >= $1) AS due",
        ("int4",),
        (limit,),
    )
    if due[0]["due"]:
        dead_letter(queue, None)


def dead_letter(queue: Queue, msg_ids: list[int] | None) -> None:
    """Have the SECURITY DEFINER mover take what is due: consumers need no rights
    on the dead-letter queue, so they can never write to it themselves."""
    try:
        with _db.subtransaction():
            _db.run(f"SELECT {_db.schema()}._pg_mq_dead_letter($1, $2)", ("text", "int8[]"), (queue.channel, msg_ids))
    except (_db.SPIError, _db.Error) as exc:
        # A broken dead-letter setup (queue gone) must not stop the queue: the
        # overdue messages stay where they are (claims skip them), and readers are told.
        if isinstance(exc, _db.SPIError) and _db.must_propagate(exc):
            raise
        _db.warn(f'pg_message_queue: cannot dead-letter messages of queue "{queue.channel}": {_db.message(exc)}')


def get_message_by_id(channel: str | None, msg_id: int | None, as_text: bool) -> Any:
    """One message by id, delivered or not, marked delivered now, as the original does
    (a message delivered before gets a new delivered_at; read_count counts each time)."""
    queue = queues.get(channel)
    if msg_id is None:
        _db.fail("22004", "msg_id must not be NULL")
    payload = payload_expr(queue, as_text)
    return _db.run(
        f"UPDATE {queue.table} SET delivered_at = pg_catalog.now(), read_count = read_count + 1 WHERE msg_id = $1"
        f" RETURNING msg_id, sent_at, sent_by, delivered_at, {payload} AS payload",
        ("int8",),
        (msg_id,),
    )
