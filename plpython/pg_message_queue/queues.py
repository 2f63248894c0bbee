"""Queue administration: create, drop, purge, look up, grant, rebuild triggers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import _db, settings
from .names import channel_problem, table_name

BYTEA_OID = 17
DEDUP_LIVE = "dedup_key IS NOT NULL AND delivered_at IS NULL"  # the dedup index's predicate
# The predicates of the two read indexes (see create_queue); claims repeat them verbatim.
UNTOUCHED = "delivered_at IS NULL AND visible_at <= sent_at"
SCHEDULED = "delivered_at IS NULL AND visible_at > sent_at"
PRIVILEGES = ("send", "receive", "all")


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


def find(channel: str | None, lock: bool = False) -> Queue | None:
    """The queue named ``channel``, or None. ``lock`` locks its catalog row."""
    if channel is None:
        _db.fail("22004", "channel must not be NULL")
    sql = (
        "SELECT table_name, payload_type::pg_catalog.oid AS type_oid,"
        " pg_catalog.format_type(payload_type, NULL) AS type_sql, settings,"
        " xmin::text || ':' || ctid::text AS version"
        f" FROM {_catalog()} WHERE channel = $1"
    )
    if lock:
        sql += " FOR UPDATE"
    rows = _db.run(sql, ("text",), (channel,))
    if not rows:
        return None
    row = rows[0]
    return Queue(
        channel=channel,
        table=_db.schema() + "." + _db.ident(row["table_name"]),
        type_oid=int(row["type_oid"]),
        type_sql=row["type_sql"],
        stored=json.loads(row["settings"]),
        version=row["version"],
    )


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


def _resolve_type(type_name: str | None) -> tuple[int, str]:
    """(oid, SQL spelling) of a payload type given by name; errors name the culprit."""
    if type_name is None:
        _db.fail("22004", "payload type must not be NULL")
    rows = None
    try:
        with _db.subtransaction():
            rows = _db.run(
                "SELECT t.oid, t.typtype, t.typisdefined,"
                " pg_catalog.format_type(t.oid, NULL) AS type_sql"
                " FROM pg_catalog.pg_type t WHERE t.oid = pg_catalog.to_regtype($1)",
                ("text",),
                (type_name,),
            )
    except _db.SPIError:
        rows = None
    if not rows:
        _db.fail("42704", f'payload type "{type_name}" does not exist')
    row = rows[0]
    if row["typtype"] == "p" or not row["typisdefined"]:
        _db.fail("42P16", f'payload type "{type_name}" is a pseudo-type or shell type')
    _check_type_trusted(int(row["oid"]), row["type_sql"])
    return int(row["oid"]), row["type_sql"]


# One type of a payload type's closure: whether it is temporary, who owns it, and
# the types it is made of (array element, domain base, range subtype, the range of
# a multirange, composite members).
_TYPE_PARTS = """
SELECT pg_catalog.format_type(t.oid, NULL) AS name, r.rolname AS owner, r.rolsuper AS trusted,
    n.nspname ~ '^pg_(toast_)?temp_' AS temp,
    ARRAY(
        SELECT x FROM pg_catalog.unnest(ARRAY[
            t.typelem, t.typbasetype,
            (SELECT g.rngsubtype FROM pg_catalog.pg_range g WHERE g.rngtypid = t.oid),
            (SELECT g.rngtypid FROM pg_catalog.pg_range g WHERE g.rngmultitypid = t.oid)
        ]::pg_catalog.oid[]) AS x WHERE x <> 0
        UNION
        SELECT a.atttypid FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
    )::pg_catalog.int8[] AS parts
