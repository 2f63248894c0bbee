"""Queues: the model (catalog row, settings) and their tables: create, drop, purge, rebuild.

Privileges are in ``grants``, settings changes in ``configure``, payload-type checks
in ``payload_types``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import _db, payload_types, settings
from .names import channel_problem, table_name

BYTEA_OID = 17
DEDUP_LIVE = "dedup_key IS NOT NULL AND delivered_at IS NULL"  # the dedup index's predicate
# The predicates of the two read indexes (see create_queue); claims repeat them verbatim.
UNTOUCHED = "delivered_at IS NULL AND visible_at <= sent_at"
SCHEDULED = "delivered_at IS NULL AND visible_at > sent_at"


@dataclass(frozen=True)
class Queue:
    channel: str
    table: str  # schema-qualified, quoted
    type_oid: int
    type_sql: str  # the payload type as SQL text, usable in a cast
    stored: dict[str, Any]  # the settings as the catalog stores them (only what was set)
    version: str = ""  # the catalog row's "xmin:ctid": changes whenever the queue is altered

    settings: settings.Settings = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", settings.Settings.from_stored(self.stored))

    @property
    def dlq(self) -> str:
        """The name of its dead-letter queue (whether or not max_deliveries is set)."""
        return self.settings.dlq_name(self.channel)


def check_channel(channel: str | None) -> str:
    problem = channel_problem(channel)
    if problem is not None:
        _db.fail(problem.sqlstate, problem.message, hint=problem.hint)
    assert channel is not None
    return channel


def _catalog() -> str:
    return _db.schema() + ".pg_mq_config_catalog"


_QUEUE_COLUMNS = (
    "channel, table_name, payload_type::pg_catalog.oid AS type_oid,"
    " pg_catalog.format_type(payload_type, NULL) AS type_sql, settings,"
    " xmin::text || ':' || ctid::text AS version"
)


def _queue(row: dict[str, Any]) -> Queue:
    return Queue(
        channel=row["channel"],
        table=_db.schema() + "." + _db.ident(row["table_name"]),
        type_oid=int(row["type_oid"]),
        type_sql=row["type_sql"],
        stored=json.loads(row["settings"]),
        version=row["version"],
    )


def find(channel: str | None, lock: bool = False) -> Queue | None:
    """The queue named ``channel``, or None. ``lock`` locks its catalog row."""
    if channel is None:
        _db.fail("22004", "channel must not be NULL")
    sql = f"SELECT {_QUEUE_COLUMNS} FROM {_catalog()} WHERE channel = $1"
    if lock:
        sql += " FOR UPDATE"
    rows = _db.run(sql, ("text",), (channel,))
    return _queue(rows[0]) if rows else None


def with_send_functions() -> list[Queue]:
    """Every queue that has generated send functions, in byte order of the channel:
    the queues the dispatchers know (see build_dispatch)."""
    return [
        _queue(r)
        for r in _db.run(
            f"SELECT {_QUEUE_COLUMNS} FROM {_catalog()} WHERE send_call IS NOT NULL"
            ' ORDER BY channel COLLATE pg_catalog."C"'
        )
    ]


def get(channel: str | None, lock: bool = False) -> Queue:
    """The queue named ``channel``; an unknown channel is an error (42704)."""
    queue = find(channel, lock)
    if queue is None:
        _db.fail(
            "42704",
            f'queue "{channel}" does not exist',
            hint="SELECT channel FROM pg_mq_config_catalog lists the queues.",
        )
    return queue


def create_queue(channel: str | None, type_name: str | None) -> dict[str, Any]:
    """Create the queue table, its indexes and notify trigger, and the catalog row."""
    channel = check_channel(channel)
    type_oid, type_sql = payload_types.resolve(type_name)
    # A second creator of the same channel waits here, then sees the first one's
    # queue. A table lock that needs more than SELECT: no other role can hold it.
    _db.ddl(f"LOCK TABLE {_catalog()} IN SHARE ROW EXCLUSIVE MODE")
    if find(channel) is not None:
        _db.fail("42710", f'queue "{channel}" already exists')
    schema = _db.schema()
    table = table_name(channel)
    clash = _db.run(
        "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
        " ON n.oid = c.relnamespace WHERE c.relname = $1"
        " AND pg_catalog.quote_ident(n.nspname) = $2",
        ("name", "text"),
        (table, schema),
    )
    if clash:
        _db.fail("42P07", f'relation "{table}" already exists in schema {schema}')
    qualified = schema + "." + _db.ident(table)
    sequence = _db.literal(schema + ".pg_mq_msg_id_seq")
    _db.ddl(
        f"CREATE TABLE {qualified} ("
        f" msg_id bigint NOT NULL DEFAULT pg_catalog.nextval({sequence}::pg_catalog.regclass),"
        " sent_at timestamptz NOT NULL DEFAULT pg_catalog.now(),"
        " sent_by name NOT NULL DEFAULT SESSION_USER,"
        " delivered_at timestamptz,"
        " visible_at timestamptz NOT NULL DEFAULT pg_catalog.now(),"
        " read_count integer NOT NULL DEFAULT 0,"
        " priority integer NOT NULL DEFAULT 0,"
        " dedup_key text,"
        " headers jsonb,"
        f" payload {type_sql} NOT NULL,"
        " PRIMARY KEY (msg_id))"
        # Room on every page for the updates a message goes through.
        " WITH (fillfactor = 80)"
    )
    # Messages never leased nor delayed (visible since they were sent), in delivery
    # order; leased, delayed and given-back ones (visible_at moved past sent_at) by
    # due time. A claim reads both with an index condition on its own timestamp,
    # so it never wades through messages in flight. The row alone decides which
    # index holds it: a direct INSERT cannot put a message in the wrong one.
    _db.ddl(f"CREATE INDEX ON {qualified} (priority DESC, msg_id) WHERE {UNTOUCHED}")
    _db.ddl(f"CREATE INDEX ON {qualified} (visible_at) WHERE {SCHEDULED}")
    # One live message per dedup_key: a second sender of the key waits for the first
    # one's transaction (INSERT ... ON CONFLICT), which no other role can hold up.
    _db.ddl(f"CREATE UNIQUE INDEX ON {qualified} (dedup_key) WHERE {DEDUP_LIVE}")
    # Queue tables churn: vacuum them long before the default 20% of dead rows.
    _db.ddl(
        f"ALTER TABLE {qualified} SET (autovacuum_vacuum_scale_factor = 0.01,"
        " autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_insert_scale_factor = 0.05)"
    )
    _create_trigger(qualified, channel)
    rows = _db.run(
        f"INSERT INTO {_catalog()} (channel, table_name, payload_type)"
        " VALUES ($1, $2, $3::pg_catalog.oid::pg_catalog.regtype) RETURNING *",
        ("text", "name", "int8"),
        (channel, table, type_oid),
    )
    build_send_function(get(channel))
    build_dispatch()
    return rows[0]


TEXT_OIDS = (25, 1043, 705)  # text, varchar, unknown: parsed by the queue type's input
_SEND_ARGS = "(pg_catalog.text, pg_catalog.oid, pg_catalog.interval, pg_catalog.int4, pg_catalog.jsonb)"


TEXT_ARRAY_OIDS = (1009, 1015)  # text[], varchar[]
_BATCH_ARGS = "(pg_catalog.anyarray, pg_catalog.oid, pg_catalog.interval, pg_catalog.int4, pg_catalog.jsonb)"


def send_function(channel: str) -> str:
    """The qualified name of ``channel``'s generated send function (one per channel
    name, so a re-created queue replaces its predecessor's)."""
    digest = hashlib.sha256(channel.encode()).hexdigest()[:32]
    return f"{_db.schema()}._pg_mq_send_{digest}"


