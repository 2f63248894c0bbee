"""Queue administration: create, drop, purge, look up, grant, rebuild triggers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import _db, settings
from .names import channel_problem, table_name

BYTEA_OID = 17
PRIVILEGES = ("send", "receive", "all")


@dataclass(frozen=True)
class Queue:
    channel: str
    table: str  # schema-qualified, quoted
    type_oid: int
    type_sql: str  # the payload type as SQL text, usable in a cast
    settings: dict[str, Any]
    version: str = ""  # the catalog row's "xmin:ctid": changes whenever the queue is altered


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
        settings=json.loads(row["settings"]),
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
    return int(row["oid"]), row["type_sql"]


def create_queue(channel: str | None, type_name: str | None) -> dict[str, Any]:
    """Create the queue table, its indexes and notify trigger, and the catalog row."""
    channel = check_channel(channel)
    type_oid, type_sql = _resolve_type(type_name)
    # A second creator of the same channel waits here, then sees the first one's queue.
    _db.run(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pg_mq_create_queue'), pg_catalog.hashtext($1))",
        ("text",),
        (channel,),
    )
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
        " waiting boolean NOT NULL DEFAULT false,"
        " read_count integer NOT NULL DEFAULT 0,"
        " priority integer NOT NULL DEFAULT 0,"
        " dedup_key text,"
        " headers jsonb,"
        f" payload {type_sql} NOT NULL,"
        " PRIMARY KEY (msg_id))"
        # Room on every page for the updates a message goes through.
        " WITH (fillfactor = 80)"
    )
    # Ready messages in delivery order. Leased and delayed messages ("waiting")
    # leave it for the second index, by due time, so reads never wade through them.
    _db.ddl(f"CREATE INDEX ON {qualified} (priority DESC, msg_id) WHERE delivered_at IS NULL AND NOT waiting")
    _db.ddl(f"CREATE INDEX ON {qualified} (visible_at) WHERE delivered_at IS NULL AND waiting")
    _db.ddl(f"CREATE INDEX ON {qualified} (dedup_key) WHERE dedup_key IS NOT NULL AND delivered_at IS NULL")
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
    if not force:
        waiting = _db.run(f"SELECT pg_catalog.count(*) AS n FROM {queue.table} WHERE delivered_at IS NULL")[0]["n"]
        if waiting:
            _db.fail(
                "55006",
                f'queue "{channel}" still holds {waiting} undelivered message(s)',
                hint="Read or purge them first, or call pg_mq_drop_queue(channel, force => true).",
            )
    _db.ddl(f"DROP TABLE {queue.table}")
    _db.run(f"DELETE FROM {_catalog()} WHERE channel = $1", ("text",), (channel,))
    return True


def purge_queue(channel: str | None) -> int:
    """Delete every message of a queue; returns how many were deleted."""
    queue = get(check_channel(channel))
    return int(
        _db.run(f"WITH d AS (DELETE FROM {queue.table} RETURNING 1) SELECT pg_catalog.count(*) AS n FROM d")[0]["n"]
    )


def rebuild_triggers() -> int:
    """Recreate every queue's notify trigger (after a restore); returns how many."""
    done = 0
    for row in _db.run(f"SELECT channel FROM {_catalog()} ORDER BY channel"):
        queue = get(row["channel"])
        exists = _db.run("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS ok", ("text",), (queue.table,))[0]["ok"]
        if not exists:
            _db.warn(f'queue "{queue.channel}" has no table {queue.table}; skipped')
            continue
        _db.ddl(f"DROP TRIGGER IF EXISTS pg_mq_notify ON {queue.table}")
        _create_trigger(queue.table, queue.channel, queue.settings.get("notify", True))
        done += 1
    return done


def _check_grant(channel: str | None, role: str | None, privilege: str | None) -> tuple[Queue, str, str]:
    queue = get(check_channel(channel))
    if role is None:
        _db.fail("22004", "role must not be NULL")
    found = _db.run("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", ("name",), (role,))
    if not found:
        _db.fail("42704", f'role "{role}" does not exist')
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
_SENDER_INSERT = "payload, visible_at, waiting, priority, dedup_key, headers"