FROM pg_catalog.pg_type t
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
JOIN pg_catalog.pg_roles r ON r.oid = t.typowner
WHERE t.oid = $1
"""

# Functions that run on a type's values with the rights of whoever touches them
# (ANALYZE and autovacuum run them as the table owner): its support functions,
# a range's canonical and subtype_diff, what a domain's constraints call, and the
# operators and support functions of its default btree and hash operator classes.
# Returns the ones a superuser does not own, or that live in a temporary schema.
_UNTRUSTED_FUNCTIONS = """
WITH fns(fn, role) AS (
    SELECT f, w FROM pg_catalog.pg_type t, LATERAL (VALUES
        (t.typinput::pg_catalog.oid, 'input function'), (t.typoutput::pg_catalog.oid, 'output function'),
        (t.typreceive::pg_catalog.oid, 'receive function'), (t.typsend::pg_catalog.oid, 'send function'),
        (t.typmodin::pg_catalog.oid, 'typmod_in function'), (t.typmodout::pg_catalog.oid, 'typmod_out function'),
        (t.typanalyze::pg_catalog.oid, 'analyze function'), (t.typsubscript::pg_catalog.oid, 'subscript function')
    ) AS v(f, w) WHERE t.oid = $1
    UNION ALL
    SELECT g.rngcanonical::pg_catalog.oid, 'canonical function' FROM pg_catalog.pg_range g WHERE g.rngtypid = $1
    UNION ALL
    SELECT g.rngsubdiff::pg_catalog.oid, 'subtype_diff function' FROM pg_catalog.pg_range g WHERE g.rngtypid = $1
    UNION ALL
    SELECT CASE d.refclassid WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass THEN d.refobjid
        ELSE (SELECT o.oprcode::pg_catalog.oid FROM pg_catalog.pg_operator o WHERE o.oid = d.refobjid) END,
        'domain constraint ' || pg_catalog.quote_ident(c.conname)
    FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_depend d
        ON d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objid = c.oid
        AND d.refclassid IN ('pg_catalog.pg_proc'::pg_catalog.regclass, 'pg_catalog.pg_operator'::pg_catalog.regclass)
    WHERE c.contypid = $1
    UNION ALL
    SELECT p.amproc::pg_catalog.oid, 'default ' || am.amname || ' operator class'
    FROM pg_catalog.pg_opclass oc JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod
    JOIN pg_catalog.pg_amproc p ON p.amprocfamily = oc.opcfamily AND p.amproclefttype = $1
    WHERE oc.opcdefault AND oc.opcintype = $1 AND am.amname IN ('btree', 'hash')
    UNION ALL
    SELECT o.oprcode::pg_catalog.oid, 'default ' || am.amname || ' operator class'
    FROM pg_catalog.pg_opclass oc JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod
    JOIN pg_catalog.pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amoplefttype = $1
    JOIN pg_catalog.pg_operator o ON o.oid = ao.amopopr
    WHERE oc.opcdefault AND oc.opcintype = $1 AND am.amname IN ('btree', 'hash')
)
SELECT fns.role, p.oid::pg_catalog.regprocedure::text AS fn, r.rolname AS owner,
    n.nspname ~ '^pg_(toast_)?temp_' AS temp
FROM fns JOIN pg_catalog.pg_proc p ON p.oid = fns.fn
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
WHERE NOT r.rolsuper OR n.nspname ~ '^pg_(toast_)?temp_'
ORDER BY 1, 2 LIMIT 1
"""

_TRUST_HINT = (
    "Queue tables belong to the extension's owner, a superuser, who runs these functions"
    " (ANALYZE, autovacuum, pg_dump). Use a type owned by a superuser, or jsonb."
)


def _check_type_trusted(type_oid: int, type_sql: str) -> None:
    """Refuse a payload type that a non-superuser could use to run code as the table
    owner, or to drop the payload column (DROP TYPE ... CASCADE, a temporary type)."""
    seen: set[int] = set()
    todo = [type_oid]
    while todo:
        oid = todo.pop()
        if oid in seen:
            continue
        seen.add(oid)
        part = _db.run(_TYPE_PARTS, ("oid",), (oid,))[0]
        within = "" if oid == type_oid else f" (part of {type_sql})"
        if part["temp"]:
            _db.fail("42P16", f'payload type "{part["name"]}"{within} is a temporary type', hint=_TRUST_HINT)
        if not part["trusted"]:
            _db.fail(
                "42501",
                f'payload type "{part["name"]}"{within} belongs to role "{part["owner"]}", who is not a superuser',
                hint=_TRUST_HINT,
            )
        bad = _db.run(_UNTRUSTED_FUNCTIONS, ("oid",), (oid,))
        if bad:
            fn = bad[0]
            whose = "a temporary function" if fn["temp"] else f'owned by role "{fn["owner"]}", not a superuser'
            _db.fail(
                "42501",
                f'payload type "{part["name"]}"{within} uses {fn["role"]} {fn["fn"]}, {whose}',
                hint=_TRUST_HINT,
            )
        todo.extend(int(x) for x in part["parts"])


def create_queue(channel: str | None, type_name: str | None) -> dict[str, Any]:
    """Create the queue table, its indexes and notify trigger, and the catalog row."""
    channel = check_channel(channel)
    type_oid, type_sql = _resolve_type(type_name)
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
    return rows[0]


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
    if not force and table_exists(queue):
        waiting = _db.run(f"SELECT pg_catalog.count(*) AS n FROM {queue.table} WHERE delivered_at IS NULL")[0]["n"]
        if waiting:
            _db.fail(
                "55006",
                f'queue "{channel}" still holds {waiting} undelivered message(s)',
                hint="Read or purge them first, or call pg_mq_drop_queue(channel, force => true).",
            )
    _db.ddl(f"DROP TABLE IF EXISTS {queue.table}")  # IF EXISTS: a table dropped by hand
    _db.run(f"DELETE FROM {_catalog()} WHERE channel = $1", ("text",), (channel,))
    _db.forget(queue.table)
    return True


def purge_queue(channel: str | None) -> int:
    """Delete every message of a queue; returns how many were deleted."""
    queue = get(check_channel(channel))
    return int(
        _db.run(f"WITH d AS (DELETE FROM {queue.table} RETURNING 1) SELECT pg_catalog.count(*) AS n FROM d")[0]["n"]
    )


def table_exists(queue: Queue) -> bool:
    return bool(_db.run("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS ok", ("text",), (queue.table,))[0]["ok"])


def rebuild_triggers() -> int:
    """Recreate every queue's notify trigger (after a restore); returns how many."""
    done = 0
    for row in _db.run(f"SELECT channel FROM {_catalog()} ORDER BY channel"):
        queue = get(row["channel"])
        if not table_exists(queue):
            _db.warn(f'queue "{queue.channel}" has no table {queue.table}; skipped')
            continue
        _db.ddl(f"DROP TRIGGER IF EXISTS pg_mq_notify ON {queue.table}")
        _create_trigger(queue.table, queue.channel, queue.settings.notify)
        done += 1
    return done