def batch_function(channel: str) -> str:
    """The qualified name of ``channel``'s generated batch send function."""
    digest = hashlib.sha256(channel.encode()).hexdigest()[:32]
    return f"{_db.schema()}._pg_mq_send_batch_{digest}"


def build_send_function(queue: Queue) -> None:
    """Generate the queue's send function and record the call in its catalog row.

    pg_mq_send_message (PL/pgSQL) runs the call for a send without dedup_key, so
    the common send never enters PL/Python; the function's plan is cached per
    backend. It is a plain INSERT with what Python decided baked in: the table,
    the payload type (by its schema-qualified name), priority 0 when the queue
    ignores priorities. It returns NULL, inserting nothing, when the payload's
    type is neither the queue's nor text: the wrapper then takes the Python
    path, which gives the error. Whatever changes what it was built from (the
    catalog row's table, type or settings, or the row itself) rebuilds or drops
    it in the same transaction: the catalog's trigger, see catalog_changed. So
    a transaction that starts after the change never runs the old function.
    (Until 2026-11 every send checked its catalog row in the INSERT instead, at
    a sixth of the send's cost, README Benchmark.) It runs with the caller's
    rights (the queue table's privileges decide, as for a direct INSERT); it
    belongs to the extension's owner like the catalog that names it, so no
    sender can change what other senders run.
    """
    row = _db.run(
        "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname) AS type_name,"
        " t.typarray::pg_catalog.int8 AS array_oid"
        f" FROM {_catalog()} c, pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace"
        " WHERE c.channel = $1 AND t.oid = c.payload_type",
        ("text",),
        (queue.channel,),
    )[0]
    accepted = dict.fromkeys((queue.type_oid, *TEXT_OIDS))  # a text queue's type once
    kinds = " AND ".join(f"$2 OPERATOR(pg_catalog.<>) {oid}::pg_catalog.oid" for oid in accepted)
    priority = "$4" if queue.settings.priority_ordering else "0"
    body = (
        "DECLARE id pg_catalog.int8; BEGIN"
        f" IF $2 IS NULL OR ({kinds}) THEN RETURN NULL; END IF;"
        f" INSERT INTO {queue.table} (payload, visible_at, priority, headers)"
        f" VALUES ($1::{row['type_name']},"
        " pg_catalog.now() OPERATOR(pg_catalog.+) COALESCE($3, '0'::pg_catalog.interval), "
        f"{priority}, $5)"
        " RETURNING msg_id INTO id;"
        " RETURN id; END"
    )
    name = send_function(queue.channel)
    _db.ddl(
        f"CREATE OR REPLACE FUNCTION {name}{_SEND_ARGS} RETURNS pg_catalog.int8 LANGUAGE plpgsql AS {_db.literal(body)}"
    )
    _db.ddl(
        f"COMMENT ON FUNCTION {name}{_SEND_ARGS} IS"
        f" {_db.literal('Generated: pg_mq_send_message of queue ' + queue.channel)}"
    )
    _db.run(
        f"UPDATE {_catalog()} SET send_call = $2 WHERE channel = $1",
        ("text", "text"),
        (queue.channel, f"SELECT {name}($1, $2, $3, $4, $5)"),
    )
    _build_batch_function(queue, row["type_name"], int(row["array_oid"]), priority)