def _statements(queue: Queue, role: str, privilege: str, grant: bool) -> list[str]:
    verb, prep = ("GRANT", "TO") if grant else ("REVOKE", "FROM")
    out = []
    if privilege in ("send", "all"):
        out.append(f"{verb} INSERT ({_SENDER_INSERT}), SELECT ({_SENDER_COLUMNS}) ON {queue.table} {prep} {role}")
        if grant:  # one sequence serves every queue: never revoked per queue
            out.append(f"GRANT USAGE ON SEQUENCE {_db.schema()}.pg_mq_msg_id_seq TO {role}")
    if privilege in ("receive", "all"):
        out.append(f"{verb} SELECT, UPDATE, DELETE ON {queue.table} {prep} {role}")
        dlq = find(queue.settings.get("dead_letter_queue") or default_dlq(queue.channel))
        if queue.settings.get("max_deliveries") and dlq is not None:
            out.append(f"{verb} INSERT ON {dlq.table} {prep} {role}")
            if grant:  # the dead-letter queue's notify trigger reads the (shared) sequence
                out.append(f"GRANT SELECT ON SEQUENCE {_db.schema()}.pg_mq_msg_id_seq TO {role}")
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


def default_dlq(channel: str) -> str:
    return channel + "_dlq"


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
    if key == "fifo_group_header" and parsed is not None and not parsed.strip():
        _db.fail("22023", "fifo_group_header must name a header key")
    merged = dict(queue.settings)
    merged[key] = parsed
    if key == "dead_letter_queue" and parsed is not None:
        check_channel(parsed)
        if parsed == queue.channel:
            _db.fail("22023", f'queue "{queue.channel}" cannot be its own dead-letter queue')
    if merged.get("max_deliveries"):
        _ensure_dlq(queue, merged.get("dead_letter_queue") or default_dlq(queue.channel))
    if key == "notify":
        _db.ddl(f"ALTER TABLE {queue.table} {'ENABLE' if parsed else 'DISABLE'} TRIGGER pg_mq_notify")
    rows = _db.run(
        f"UPDATE {_catalog()} SET settings = $2::pg_catalog.jsonb WHERE channel = $1 RETURNING settings",
        ("text", "text"),
        (queue.channel, json.dumps(merged)),
    )
    return rows[0]["settings"]


def _ensure_dlq(queue: Queue, dlq_channel: str) -> None:
    problem = channel_problem(dlq_channel)
    if problem is not None:
        _db.fail(
            problem.sqlstate,
            f'dead-letter queue for "{queue.channel}": {problem.message}',
            hint="Name a shorter one: pg_mq_set_queue_config(channel, 'dead_letter_queue', name).",
        )
    dlq = find(dlq_channel)
    if dlq is None:
        create_queue(dlq_channel, queue.type_sql)
        dlq = get(dlq_channel)
    elif dlq.type_oid != queue.type_oid:
        _db.fail(
            "42804",
            f'dead-letter queue "{dlq_channel}" holds {dlq.type_sql}, queue "{queue.channel}" {queue.type_sql}',
        )
    # Whoever may consume the queue may move its messages to the dead-letter queue.
    for row in _db.run(
        "SELECT DISTINCT a.grantee::pg_catalog.regrole::text AS role"
        " FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a"
        " WHERE c.oid = $1::pg_catalog.regclass AND a.privilege_type = 'DELETE' AND a.grantee <> c.relowner"
        " AND a.grantee <> 0",
        ("text",),
        (queue.table,),
    ):
        _db.ddl(f"GRANT INSERT ON {dlq.table} TO {row['role']}")
        _db.ddl(f"GRANT SELECT ON SEQUENCE {_db.schema()}.pg_mq_msg_id_seq TO {row['role']}")