def _check_grant(channel: str | None, role: str | None, privilege: str | None) -> tuple[Queue, str, str]:
    queue = get(check_channel(channel))
    if role is None:
        _db.fail("22004", "role must not be NULL")
    found = _db.run("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", ("name",), (role,))
    if not found:
        _db.fail("42704", f'role "{role}" does not exist')
    if privilege is None:
        _db.fail("22004", "privilege must not be NULL", hint=f"One of {', '.join(PRIVILEGES)}.")
    if privilege not in PRIVILEGES:
        _db.fail(
            "22023",
            f'privilege "{privilege}" is not one of {", ".join(PRIVILEGES)}',
        )
    return queue, _db.ident(role), privilege


# What a sender may see of its own rows: INSERT ... RETURNING and the dedup check
# need these columns, never the payload or headers.
_SENDER_COLUMNS = "msg_id, sent_at, sent_by, delivered_at, visible_at, priority, dedup_key"
# What a sender may set: msg_id, sent_at, sent_by, read_count and delivered_at
# always take their defaults, so a sender cannot forge them.
_SENDER_INSERT = "payload, visible_at, priority, dedup_key, headers"
# What consuming changes: delivery state only. A receiver can never rewrite a
# message (payload, headers, msg_id, sent_by, sent_at, priority, dedup_key).
_RECEIVER_UPDATE = "delivered_at, visible_at, read_count"


def _statements(queue: Queue, role: str, privilege: str, grant: bool) -> list[str]:
    verb, prep = ("GRANT", "TO") if grant else ("REVOKE", "FROM")
    out = []
    if privilege in ("send", "all"):
        out.append(f"{verb} INSERT ({_SENDER_INSERT}), SELECT ({_SENDER_COLUMNS}) ON {queue.table} {prep} {role}")
        if grant:  # one sequence serves every queue: never revoked per queue
            out.append(f"GRANT USAGE ON SEQUENCE {_db.schema()}.pg_mq_msg_id_seq TO {role}")
    if privilege in ("receive", "all"):
        if grant:
            out.append(f"GRANT SELECT, DELETE, UPDATE ({_RECEIVER_UPDATE}) ON {queue.table} TO {role}")
        else:  # a table-wide REVOKE also takes back every column grant
            out.append(f"REVOKE SELECT, UPDATE, DELETE ON {queue.table} FROM {role}")
    if grant:
        out.insert(0, f"GRANT USAGE ON SCHEMA {_db.schema()} TO {role}")
    return out


def grant(channel: str | None, role: str | None, privilege: str | None) -> bool:
    """Let ``role`` send to and/or receive from a queue."""
    queue, role_sql, privilege = _check_grant(channel, role, privilege)
    for statement in _statements(queue, role_sql, privilege, grant=True):
        _db.ddl(statement)
    return True


def revoke(channel: str | None, role: str | None, privilege: str | None) -> bool:
    """Take back what :func:`grant` gave (the schema's USAGE stays)."""
    queue, role_sql, privilege = _check_grant(channel, role, privilege)
    for statement in _statements(queue, role_sql, privilege, grant=False):
        _db.ddl(statement)
    if privilege == "receive":
        # Revoking table-wide SELECT also drops column grants: a sender keeps its own.
        still_sends = _db.run(
            "SELECT pg_catalog.has_column_privilege($1, $2, 'payload', 'INSERT') AS ok",
            ("name", "text"),
            (role, queue.table),
        )[0]["ok"]
        if still_sends:
            _db.ddl(f"GRANT SELECT ({_SENDER_COLUMNS}) ON {queue.table} TO {role_sql}")
    return True


default_dlq = settings.default_dlq


def set_queue_config(channel: str | None, key: str | None, value: str | None) -> str:
    """Change one setting of a queue; returns all its settings (jsonb).

    Setting max_deliveries creates the dead-letter queue if it does not exist
    yet (same payload type), and lets the queue's receivers write to it.
    """
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
    )
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