def _build_batch_function(queue: Queue, type_name: str, array_oid: int, priority: str) -> None:
    """Generate the queue's batch send function, which pg_mq_send_batch calls
    through ``_pg_mq_send_batch_dispatch``: the INSERT that ``send_batch_sql``
    builds, on the typed array as it came ($1; $2 its type, then delay, priority,
    headers), planned once per backend instead of a PL/Python call and an EXECUTE
    per batch. An array of the queue's own type goes in as it is, text[] and
    varchar[] through the type's input. It returns the new ids in input order, or
    NULL, inserting nothing, for any other array type: the wrapper then takes
    the Python path. The wrapper sends only non-empty one-dimensional arrays
    without NULLs here. It is rebuilt and dropped with the send function.
    """

    def insert(payload: str) -> str:
        # Rows are inserted in ordinality order, so ids ascend in input order.
        return (
            f"WITH i AS (INSERT INTO {queue.table} (payload, visible_at, priority, headers)"
            f" SELECT {payload}, pg_catalog.now() OPERATOR(pg_catalog.+) COALESCE($3, '0'::pg_catalog.interval),"
            f" {priority}, $5 FROM pg_catalog.unnest($1) WITH ORDINALITY AS u(p, i)"
            " ORDER BY u.i RETURNING msg_id)"
            " SELECT pg_catalog.array_agg(i.msg_id ORDER BY i.msg_id) INTO ids FROM i;"
        )

    text_arrays = " OR ".join(f"$2 OPERATOR(pg_catalog.=) {oid}::pg_catalog.oid" for oid in TEXT_ARRAY_OIDS)
    branches = []
    if array_oid and array_oid not in TEXT_ARRAY_OIDS:
        branches.append(f"$2 OPERATOR(pg_catalog.=) {array_oid}::pg_catalog.oid THEN {insert('u.p')}")
    branches.append(f"{text_arrays} THEN {insert(f'u.p::pg_catalog.text::{type_name}')}")
    body = f"DECLARE ids pg_catalog.int8[]; BEGIN IF {' ELSIF '.join(branches)} END IF; RETURN ids; END"
    name = batch_function(queue.channel)
    _db.ddl(
        f"CREATE OR REPLACE FUNCTION {name}{_BATCH_ARGS} RETURNS pg_catalog.int8[] LANGUAGE plpgsql"
        f" AS {_db.literal(body)}"
    )
    _db.ddl(
        f"COMMENT ON FUNCTION {name}{_BATCH_ARGS} IS"
        f" {_db.literal('Generated: pg_mq_send_batch of queue ' + queue.channel)}"
    )


_DISPATCH_ARGS = (  # as sql/incremental/030-send-dispatch.sql declares them
    "(in_channel pg_catalog.text, in_payload pg_catalog.text, in_type pg_catalog.oid,"
    " delay pg_catalog.interval, priority pg_catalog.int4, headers pg_catalog.jsonb)"
)
_BATCH_DISPATCH_ARGS = (  # likewise
    "(in_channel pg_catalog.text, in_payloads pg_catalog.anyarray, in_type pg_catalog.oid,"
    " delay pg_catalog.interval, priority pg_catalog.int4, headers pg_catalog.jsonb)"
)
_CLAIM_ARGS = "(pg_catalog.int4, pg_catalog.timestamptz, pg_catalog.text)"  # n, now, channel
_READ_ARGS = (  # n, visibility timeout, now, channel, wait
    "(pg_catalog.int4, pg_catalog.interval, pg_catalog.timestamptz, pg_catalog.text, pg_catalog.interval)"
)
_DISPATCH_LEAF = 4  # channels compared one by one; more are split in halves


def build_dispatch() -> None:
    """Regenerate ``_pg_mq_send_dispatch`` and ``_pg_mq_send_batch_dispatch``, which
    pg_mq_send_message and pg_mq_send_batch call directly.

    Each maps a channel to a call of the queue's generated (batch) send function, with a
    balanced tree of comparisons (byte order) down to a few equality tests, so
    PL/pgSQL plans each call once per backend where the wrapper used to look up
    send_call and EXECUTE it, parsed and planned on every send. A channel it does
    not know gives NULL (the wrapper then falls back to send_call). It depends
    only on which queues have a send function, so settings changes leave it
    alone (they rebuild the send functions, see catalog_changed).
    The catalog lock makes concurrent creates and drops regenerate it one at a
    time (two concurrent replacements of one function would fail).
    """
    _db.ddl(f"LOCK TABLE {_catalog()} IN SHARE ROW EXCLUSIVE MODE")
    known = with_send_functions()
    channels = [q.channel for q in known]
    schema = _db.schema()
    for name, args, returns, function in (
        ("_pg_mq_send_dispatch", _DISPATCH_ARGS, "pg_catalog.int8", send_function),
        ("_pg_mq_send_batch_dispatch", _BATCH_DISPATCH_ARGS, "pg_catalog.int8[]", batch_function),
    ):
        tree = _dispatch_tree(channels, "$1", lambda c, f=function: f"RETURN {f(c)}($2, $3, $4, $5, $6);")
        body = f"BEGIN {tree} RETURN NULL; END"
        _db.ddl(
            f"CREATE OR REPLACE FUNCTION {schema}.{name}{args} RETURNS {returns} LANGUAGE plpgsql"
            f" AS {_db.literal(body)}"
        )
    _build_claim_dispatch(known)


# The claim and ack dispatchers' settings (see _build_claim_dispatch); the installed
# ones (sql/incremental/041-claim-dispatch.sql) have the same. jit = off: a disabled
# scan adds a huge cost to a plan that has no other way, and JIT would compile it.
CLAIM_SETTINGS = (
    "SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan"
    " SET enable_seqscan = off SET enable_bitmapscan = off SET jit = off"
)


def _build_claim_dispatch(known: list[Queue]) -> None:
    """Regenerate the dispatchers that pg_mq_get_msg_text, pg_mq_pop, pg_mq_read and
    pg_mq_ack call: for a call whose cheap checks pass, a tree over the channels (as
    for sends) down to the queue's statement itself, written in; for anything else,
    for a claim of more than messages.GENERIC_MAX, and for a claim from a queue with
    max_deliveries (which first dead-letters what is due), the Python path: the
    statement the Python half checks and builds, EXECUTEd (for ack, the Python half
    itself). The statements depend on the queues' settings, so every settings change
    regenerates them (see catalog_changed). Called by build_dispatch, under its lock.

    PL/pgSQL prepares each written-in statement once per backend; the dispatchers make
    it plan it once too (a generic plan: planning a claim cost more than running it),
    with sequential and bitmap scans off, so that plan walks the indexes in delivery
    order whatever the table held when it was made (see messages.select_ready).
    """
    from . import leases, messages  # they import this module

    queues = {q.channel: q for q in known}  # one catalog read for all of them
    # A queue with max_deliveries claims through Python (it dead-letters first); an
    # ack depends on no such setting, so every queue gets its ack statement.
    claimable = [c for c, q in queues.items() if not q.settings.max_deliveries]
    schema = _db.schema()
    positive = "$1 OPERATOR(pg_catalog.>) 0"
    claim = f"{positive} AND $1 OPERATOR(pg_catalog.<=) {messages.GENERIC_MAX}"
    # A claim that locked fewer than asked for runs its second statement for the rest:
    # unbounded, past what others hold, with a new snapshot (messages.select_ready).
    got = "pg_mq_got"
    short = f"{got} OPERATOR(pg_catalog.<) $1"
    rest = f"($1 OPERATOR(pg_catalog.-) {got})::pg_catalog.int4"

    def then_rest(first: str, rest_sql: str) -> str:
        counted = f"GET DIAGNOSTICS {got} = ROW_COUNT;"
        return f"RETURN QUERY {first}; {counted} IF {short} THEN RETURN QUERY {rest_sql}; END IF;"

    for name, args, returns, key, checks, statement, fallback, which in (
        (
            "_pg_mq_get_dispatch",
            _CLAIM_ARGS,
            f"SETOF {schema}.pg_mq_msg_text",
            "$3",
            claim,
            lambda q, **rest_of: messages.get_statement(q, True, generic=True, **rest_of),
            f"EXECUTE {schema}._pg_mq_get_sql($3, %s, true, %s) USING %s, $2",
            claimable,
        ),
        (
            "_pg_mq_pop_dispatch",
            _CLAIM_ARGS,
            f"SETOF {schema}.pg_mq_leased",
            "$3",
            claim,
            lambda q, **rest_of: leases.pop_statement(q, True, generic=True, **rest_of),
            f"EXECUTE {schema}._pg_mq_pop_sql($3, %s, true, %s) USING %s, $2",
            claimable,
        ),
        (
            "_pg_mq_read_dispatch",
            _READ_ARGS,
            f"SETOF {schema}.pg_mq_leased",
            "$4",
            f"{claim} AND pg_catalog.date_part('epoch', $2) OPERATOR(pg_catalog.>) 0"
            " AND ($5 IS NULL OR pg_catalog.date_part('epoch', $5) OPERATOR(pg_catalog.>=) 0)",
            lambda q, **rest_of: leases.read_statement(q, True, generic=True, **rest_of),
            f"EXECUTE {schema}._pg_mq_read_sql($4, %s, $2, $5, true, %s) USING %s, $2, $3",
            claimable,
        ),
        (
            "_pg_mq_ack_dispatch",
            "(pg_catalog.int8[], pg_catalog.text)",
            "SETOF pg_catalog.int8",
            "$2",
            "pg_catalog.array_ndims($1) OPERATOR(pg_catalog.=) 1 AND pg_catalog.array_position($1, NULL) IS NULL",
            leases.ack_statement,
            f"SELECT * FROM {schema}._pg_mq_ack($2, $1)",  # a set-returning Python half
            list(queues),
        ),
    ):
        if name == "_pg_mq_ack_dispatch":
            tree = _dispatch_tree(which, key, lambda c, stmt=statement: f"RETURN QUERY {stmt(queues[c])}; RETURN;")
            body = f"BEGIN IF {checks} THEN {tree} END IF; RETURN QUERY {fallback}; END"
        else:
            tree = _dispatch_tree(
                which,
                key,
                lambda c, stmt=statement: (
                    f"RETURN QUERY {stmt(queues[c])}; RETURN;"
                    if queues[c].settings.fifo_group_header  # no second statement (select_ready)
                    else then_rest(stmt(queues[c]), stmt(queues[c], beyond=True, count=rest)) + " RETURN;"
                ),
            )
            python = then_rest(fallback % ("$1", "false", "$1"), fallback % (rest, "true", rest))
            body = f"DECLARE {got} pg_catalog.int8; BEGIN IF {checks} THEN {tree} END IF; {python} END"
        # Pinned, unlike the send dispatchers: a claim's cost dwarfs the SET clauses'.
        _db.ddl(
            f"CREATE OR REPLACE FUNCTION {schema}.{name}{args} RETURNS {returns} LANGUAGE plpgsql"
            f" {CLAIM_SETTINGS} AS {_db.literal(body)}"
        )


def _dispatch_tree(channels: list[str], key: str, leaf: Callable[[str], str]) -> str:
    """A balanced tree of comparisons of ``key`` with the channels (byte order) down to
    a few equality tests, each running ``leaf(channel)``."""
    if not channels:
        return "NULL;"
    if len(channels) <= _DISPATCH_LEAF:
        return " ".join(f"IF {key} OPERATOR(pg_catalog.=) {_db.literal(c)} THEN {leaf(c)} END IF;" for c in channels)
    mid = len(channels) // 2
    return (
        f'IF {key} OPERATOR(pg_catalog.<) {_db.literal(channels[mid])} COLLATE pg_catalog."C" THEN'
        f" {_dispatch_tree(channels[:mid], key, leaf)} ELSE {_dispatch_tree(channels[mid:], key, leaf)} END IF;"
    )


def _create_trigger(qualified: str, channel: str, enabled: bool = True) -> None:
    sequence = _db.literal(_db.schema() + ".pg_mq_msg_id_seq")
    _db.ddl(
        f"CREATE TRIGGER pg_mq_notify AFTER INSERT ON {qualified} FOR EACH STATEMENT"
        f" EXECUTE FUNCTION {_db.schema()}.pg_mq_notify_trigger({_db.literal(channel)}, {sequence})"
    )
    if not enabled:
        _db.ddl(f"ALTER TABLE {qualified} DISABLE TRIGGER pg_mq_notify")


def drop_queue(channel: str | None, force: bool | None) -> bool:
    """Drop a queue. One still holding undelivered messages needs ``force``."""
    # Taken first: build_dispatch below needs it, and taking it after the row
    # lock would let two concurrent drops deadlock.
    _db.ddl(f"LOCK TABLE {_catalog()} IN SHARE ROW EXCLUSIVE MODE")
    queue = get(check_channel(channel), lock=True)
    users = [
        r["channel"]
        for r in _db.run(
            f"SELECT channel FROM {_catalog()} WHERE channel <> $1"
            " AND (settings ->> 'max_deliveries') IS NOT NULL"
            " AND COALESCE(settings ->> 'dead_letter_queue', channel || '_dlq') = $1",
            ("text",),
            (queue.channel,),
        )
    ]
    if users:
        _db.fail(
            "55006",
            f'queue "{queue.channel}" is the dead-letter queue of {", ".join(repr(u) for u in users)}',
            hint="Reset their max_deliveries (or point dead_letter_queue elsewhere) first.",
        )
    from . import events  # events imports this module

    watches = events.watches_into(queue.channel)
    if watches and not force:
        _db.fail(
            "55006",
            f'queue "{queue.channel}" is the target of '
            + ", ".join(f"watch {w['watch_id']} of table {w['tbl']}" for w in watches),
            hint=f"Unwatch first (SELECT pg_mq_unwatch(table, '{queue.channel}')),"
            " or drop it with force => true, which removes those watches too.",
        )
    for w in watches:
        events.remove_watch(int(w["watch_id"]))
    if not force and table_exists(queue):
        waiting = _db.run(f"SELECT pg_catalog.count(*) AS n FROM {queue.table} WHERE delivered_at IS NULL")[0]["n"]
        if waiting:
            _db.fail(
                "55006",
                f'queue "{channel}" still holds {waiting} undelivered message(s)',
                hint="Read or purge them first, or call pg_mq_drop_queue(channel, force => true).",
            )
    _db.ddl(f"DROP TABLE IF EXISTS {queue.table}")  # IF EXISTS: a table dropped by hand
    # The catalog's trigger (catalog_changed) drops the generated functions.
    _db.run(f"DELETE FROM {_catalog()} WHERE channel = $1", ("text",), (channel,))
    _db.forget(queue.table)
    return True


def purge_queue(channel: str | None) -> int:
    """Delete every message of a queue; returns how many were deleted.

    TRUNCATE when it is safe and free: no other transaction holds a lock on the queue
    table at that moment (no sender, consumer or reader is inside a transaction that
    used it), the purge runs in READ COMMITTED (a snapshot older than the lock could
    miss messages committed since, which TRUNCATE would remove uncounted), nothing
    depends on rows going one by one (no DELETE trigger, rule or foreign key on the
    table), and no TRUNCATE trigger of the user's would fire where a purge never fired
    one. It leaves no dead rows and no dead index entries behind, so claims right
    after a purge do not step over them until a vacuum. Its lock is held until the
    purge's transaction ends. Otherwise DELETE, as before: it leaves alone what
    uncommitted senders are adding and takes no table lock.
    """
    queue = get(check_channel(channel))
    if _truncatable(queue):
        try:
            with _db.subtransaction():
                _db.ddl(f"LOCK TABLE {queue.table} IN ACCESS EXCLUSIVE MODE NOWAIT")
                n = _db.run(f"SELECT pg_catalog.count(*) AS n FROM {queue.table}")[0]["n"]
                _db.ddl(f"TRUNCATE {queue.table}")
            return int(n)
        except _db.SPIError as exc:
            # 55P03: someone holds a lock on it; 55006: this session still uses it (an
            # open cursor, pending trigger events); 0A000: something references it.
            if getattr(exc, "sqlstate", None) not in ("55P03", "55006", "0A000"):
                raise
    return int(
        _db.run(f"WITH d AS (DELETE FROM {queue.table} RETURNING 1) SELECT pg_catalog.count(*) AS n FROM d")[0]["n"]
    )


def _truncatable(queue: Queue) -> bool:
    """Whether a purge of ``queue`` may TRUNCATE (see purge_queue), before any lock."""
    return bool(
        _db.run(
            "SELECT pg_catalog.current_setting('transaction_isolation') = 'read committed'"
            " AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger WHERE tgrelid = c.oid AND NOT tgisinternal"
            " AND (tgtype::pg_catalog.int4 OPERATOR(pg_catalog.&) 40) <> 0)"  # TRIGGER_TYPE_DELETE | _TRUNCATE
            " AND NOT EXISTS (SELECT FROM pg_catalog.pg_rewrite WHERE ev_class = c.oid AND ev_type = '4')"  # DELETE
            " AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE confrelid = c.oid AND contype = 'f')"
            " AS ok FROM pg_catalog.pg_class c WHERE c.oid = $1::pg_catalog.regclass",
            ("text",),
            (queue.table,),
        )[0]["ok"]
    )


def table_exists(queue: Queue) -> bool:
    return bool(_db.run("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS ok", ("text",), (queue.table,))[0]["ok"])


# The comment that marks a queue table's fifo group index, with the header key it serves.
_FIFO_MARK = "pg_mq fifo_group_header: "


def fifo_index(queue: Queue) -> str | None:
    """The header key that ``queue``'s fifo group index serves, or None without one."""
    rows = _db.run(
        "SELECT pg_catalog.obj_description(i.indexrelid, 'pg_class') AS mark FROM pg_catalog.pg_index i"
        " WHERE i.indrelid = pg_catalog.to_regclass($1) AND"
        " pg_catalog.starts_with(pg_catalog.obj_description(i.indexrelid, 'pg_class'), $2)",
        ("text", "text"),
        (queue.table, _FIFO_MARK),
    )
    return rows[0]["mark"][len(_FIFO_MARK) :] if rows else None


def fifo_key(group: str, alias: str = "") -> str:
    """SQL of the group of a message (``alias``'s): its header ``group``'s value as text."""
    column = f"{alias}.headers" if alias else "headers"
    return f"({column} OPERATOR(pg_catalog.->>) {_db.literal(group)})"


def ensure_fifo_index(queue: Queue) -> None:
    """Give a queue with fifo_group_header an index of its waiting messages by group and
    msg_id, so a claim finds whether a message heads its group with one index probe
    (messages.select_ready) instead of reading every waiting message; drop it when the
    setting goes or changes. Only when the setting changes: building it reads the table.
    The group is indexed by its md5 (a header value can be longer than a btree entry may
    be); the probe compares the value itself too."""
    group = queue.settings.fifo_group_header
    have = fifo_index(queue)
    if have == group or not table_exists(queue):
        return
    if have is not None:
        for row in _db.run(
            "SELECT i.indexrelid::pg_catalog.regclass::pg_catalog.text AS name FROM pg_catalog.pg_index i"
            " WHERE i.indrelid = pg_catalog.to_regclass($1)"
            " AND pg_catalog.obj_description(i.indexrelid, 'pg_class') = $2",
            ("text", "text"),
            (queue.table, _FIFO_MARK + have),
        ):
            _db.ddl(f"DROP INDEX {row['name']}")
    if group is None:
        return
    key = fifo_key(group)
    oid = _db.run("SELECT pg_catalog.to_regclass($1)::pg_catalog.oid::pg_catalog.int8 AS n", ("text",), (queue.table,))
    # Named by the table's oid (a table renamed by hand keeps it) and the key.
    name = _db.ident(f"pg_mq_fifo_{oid[0]['n']}_{hashlib.sha256(group.encode()).hexdigest()[:16]}")
    _db.ddl(
        f"CREATE INDEX {name} ON {queue.table} (pg_catalog.md5({key}), msg_id)"
        f" WHERE delivered_at IS NULL AND {key} IS NOT NULL"
    )
    _db.ddl(f"COMMENT ON INDEX {_db.schema()}.{name} IS {_db.literal(_FIFO_MARK + group)}")  # queue tables' schema


def rebuild_triggers() -> int:
    """Recreate every queue's notify trigger (after a restore); returns how many."""
    _db.ddl(f"LOCK TABLE {_catalog()} IN SHARE ROW EXCLUSIVE MODE")  # see build_dispatch
    done = 0
    for row in _db.run(f"SELECT channel FROM {_catalog()} ORDER BY channel"):
        queue = get(row["channel"])
        if not table_exists(queue):
            _db.warn(f'queue "{queue.channel}" has no table {queue.table}; skipped')
            continue
        _db.ddl(f"DROP TRIGGER IF EXISTS pg_mq_notify ON {queue.table}")
        _create_trigger(queue.table, queue.channel, queue.settings.notify)
        ensure_fifo_index(queue)
        build_send_function(queue)
        done += 1
    build_dispatch()
    return done


def catalog_changed(old: dict[str, Any], new: dict[str, Any] | None) -> None:
    """The catalog's row trigger: keep the generated send functions in step with
    the rows they were built from, in the same transaction.

    It fires after an UPDATE of a row's channel, table_name, payload_type or
    settings (pg_mq_set_queue_config, or by hand) and after a DELETE
    (pg_mq_drop_queue, or by hand). A deleted or renamed channel loses its
    functions and its place in the dispatchers; the row as it now is gets its
    functions built afresh, and the claim dispatchers its statements. Only the
    catalog's owner can write the catalog. Whoever writes it through this
    package takes the catalog's lock first (see build_dispatch), so two writers
    never wait for each other's row lock while holding what the other needs.
    """
    if new is None or new["channel"] != old["channel"]:
        _db.ddl(f"DROP FUNCTION IF EXISTS {send_function(old['channel'])}{_SEND_ARGS}")
        _db.ddl(f"DROP FUNCTION IF EXISTS {batch_function(old['channel'])}{_BATCH_ARGS}")
    if new is not None:
        queue = find(new["channel"])
        if queue is not None:
            ensure_fifo_index(queue)
            build_send_function(queue)
    build_dispatch()  # the claim dispatchers hold the queues' statements


default_dlq = settings.default_dlq
