"""Change events: watch a table, emit one event per changed row to a target.

A watch is a row of ``pg_mq_watch`` plus one statement-level AFTER trigger per
operation on the watched table (INSERT, UPDATE and DELETE with a transition
table, TRUNCATE without). The trigger function ``_pg_mq_watch_fire`` runs once
per statement: it looks up the watch, the table's columns (at fire time, so
renames and added columns show) and builds one statement that computes every
event from the transition tables and sends them all: one ``pg_notify`` per
event inside one SELECT, one INSERT ... SELECT into the queue table, one
INSERT ... SELECT into ``amqp.outbox``, or one ``pgq.insert_event`` per event inside
one SELECT (a PgQ queue: the companion pg_message_queue_pgq or real PgQ).

The trigger function is SECURITY DEFINER (writers of the table need no rights
on the target) and runs no code a writer or the table's owner chose: the events
are built from the transition tables with built-in functions only, and columns
whose type runs functions a non-superuser owns (output function, cast to json)
are left out of events (and refused at watch time).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from . import _db, queues

OPERATIONS = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
SHAPES = ("keys", "row")
NOTIFY_MAX = 8000  # a NOTIFY payload must be shorter than this many bytes
MAX_CONTEXT_BYTES = 1024
NAME_MAX = 63
NEW, OLD = "pg_mq_new", "pg_mq_old"  # the transition tables' names in the triggers
QUEUE_TYPES = ("jsonb", "json", "text")
_TRIGGER_SUFFIX = {"INSERT": "ins", "UPDATE": "upd", "DELETE": "del", "TRUNCATE": "trunc"}


def trigger_name(watch_id: int, op: str) -> str:
    return f"pg_mq_watch_{watch_id}_{_TRIGGER_SUFFIX[op]}"


# ---- watch time ---------------------------------------------------------------------------


def _caller_may(sql: str, args: tuple[Any, ...], types: tuple[str, ...]) -> bool:
    return bool(_db.run(sql, types, args)[0]["ok"])


def _table(table: str | None, watching: bool = False) -> dict[str, Any]:
    """The watched table (a regclass in its text form), checked: it exists, is a table
    (when ``watching``: not partitioned, not a partition), and the caller owns it."""
    if table is None:
        _db.fail("22004", "table must not be NULL")
    rows = _db.run(
        "SELECT c.relkind::text AS kind, c.oid::pg_catalog.regclass::text AS name, c.oid::pg_catalog.int8 AS oid,"
        " (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = SESSION_USER)"
        " OR pg_catalog.pg_has_role(SESSION_USER, c.relowner, 'USAGE') AS owner, c.relispartition AS part"
        " FROM pg_catalog.pg_class c WHERE c.oid = $1::pg_catalog.regclass",
        ("text",),
        (table,),
    )
    if not rows:
        _db.fail("42P01", f"relation {table} does not exist")
    row = rows[0]
    if row["kind"] not in ("r", "p"):
        _db.fail("42809", f'"{row["name"]}" is not a table; only tables can be watched')
    if not row["owner"]:
        _db.fail(
            "42501",
            f"only the owner of table {row['name']} (or a superuser) may watch it",
            hint="Ask its owner to run the watch.",
        )
    if watching and row["part"]:
        # its triggers would miss the rows written through the partitioned table
        _db.fail(
            "0A000",
            f"{row['name']} is a partition; watch its partitioned table instead",
            hint="A watch of a partitioned table covers every partition, new ones too.",
        )
    return row


def columns(relid: int) -> list[dict[str, Any]]:
    """The table's columns in order: name, type, position in the primary key (or None),
    native (compared with its own =, see below) and collatable."""
    return list(
        _db.run(
            "SELECT a.attname::text AS name, a.atttypid::pg_catalog.int8 AS type,"
            " pg_catalog.array_position(i.indkey::pg_catalog.int2[], a.attnum) AS pk,"
            # a built-in type with a default btree operator class and a deterministic
            # collation: its = is a true equality, and comparing with it is cheap
            " a.atttypid < 16384 AND EXISTS (SELECT FROM pg_catalog.pg_opclass oc"
            " JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod AND am.amname = 'btree'"
            " WHERE oc.opcdefault AND oc.opcintype = a.atttypid)"
            " AND COALESCE((SELECT co.collisdeterministic FROM pg_catalog.pg_collation co"
            " WHERE co.oid = a.attcollation), true) AS native, a.attcollation <> 0 AS collatable"
            " FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_index i"
            " ON i.indrelid = a.attrelid AND i.indisprimary"
            " WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            ("oid",),
            (relid,),
        )
    )


# Turning a value into JSON runs its type's output function (for arrays, ranges,
# domains and composites: their parts' too) or a cast to json. Returns one of those
# owned by a role that is not a superuser, and whether every type involved belongs to
# a superuser (then no one else can add such a cast later: a verdict worth caching).
_JSON_CODE = """
WITH RECURSIVE c(t) AS (
    SELECT $1::pg_catalog.oid
    UNION
    SELECT p.x FROM c JOIN pg_catalog.pg_type ty ON ty.oid = c.t, LATERAL (
        SELECT ty.typelem UNION ALL SELECT ty.typbasetype
        UNION ALL SELECT g.rngsubtype FROM pg_catalog.pg_range g WHERE g.rngtypid = ty.oid
        UNION ALL SELECT g.rngtypid FROM pg_catalog.pg_range g WHERE g.rngmultitypid = ty.oid
        UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped
    ) AS p(x) WHERE p.x <> 0
),
bad AS (
    SELECT pg_catalog.format_type(ty.oid, NULL) AS type,
        'output function ' || f.oid::pg_catalog.regprocedure::text AS fn, r.rolname AS owner
    FROM c JOIN pg_catalog.pg_type ty ON ty.oid = c.t JOIN pg_catalog.pg_proc f ON f.oid = ty.typoutput
    JOIN pg_catalog.pg_roles r ON r.oid = f.proowner WHERE NOT r.rolsuper
    UNION ALL
    SELECT pg_catalog.format_type(k.castsource, NULL), 'cast to json ' || k.castfunc::pg_catalog.regprocedure::text,
        r.rolname
    FROM pg_catalog.pg_cast k JOIN c ON k.castsource = c.t
    JOIN pg_catalog.pg_proc f ON f.oid = k.castfunc JOIN pg_catalog.pg_roles r ON r.oid = f.proowner
    WHERE k.casttarget IN ('pg_catalog.json'::pg_catalog.regtype, 'pg_catalog.jsonb'::pg_catalog.regtype)
        AND NOT r.rolsuper
)
SELECT (SELECT pg_catalog.format('type %s uses %s, owned by role "%s", who is not a superuser', b.type, b.fn, b.owner)
        FROM bad AS b LIMIT 1) AS problem,
    NOT EXISTS (SELECT FROM c JOIN pg_catalog.pg_type ty ON ty.oid = c.t
        JOIN pg_catalog.pg_roles r ON r.oid = ty.typowner WHERE NOT r.rolsuper) AS settled
"""

_trust: dict[int, str | None] = _db.cache({})


def type_problem(type_oid: int) -> str | None:
    """Why values of this type may not go into events (making them JSON would run code a
    non-superuser controls, with the trigger's rights), or None."""
    if type_oid in _trust:
        return _trust[type_oid]
    row = _db.run(_JSON_CODE, ("oid",), (type_oid,))[0]
    if row["settled"]:
        if len(_trust) > 1000:
            _trust.clear()
        _trust[type_oid] = row["problem"]
    return row["problem"]


def _names(what: str, given: list[str] | None, known: list[str], table: str) -> list[str] | None:
    if given is None:
        return None
    out: list[str] = []
    for name in given:
        if name is None:
            _db.fail("22004", f"{what} must not contain NULL")
        if name not in known:
            _db.fail("42703", f'{what}: column "{name}" of table {table} does not exist')
        if name not in out:
            out.append(name)
    return out


def _operations(operations: list[str] | None) -> list[str]:
    if not operations:
        _db.fail("22023", "operations must name at least one of INSERT, UPDATE, DELETE, TRUNCATE")
    out: list[str] = []
    for op in operations:
        name = (op or "").strip().upper()
        if name not in OPERATIONS:
            _db.fail(
                "22023",
                f"unknown operation {op!r}",
                hint="operations are INSERT, UPDATE, DELETE and TRUNCATE.",
            )
        if name not in out:
            out.append(name)
    return [op for op in OPERATIONS if op in out]


def _routing_problem(template: str) -> str | None:
    longest = template
    for field, size in (("{schema}", NAME_MAX), ("{table}", NAME_MAX), ("{op}", 8)):
        longest = longest.replace(field, "x" * size)
    if len(longest.encode()) > 255:
        return (
            f"routing_key {template!r} can exceed 255 bytes once {{schema}} and {{table}} (63 bytes each) are filled in"
        )
    return None


def watch(
    kind: str,
    table_name: str | None,
    target: str | None,
    operations: list[str] | None,
    payload: str | None,
    include: list[str] | None,
    ignore: list[str] | None,
    key_columns: list[str] | None,
    broker_id: int | None = None,
    routing_key: str | None = None,
) -> int:
    """Create or replace the watch of ``relid`` to ``target``; returns its watch_id."""
    table = _table(table_name, watching=True)
    name, relid = table["name"], int(table["oid"])
    ops = _operations(operations)
    if payload not in SHAPES:
        _db.fail("22023", f"payload must be 'keys' or 'row', not {payload!r}")
    cols = columns(relid)
    known = [c["name"] for c in cols]
    include = _names("columns", include, known, name)
    ignore = _names("ignore_columns", ignore, known, name)
    keys = _names("key_columns", key_columns, known, name)
    if keys == []:
        _db.fail("22023", "key_columns must not be empty (leave it NULL for the primary key)")
    if include == []:
        _db.fail("22023", "columns must not be empty (leave it NULL for every column)")
    has_key = bool(keys) or any(c["pk"] is not None for c in cols)
    if payload == "keys" and not has_key:
        _db.fail(
            "22023",
            f"table {name} has no primary key, so payload 'keys' would carry nothing",
            hint="Name the columns that identify a row: key_columns => ARRAY['...'], or use payload => 'row'.",
        )
    for col in cols:
        problem = type_problem(int(col["type"]))
        if problem is not None:
            _db.fail("42501", f'column "{col["name"]}" of table {name} cannot be watched: {problem}')
    target = _check_target(kind, target, broker_id, routing_key)
    rows = _db.run(
        f"INSERT INTO {_db.schema()}.pg_mq_watch AS w (relid, kind, target, broker_id, routing_key, operations,"
        " payload, columns, ignore_columns, key_columns) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT (relid, kind, target) DO UPDATE SET broker_id = EXCLUDED.broker_id,"
        " routing_key = EXCLUDED.routing_key, operations = EXCLUDED.operations, payload = EXCLUDED.payload,"
        " columns = EXCLUDED.columns, ignore_columns = EXCLUDED.ignore_columns, key_columns = EXCLUDED.key_columns"
        " RETURNING watch_id",
        ("oid", "text", "text", "int4", "text", "text[]", "text", "text[]", "text[]", "text[]"),
        (relid, kind, target, broker_id, routing_key, ops, payload, include, ignore, keys),
    )
    watch_id = int(rows[0]["watch_id"])
    _drop_triggers(watch_id, name)
    for table_name in [name, *_partitions(relid)]:
        _create_triggers(watch_id, table_name, ops)
    return watch_id


def _create_triggers(watch_id: int, table: str, ops: list[str]) -> None:
    fire = f"{_db.schema()}._pg_mq_watch_fire({_db.literal(str(watch_id))})"
    for op in ops:
        referencing = {"INSERT": f" REFERENCING NEW TABLE AS {NEW}", "DELETE": f" REFERENCING OLD TABLE AS {OLD}"}
        referencing["UPDATE"] = f" REFERENCING OLD TABLE AS {OLD} NEW TABLE AS {NEW}"
        _db.ddl(
            f"CREATE TRIGGER {_db.ident(trigger_name(watch_id, op))} AFTER {op} ON {table}"
            f"{referencing.get(op, '')} FOR EACH STATEMENT EXECUTE FUNCTION {fire}"
        )


def _partitions(relid: int) -> list[str]:
    """Every partition under a partitioned table (sub-partitioned ones too), as regclass text.
    A statement trigger fires only for the table a statement names: the watch needs its
    triggers on each of them, for the rows written into a partition directly."""
    return [
        r["name"]
        for r in _db.run(
            "SELECT t.relid::pg_catalog.regclass::text AS name"
            " FROM pg_catalog.pg_partition_tree($1::pg_catalog.regclass) t"
            " JOIN pg_catalog.pg_class c ON c.oid = t.relid WHERE t.level > 0 AND c.relkind IN ('r', 'p')"
            " ORDER BY t.level, t.relid",
            ("oid",),
            (relid,),
        )
    ]


def _drop_triggers(watch_id: int, table: str) -> None:
    relid = _db.run("SELECT $1::pg_catalog.regclass::pg_catalog.oid::pg_catalog.int8 AS o", ("text",), (table,))[0]["o"]
    for name in [table, *_partitions(int(relid))]:
        for op in OPERATIONS:
            _db.ddl(f"DROP TRIGGER IF EXISTS {_db.ident(trigger_name(watch_id, op))} ON {name}")


def on_table_ddl() -> None:
    """The event trigger: never fails the user's DDL."""
    try:
        sync_partitions()
    except _db.SPIError as exc:
        if _db.must_propagate(exc):
            raise
        _db.warn(f"pg_message_queue: watches of partitioned tables: {_db.message(exc)}")


def sync_partitions() -> None:
    """After CREATE TABLE / ALTER TABLE: partitions new under a watched partitioned table get
    its triggers; tables no longer under it (detached) lose them."""
    watched = _db.run(
        "SELECT w.watch_id, w.relid::pg_catalog.int8 AS relid, w.operations FROM"
        f" {_db.schema()}.pg_mq_watch w JOIN pg_catalog.pg_class c ON c.oid = w.relid WHERE c.relkind = 'p'"
    )
    stray = _db.run(
        "SELECT t.tgname::text AS trigger, t.tgrelid::pg_catalog.regclass::text AS tbl FROM pg_catalog.pg_trigger t"
        f" JOIN {_db.schema()}.pg_mq_watch w ON t.tgname::text LIKE 'pg\\_mq\\_watch\\_' || w.watch_id || '\\_%'"
        " JOIN pg_catalog.pg_class c ON c.oid = w.relid"
        " WHERE t.tgrelid <> w.relid AND NOT EXISTS (SELECT FROM pg_catalog.pg_partition_tree(w.relid) p"
        " WHERE p.relid = t.tgrelid)"
    )
    for row in stray:
        _db.ddl(f"DROP TRIGGER IF EXISTS {_db.ident(row['trigger'])} ON {row['tbl']}")
    for w in watched:
        have = {
            r["tbl"]
            for r in _db.run(
                "SELECT t.tgrelid::pg_catalog.regclass::text AS tbl FROM pg_catalog.pg_trigger t"
                " WHERE t.tgname LIKE $1",
                ("text",),
                (f"pg\\_mq\\_watch\\_{int(w['watch_id'])}\\_%",),
            )
        }
        for part in _partitions(int(w["relid"])):
            if part not in have:
                _create_triggers(int(w["watch_id"]), part, list(w["operations"]))


# pgq.insert_event(queue_name, ev_type, ev_data, ev_extra1..4): the same in the companion
# and in real PgQ. Called by exact signature, with text arguments only.
PGQ_INSERT = "pgq.insert_event(text,text,text,text,text,text,text)"
_NO_PGQ_HINT = "Install PgQ's companion (CREATE EXTENSION pg_message_queue_pgq) or PgQ (CREATE EXTENSION pgq)."


def _pgq_problem(queue_name: str) -> tuple[str, str, str | None] | None:
    """Why events cannot go into PgQ queue ``queue_name`` now (SQLSTATE, message, hint), or None.
    pgq.insert_event must belong to a superuser: the watch's trigger runs it with its rights."""
    row = _db.run(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = 'pgq') AS schema,"
        f" pg_catalog.to_regprocedure('{PGQ_INSERT}')::pg_catalog.oid::pg_catalog.int8 AS fn,"
        " pg_catalog.to_regclass('pgq.queue') IS NOT NULL AS catalog,"
        " (SELECT r.rolsuper FROM pg_catalog.pg_proc f JOIN pg_catalog.pg_roles r ON r.oid = f.proowner"
        f" WHERE f.oid = pg_catalog.to_regprocedure('{PGQ_INSERT}')) AS trusted"
    )[0]
    if not row["schema"]:
        return ("3F000", "schema pgq does not exist: install pg_message_queue_pgq or PgQ", _NO_PGQ_HINT)
    if row["fn"] is None or not row["catalog"]:
        return ("42883", f"function {PGQ_INSERT} (or table pgq.queue) does not exist", _NO_PGQ_HINT)
    if not row["trusted"]:
        return ("42501", f"function {PGQ_INSERT} is not owned by a superuser", _NO_PGQ_HINT)
    found = _db.run("SELECT EXISTS (SELECT FROM pgq.queue WHERE queue_name = $1) AS ok", ("text",), (queue_name,))
    if not found[0]["ok"]:
        return (
            "42704",
            f"PgQ queue {queue_name!r} does not exist",
            f"Create it first: SELECT pgq.create_queue({_db.literal(queue_name)}).",
        )
    return None


def _check_pgq(queue_name: str | None) -> str:
    if queue_name is None:
        _db.fail("22004", "queue_name must not be NULL")
    if not queue_name:
        _db.fail("22023", "queue_name must not be empty")
    problem = _pgq_problem(queue_name)
    if problem is not None:
        _db.fail(problem[0], problem[1], hint=problem[2])
    if not _caller_may(
        "SELECT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = SESSION_USER)"
        f" OR pg_catalog.has_function_privilege(SESSION_USER, '{PGQ_INSERT}', 'EXECUTE') AS ok",
        (),
        (),
    ):
        _db.fail(
            "42501",
            f"you may not produce into PgQ queues (EXECUTE on {PGQ_INSERT}), so you may not watch into {queue_name!r}",
            hint="Grant the role pgq_writer (or EXECUTE on pgq.insert_event) to the watching role.",
        )
    return queue_name


def _check_target(kind: str, target: str | None, broker_id: int | None, routing_key: str | None) -> str:
    if kind == "pgq":
        return _check_pgq(target)
    if kind == "notify":
        if not target:
            _db.fail("22023", "the NOTIFY channel must not be empty or NULL")
        if len(target.encode()) > NAME_MAX:
            _db.fail("42622", f"NOTIFY channel {target!r} is longer than {NAME_MAX} bytes")
        return target
    if kind == "queue":
        channel = queues.check_channel(target)
        queue = queues.find(channel)
        if queue is None:
            if not _caller_may(
                "SELECT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = SESSION_USER)"
                f" OR pg_catalog.has_function_privilege(SESSION_USER, '{_db.schema()}.pg_mq_create_queue(text, text)',"
                " 'EXECUTE') AS ok",
                (),
                (),
            ):
                _db.fail(
                    "42501",
                    f'queue "{channel}" does not exist, and only queue administrators may create it',
                    hint="Have a queue administrator create it: SELECT pg_mq_create_queue(channel, 'jsonb').",
                )
            queues.create_queue(channel, "jsonb")
            return channel
        if queue.type_sql not in QUEUE_TYPES:
            _db.fail(
                "42804",
                f'queue "{channel}" holds {queue.type_sql}; events need jsonb, json or text',
            )
        if not _caller_may(
            "SELECT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = SESSION_USER)"
            " OR pg_catalog.has_column_privilege(SESSION_USER, $1::pg_catalog.regclass, 'payload', 'INSERT') AS ok",
            (queue.table,),
            ("text",),
        ):
            _db.fail(
                "42501",
                f'you may not send to queue "{channel}", so you may not watch into it',
                hint=f"A queue administrator can allow it: SELECT pg_mq_grant('{channel}', SESSION_USER, 'send').",
            )
        return channel
    # amqp
    if broker_id is None:
        _db.fail("22004", "broker_id must not be NULL")
    if target is None or routing_key is None:
        _db.fail("22004", f"{'exchange' if target is None else 'routing_key'} must not be NULL")
    if len(target.encode()) > 255:
        _db.fail("22023", "exchange is longer than 255 bytes")
    problem = _routing_problem(routing_key)
    if problem:
        _db.fail("22023", f"{problem}")
    if not _caller_may(
        "SELECT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = SESSION_USER)"
        " OR pg_catalog.has_schema_privilege(SESSION_USER, 'amqp', 'USAGE') AS ok",
        (),
        (),
    ):
        _db.fail("42501", "only roles with USAGE on schema amqp may watch into AMQP")
    if not _db.run("SELECT EXISTS (SELECT FROM amqp.broker WHERE broker_id = $1) AS ok", ("int4",), (broker_id,))[0][
        "ok"
    ]:
        _db.fail("42704", f"no AMQP broker with broker_id {broker_id}")
    return f"{broker_id}/{target}"


def unwatch(table_name: str | None, target: str | None) -> int:
    """Remove the watches of a table (to ``target`` only, when given); returns how many."""
    table = _table(table_name)
    relid = int(table["oid"])
    rows = _db.run(
        f"DELETE FROM {_db.schema()}.pg_mq_watch WHERE relid = $1"
        " AND ($2::text IS NULL OR target = $2 OR (kind = 'amqp' AND pg_catalog.split_part(target, '/', 2) = $2))"
        " RETURNING watch_id",
        ("oid", "text"),
        (relid, target),
    )
    for row in rows:
        _drop_triggers(int(row["watch_id"]), table["name"])
    return len(rows)


def watches_into(channel: str) -> list[dict[str, Any]]:
    """The watches whose target is queue ``channel``: watch_id and table (text)."""
    return list(
        _db.run(
            "SELECT watch_id, relid::pg_catalog.regclass::text AS tbl,"
            " EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = relid) AS present"
            f" FROM {_db.schema()}.pg_mq_watch WHERE kind = 'queue' AND target = $1 ORDER BY watch_id",
            ("text",),
            (channel,),
        )
    )


def remove_watch(watch_id: int) -> None:
    """Remove one watch and its triggers (its queue is being dropped)."""
    rows = _db.run(
        f"DELETE FROM {_db.schema()}.pg_mq_watch WHERE watch_id = $1"
        " RETURNING relid::pg_catalog.regclass::text AS tbl,"
        " EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = relid) AS present",
        ("int8",),
        (watch_id,),
    )
    for row in rows:
        if row["present"]:
            _drop_triggers(watch_id, row["tbl"])


# ---- fire time ----------------------------------------------------------------------------

_seq: dict[str, Any] = {"txid": None, "n": 0}  # events numbered per transaction

# The statements as they were before 1.0.x's cheaper ones (a second sort of every event by
# seq, pk and row by json_build_object, an UPDATE's changed columns as an array and its
# "old" built as jsonb): True only in tools/bench_events.py's "before" variants, which set
# it in their own session to measure both in the same run. The events are the same byte
# for byte either way (tests/test_events_statements.py compares them).
LEGACY_STATEMENTS = False
CHUNK = 50  # jsonb_build_object takes at most 100 arguments


def _object(
    alias: str, names: list[str], kind: str = "json", types: dict[str, int] | None = None, keyed: bool = False
) -> str:
    """A JSON object of ``alias``'s columns ``names`` (json keeps their order; jsonb for comparing)."""
    return _object_of([(n, f"{alias}.{_db.ident(n)}") for n in names], kind, types, keyed)


def _jsonb_order(name: str) -> tuple[int, bytes]:
    """jsonb's order of an object's keys: shortest first (in bytes), equal lengths in byte order."""
    return len(name.encode()), name.encode()


_INTEGERS = (20, 21, 23)  # int8, int2, int4: their text is their JSON


def _json_text(pairs: list[tuple[str, str]], types: dict[str, int], keyed: bool = False) -> str:
    """The text json_build_object(name, value, ...)::text would make, made by concatenation:
    '{"name" : value, ...}', each value as to_json prints it (an integer's text as it is),
    without json_build_object's work on every argument of every row (a quarter to a third
    less for a row of three columns). ``keyed``: the members in jsonb's order (see _head)."""
    if not pairs:
        return "'{}'"
    if keyed:
        pairs = sorted(pairs, key=lambda p: _jsonb_order(p[0]))
    parts = []
    for i, (name, expr) in enumerate(pairs):
        key = ("{" if i == 0 else ", ") + json.dumps(name, ensure_ascii=False) + " : "
        value = f"pg_catalog.to_json({expr})::pg_catalog.text"
        if types.get(name) in _INTEGERS:
            value = f"{expr}::pg_catalog.text"
        parts.append(f"{_db.literal(key)} || COALESCE({value}, 'null')")
    return "(" + " || ".join(parts) + " || '}')"


def _object_of(
    pairs: list[tuple[str, str]], kind: str = "json", types: dict[str, int] | None = None, keyed: bool = False
) -> str:
    """A JSON object of (name, SQL expression) pairs; given the columns' ``types``, a json
    object of one chunk is made as its text (see _json_text), and when ``keyed`` (text that
    becomes jsonb, where neither the order of the keys nor a function's 100 arguments
    matter) one of any size, in jsonb's order."""
    if kind == "json" and types is not None and (keyed or len(pairs) <= CHUNK) and not LEGACY_STATEMENTS:
        return _json_text(pairs, types, keyed)
    if not pairs:
        return f"'{{}}'::pg_catalog.{kind}"
    parts = []
    for i in range(0, len(pairs), CHUNK):
        args = ", ".join(f"{_db.literal(n)}, {e}" for n, e in pairs[i : i + CHUNK])
        parts.append(f"pg_catalog.{kind}_build_object({args})")
    if len(parts) == 1:
        return parts[0]
    if kind == "json":  # json has no ||: join the chunks as jsonb, then back
        return "(" + " || ".join(p.replace("json_build", "jsonb_build", 1) for p in parts) + ")::pg_catalog.json"
    return "(" + " || ".join(parts) + ")"


def _head(
    op: str, alias: str, extra: list[tuple[str, str]] | None = None, context: bool = False, keyed: bool = False
) -> str:
    """The event as JSON text, built by concatenation (cheaper than json_build_object; the
    same text it would make): its fixed members, then ``extra`` (name, SQL of a JSON
    value's text). ``op`` is an operation's name or an SQL expression of one (``x.op``).
    $2 txid, $6 time, $10 and $11 the schema's and table's names as JSON strings.

    ``keyed``: the text is cast to jsonb (a jsonb queue), whose value does not depend on the
    order of the keys: they come in jsonb's own order (shortest first, then in byte order),
    which its parser then only checks instead of sorting every object of every event (its
    qsort swaps the pairs byte by byte: a third of the parse)."""
    if keyed:
        return _keyed_head(op, alias, extra or [], context)
    op_sql = op if op in (*OPERATIONS, "READ") else f"' || {op} || '"
    head = (
        f'\'{{"event_id" : "\' || $2 || \':\' || {alias}.seq || \'", "op" : "{op_sql}",'
        f' "schema" : \' || $10 || \', "table" : \' || $11 || \', "txid" : "\' || $2 || \'",'
        f' "seq" : \' || {alias}.seq || \', "ts" : "\' || $6 || \'"\''
    )
    parts = [head, f"', \"pk\" : ' || COALESCE({alias}.pk::pg_catalog.text, 'null')"]
    for name, value in extra or []:
        parts.append(f"', \"{name}\" : ' || {value}")
    if context:
        parts.append("', \"context\" : ' || $5::pg_catalog.text")
    return "(" + " || ".join(parts) + " || '}')"


def _keyed_head(op: str, alias: str, extra: list[tuple[str, str]], context: bool) -> str:
    """_head's event with its members in jsonb's order (the same jsonb once parsed)."""
    op_value = _db.literal(f'"{op}"') if op in (*OPERATIONS, "READ") else f"'\"' || {op} || '\"'"
    members = [
        ("event_id", f"'\"' || $2 || ':' || {alias}.seq || '\"'"),
        ("op", op_value),
        ("schema", "$10"),
        ("table", "$11"),
        ("txid", "'\"' || $2 || '\"'"),
        ("seq", f"{alias}.seq"),
        ("ts", "'\"' || $6 || '\"'"),
        ("pk", f"COALESCE({alias}.pk::pg_catalog.text, 'null')"),
        *extra,
    ]
    if context:
        members.append(("context", "$5::pg_catalog.text"))
    parts = []
    for i, (name, value) in enumerate(sorted(members, key=lambda m: _jsonb_order(m[0]))):
        parts.append(_db.literal(("{" if i == 0 else ", ") + json.dumps(name) + " : "))
        parts.append(value)
    return "(" + " || ".join(parts) + " || '}')"


def _key_names(watch: dict[str, Any], cols: list[dict[str, Any]]) -> list[str]:
    """The columns identifying a row: key_columns, else the primary key (trusted types only)."""
    trusted = [c["name"] for c in cols if type_problem(int(c["type"])) is None]
    keys = watch["key_columns"] or [
        c["name"] for c in sorted((c for c in cols if c["pk"] is not None), key=lambda c: c["pk"])
    ]
    return [k for k in keys if k in trusted]


def _events_sql(
    op: str,
    watch: dict[str, Any],
    cols: list[dict[str, Any]],
    context: bool,
    source: str | None = None,
    keyed: bool = False,
) -> str:
    """SQL of the events of one statement: columns seq, pk (json), op (text) and event (json).

    Parameters: $1 first seq - 1, $2 txid, $3 schema, $4 table, $5 context (jsonb, used
    when ``context``), $6 the time (ISO 8601 text), all the same for the whole statement.
    ``source`` (for op READ) is the relation the rows come from, in order, aliased x.
    ``keyed``: the events become jsonb: their objects' members in jsonb's order (see _head).
    """
    trusted = [c["name"] for c in cols if type_problem(int(c["type"])) is None]
    keys = _key_names(watch, cols)
    ignore = set(watch["ignore_columns"] or ())
    include = watch["columns"]
    shown = [n for n in trusted if (include is None or n in include) and n not in ignore]
    types = {c["name"]: int(c["type"]) for c in cols}
    pk = _object("x", keys, types=types, keyed=keyed) if keys else "NULL::pg_catalog.json"
    row = watch["payload"] == "row"
    lit = _db.literal(op)
    part = [("partition", _db.literal(json.dumps(watch["partition"])))] if watch.get("partition") else []
    if op == "TRUNCATE":
        return (
            f"SELECT e.seq, e.pk, {lit}::pg_catalog.text AS op, {_head(op, 'e', part, context, keyed)} AS event"
            " FROM (SELECT $1 + 1 AS seq, NULL::pg_catalog.json AS pk) AS e"
        )
    if op in ("INSERT", "DELETE", "READ"):
        source = source or (f"{NEW} AS x" if op == "INSERT" else f"{OLD} AS x")
        inner = (
            f"SELECT $1 + pg_catalog.row_number() OVER () AS seq, {pk} AS pk"
            + (f", {_object('x', shown, types=types, keyed=keyed)} AS r" if row else "")
            + f" FROM {source}"
        )
        event = _head(op, "e", [("row", "e.r::pg_catalog.text")] if row else [], context, keyed)
        return f"SELECT e.seq, e.pk, {lit}::pg_catalog.text AS op, {event} AS event FROM ({inner}) AS e"
    return _update_sql(watch, cols, keys, context, keyed)


def _update_sql(
    watch: dict[str, Any], cols: list[dict[str, Any]], keys: list[str], context: bool, keyed: bool = False
) -> str:
    """UPDATE: old and new rows paired by key (the n-th old row of a key with the n-th new
    row of the same key). A key that only the old rows have was changed away: a DELETE
    event; one only the new rows have: an INSERT event; both with "key_changed": true.
    DELETEs come first, then the rest in the order of the new rows. A table without key
    pairs the rows in the order the transition tables hold them.

    Values are compared with = for built-in types that have a default btree operator class
    (and a deterministic collation), else as jsonb: never a type's own operator."""
    ignore = set(watch["ignore_columns"] or ())
    include = watch["columns"]
    row = watch["payload"] == "row"
    trusted = [c for c in cols if type_problem(int(c["type"])) is None]
    pos = {c["name"]: i for i, c in enumerate(trusted)}
    types = {c["name"]: int(c["type"]) for c in trusted}
    compared = [c for c in trusted if c["name"] not in ignore]
    shown = [c["name"] for c in compared if include is None or c["name"] in include]
    carried = ", ".join(f"x.{_db.ident(c['name'])} AS c{i}" for i, c in enumerate(trusted))
    carried = f", {carried}" if carried else ""
    given = bool(watch["key_columns"])
    kj = f", {_object('x', keys, 'jsonb')} AS kj" if given else ""
    sides = (
        f"n AS (SELECT pg_catalog.row_number() OVER () AS i{kj}{carried} FROM {NEW} AS x),"
        f" o AS (SELECT pg_catalog.row_number() OVER () AS i{kj}{carried} FROM {OLD} AS x),"
    )
    both = ", ".join(f"n.c{i} AS n{i}, o.c{i} AS o{i}" for i in range(len(trusted)))
    both = f", {both}" if both else ""
    if given:  # not known to be unique nor comparable: jsonb, and the n-th of each key
        sides += (
            " n2 AS (SELECT n.*, pg_catalog.row_number() OVER (PARTITION BY n.kj ORDER BY n.i) AS d FROM n),"
            " o2 AS (SELECT o.*, pg_catalog.row_number() OVER (PARTITION BY o.kj ORDER BY o.i) AS d FROM o),"
        )
        join = "n2 AS n FULL JOIN o2 AS o ON o.kj = n.kj AND o.d = n.d"
    elif keys:  # the primary key: unique, and = is its btree equality
        by_name = {c["name"]: c for c in trusted}

        def same(k: str) -> str:
            # A deterministic collation's = is byte equality, whatever the collation: sorted
            # for the merge join as "C" (memcmp, abbreviated keys), not with strcoll (half the
            # join's time for a text key in C.UTF-8, more in other locales). Same pairs.
            if by_name[k]["native"] and by_name[k].get("collatable") and not LEGACY_STATEMENTS:
                return f'o.c{pos[k]} COLLATE pg_catalog."C" = n.c{pos[k]} COLLATE pg_catalog."C"'
            return f"o.c{pos[k]} = n.c{pos[k]}"

        join = "n FULL JOIN o ON " + " AND ".join(same(k) for k in keys)
    else:
        join = "n JOIN o ON o.i = n.i"
    pairs = f"q AS (SELECT n.i AS ni, o.i AS oi{both} FROM {join})"

    def differs(c: dict[str, Any]) -> str:
        i = pos[c["name"]]
        if c["native"]:
            return f"q.n{i} IS DISTINCT FROM q.o{i}"
        return f"pg_catalog.to_jsonb(q.n{i}) IS DISTINCT FROM pg_catalog.to_jsonb(q.o{i})"

    if LEGACY_STATEMENTS:  # the changed columns' names as an array, searched for each column
        flags = ", ".join(f"CASE WHEN {differs(c)} THEN {_db.literal(c['name'])} END" for c in compared)
        changed = "'{}'::pg_catalog.text[]"
        if compared:
            changed = f"pg_catalog.array_remove(ARRAY[{flags}]::pg_catalog.text[], NULL)"
        where = " WHERE c.ni IS NULL OR c.oi IS NULL OR pg_catalog.cardinality(c.changed) > 0" if ignore else ""
        computed = f"{changed} AS changed"
        carried_flags = "p.changed"
        changed_json = "pg_catalog.to_json(e.changed)::pg_catalog.text"
    else:  # one boolean per compared column, f<i>; "changed" made as to_json's text of the array
        computed = ", ".join(f"{differs(c)} AS f{pos[c['name']]}" for c in compared) or "NULL AS f"
        anything = " OR ".join(f"c.f{pos[c['name']]}" for c in compared) or "false"
        where = f" WHERE c.ni IS NULL OR c.oi IS NULL OR {anything}" if ignore else ""
        carried_flags = ", ".join(f"p.f{pos[c['name']]}" for c in compared) or "p.f"
        changed_json = _joined(
            "[",
            [(f"e.f{pos[c['name']]}", _db.literal(json.dumps(c["name"], ensure_ascii=False))) for c in compared],
            ",",
            "]",
        )
    numbered = (
        "SELECT $1 + pg_catalog.row_number() OVER (ORDER BY c.ni IS NOT NULL, COALESCE(c.ni, c.oi)) AS seq, c.*"
        f" FROM (SELECT q.*, {computed} FROM q) AS c{where}"
    )

    def obj(side: str, names: list[str]) -> str:
        return _object_of([(n, f"p.{side}{pos[n]}") for n in names], types=types, keyed=keyed)

    npk = obj("n", keys) if keys else "NULL::pg_catalog.json"
    opk = obj("o", keys) if keys else "NULL::pg_catalog.json"
    old = _old_text(shown, pos, types if keyed else None) if not LEGACY_STATEMENTS else _old_jsonb(shown, pos)
    upd_extra = [("changed", changed_json)]
    if row:
        upd_extra += [("row", "e.r::pg_catalog.text"), ("old", "e.old::pg_catalog.text")]
    moved_extra = ([("row", "e.r::pg_catalog.text")] if row else []) + [("key_changed", "'true'")]
    # One pass, no branches to append and sort again: the kind of pair picks the event.
    inner = (
        f"SELECT p.seq, p.ni, p.oi, {carried_flags}, CASE WHEN p.ni IS NULL THEN {opk} ELSE {npk} END AS pk"
        + (
            f", CASE WHEN p.ni IS NULL THEN {obj('o', shown)} ELSE {obj('n', shown)} END AS r,"
            f" CASE WHEN p.ni IS NOT NULL AND p.oi IS NOT NULL THEN {old} END AS old"
            if row
            else ""
        )
        + f" FROM ({numbered}) AS p"
    )
    return (
        f"WITH {sides} {pairs} SELECT e.seq, e.pk,"
        " CASE WHEN e.ni IS NULL THEN 'DELETE' WHEN e.oi IS NULL THEN 'INSERT' ELSE 'UPDATE' END::pg_catalog.text"
        " AS op,"
        f" CASE WHEN e.ni IS NULL THEN {_head('DELETE', 'e', moved_extra, context, keyed)}"
        f" WHEN e.oi IS NULL THEN {_head('INSERT', 'e', moved_extra, context, keyed)}"
        f" ELSE {_head('UPDATE', 'e', upd_extra, context, keyed)} END AS event"
        f" FROM ({inner}) AS e"
    )


def _old_jsonb(shown: list[str], pos: dict[str, int]) -> str:
    """The UPDATE event's "old" as it was first built: a jsonb of the changed columns."""
    old = " || ".join(
        f"CASE WHEN {_db.literal(n)} = ANY(p.changed) THEN pg_catalog.jsonb_build_object({_db.literal(n)}, p.o{pos[n]})"
        " ELSE '{}'::pg_catalog.jsonb END"
        for n in shown
    )
    return f"({old})" if old else "'{}'::pg_catalog.jsonb"


def _old_text(shown: list[str], pos: dict[str, int], keyed: dict[str, int] | None = None) -> str:
    """The UPDATE event's "old": the text of the jsonb object of the changed columns' old
    values, without building that jsonb. jsonb prints its keys shortest first, equal
    lengths in byte order, as '{"k": v, ...}', each value as to_jsonb prints it alone.
    ``keyed`` (the columns' types; the event becomes jsonb): each value as to_json prints
    it (an integer's text as it is), which parses into the same jsonb without making one."""

    def value(n: str) -> str:
        if keyed is None:
            return f"pg_catalog.to_jsonb(p.o{pos[n]})::pg_catalog.text"
        if keyed.get(n) in _INTEGERS:
            return f"p.o{pos[n]}::pg_catalog.text"
        return f"pg_catalog.to_json(p.o{pos[n]})::pg_catalog.text"

    return _joined(
        "{",
        [
            (f"p.f{pos[n]}", f"{_db.literal(json.dumps(n, ensure_ascii=False) + ': ')} || COALESCE({value(n)}, 'null')")
            for n in sorted(shown, key=_jsonb_order)
        ],
        ", ",
        "}",
    )


def _joined(opening: str, items: list[tuple[str, str]], separator: str, closing: str) -> str:
    """SQL: opening, then the items (condition, SQL of a text) whose condition is true, joined by
    separator, then closing. concat_ws skips NULLs; it takes at most 100 arguments, so many
    items are joined in chunks (a chunk with no item true is '': NULL again)."""
    if not items:
        return _db.literal(opening + closing)
    sep = _db.literal(separator)
    parts = [f"CASE WHEN {cond} THEN {text} END" for cond, text in items]
    chunks = [f"pg_catalog.concat_ws({sep}, {', '.join(parts[i : i + CHUNK])})" for i in range(0, len(parts), CHUNK)]
    if len(chunks) > 1:
        chunks = [f"NULLIF({c}, '')" for c in chunks]  # NULLIF: syntax, not a function
        body = f"pg_catalog.concat_ws({sep}, {', '.join(chunks)})"
    else:
        body = chunks[0]
    return f"({_db.literal(opening)} || {body} || {_db.literal(closing)})"


def _send_sql(
    watch: dict[str, Any], make_events: Callable[[bool], str], context: bool
) -> tuple[str, tuple[str, ...], tuple[Any, ...]] | None:
    """The statement sending the events, its extra parameter types and values ($7 to $9).
    ``make_events(keyed)`` is _events_sql's statement (keyed: for a jsonb queue)."""
    kind = watch["kind"]
    events = "" if kind == "queue" else make_events(False)
    # The events come out of _events_sql in seq order: each is one pipeline under a window
    # function (row_number in the order rows are read, or ORDER BY for an UPDATE's pairs)
    # with no join, sort or aggregate above it, so sending them in the order they come is
    # sending them in seq order (msg_id, outbox id and NOTIFY order follow seq). Sorting
    # them again cost a tenth of a 10,000-row statement (and spilled to disk for UPDATE).
    again = " ORDER BY e.seq" if LEGACY_STATEMENTS else ""
    routing = (
        "pg_catalog.replace(pg_catalog.replace(pg_catalog.replace($9, '{schema}', $3), '{table}', $4),"
        " '{op}', pg_catalog.lower(%s.op))"
    )
    if kind == "notify":
        # Under 8000 bytes as it is; else the keys only (no row, old), marked truncated;
        # else not even the key. The short forms are built only when needed.
        keys = _head("s.op", "s", [("truncated", "'true'")], context)
        bare = keys.replace(""" || ', "pk" : ' || COALESCE(s.pk::pg_catalog.text, 'null')""", "")
        return (
            "SELECT pg_catalog.count(pg_catalog.pg_notify($7, CASE WHEN pg_catalog.octet_length(s.f) < 8000 THEN s.f"
            f" ELSE (SELECT CASE WHEN pg_catalog.octet_length(t.k) < 8000 THEN t.k ELSE {bare} END"
            f" FROM (SELECT {keys} AS k) AS t) END)) AS n"
            f" FROM (SELECT e.seq, e.pk, e.op, e.event AS f FROM ({events}) AS e{again} OFFSET 0) AS s",
            ("text", "text", "text"),
            (watch["target"], None, None),
        )
    if kind == "queue":
        queue = queues.find(watch["target"])
        if queue is None or not queues.table_exists(queue):
            _db.warn(
                f'pg_message_queue: watch {watch["watch_id"]}: queue "{watch["target"]}" does not exist; no events'
            )
            return None
        cast = "" if queue.type_sql == "text" else f"::{queue.type_sql}"
        events = make_events(queue.type_sql == "jsonb" and not LEGACY_STATEMENTS)
        return (
            f"WITH i AS (INSERT INTO {queue.table} (payload) SELECT e.event{cast}"
            f" FROM ({events}) AS e{again} RETURNING 1) SELECT pg_catalog.count(*) AS n FROM i",
            ("text", "text", "text"),
            (None, None, None),
        )
    if kind == "pgq":
        problem = _pgq_problem(watch["target"])
        if problem is not None:
            _db.warn(f"pg_message_queue: watch {watch['watch_id']}: {problem[1]}; no events")
            return None
        # ev_extra1 the table as PgQ's triggers name it (schema.table, not quoted), ev_extra2 the event_id
        return (
            "SELECT pg_catalog.count(pgq.insert_event($7, s.op, s.event::pg_catalog.text,"
            " $3 || '.' || $4, $2 || ':' || s.seq, NULL::pg_catalog.text, NULL::pg_catalog.text)) AS n"
            f" FROM (SELECT e.seq, e.op, e.event FROM ({events}) AS e{again} OFFSET 0) AS s",
            ("text", "text", "text"),
            (watch["target"], None, None),
        )
    broker, exchange = watch["target"].split("/", 1)
    if watch.get("by_hand"):  # the caller's rights: through amqp.publish, which checks and flags
        return (
            f"SELECT pg_catalog.count(amqp.publish($7, $8, {routing % 's'}, s.event, 2,"
            " 'application/json', message_id => $2 || ':' || s.seq)) AS n"
            f" FROM (SELECT e.seq, e.op, e.event FROM ({events}) AS e{again} OFFSET 0) AS s",
            ("int4", "text", "text"),
            (int(broker), exchange, watch["routing_key"]),
        )
    return (
        "WITH b AS (SELECT COALESCE(pg_catalog.bool_or(br.mandatory), false) AS m,"
        " COALESCE(pg_catalog.bool_or(br.strict), false)"
        " OR pg_catalog.lower(COALESCE(pg_catalog.current_setting('pg_message_queue.amqp_strict', true), ''))"
        " NOT IN ('', 'off', 'of', 'false', 'f', 'no', 'n', '0') AS s"
        " FROM amqp.broker AS br WHERE br.broker_id = $7),"
        " i AS (INSERT INTO amqp.outbox (broker_id, exchange, routing_key, message, delivery_mode, content_type,"
        " message_id, mandatory, strict)"
        f" SELECT $7, $8, {routing % 'e'}, e.event, 2, 'application/json',"
        " $2 || ':' || e.seq, "
        + (
            f"b.m, b.s FROM ({events}) AS e, b ORDER BY e.seq"
            if LEGACY_STATEMENTS  # the one-row b joined: a join may reorder, hence the sort
            else f"(SELECT b.m FROM b), (SELECT b.s FROM b) FROM ({events}) AS e"
        )
        + " RETURNING 1) SELECT pg_catalog.count(*) AS n FROM i",
        ("int4", "text", "text"),
        (int(broker), exchange, watch["routing_key"]),
    )


_BY_HAND_HINT = (
    "CREATE TRIGGER ... AFTER INSERT ON t REFERENCING NEW TABLE AS pg_mq_new FOR EACH STATEMENT"
    " EXECUTE FUNCTION pg_mq_change_trigger('notify', 'channel'); UPDATE needs"
    " REFERENCING OLD TABLE AS pg_mq_old NEW TABLE AS pg_mq_new, DELETE OLD TABLE AS pg_mq_old."
)


def _by_hand(td: dict[str, Any]) -> dict[str, Any] | None:
    """The watch a hand-written pg_mq_change_trigger(kind, target [, options]) describes,
    or None (with a WARNING saying why: a bad trigger never breaks the statement)."""
    args = list(td["args"] or [])
    problem = None
    options: dict[str, Any] = {}
    if td["level"] != "STATEMENT" or td["when"] != "AFTER":
        problem = "it must be an AFTER ... FOR EACH STATEMENT trigger"
    elif len(args) not in (2, 3) or args[0] not in ("notify", "queue", "amqp"):
        problem = "its arguments are (kind, target [, options]): kind notify, queue or amqp"
    else:
        try:
            options = json.loads(args[2]) if len(args) == 3 else {}
            if not isinstance(options, dict):
                raise ValueError
        except ValueError:
            problem = "its third argument must be a JSON object of options"
    kind = args[0] if args else ""
    unknown = set(options) - {"payload", "columns", "ignore_columns", "key_columns", "broker_id", "routing_key"}
    if problem is None and unknown:
        problem = f"unknown option(s) {sorted(unknown)}"
    payload = options.get("payload", "keys" if kind == "notify" else "row")
    if problem is None and payload not in SHAPES:
        problem = "option payload must be 'keys' or 'row'"
    if problem is None and kind == "amqp" and not isinstance(options.get("broker_id"), int):
        problem = 'an amqp trigger needs option "broker_id" (its target is the exchange)'
    if problem is not None:
        _db.warn(f"pg_message_queue: trigger {td['name']}: {problem}; no events", _BY_HAND_HINT)
        return None
    target = args[1] if kind != "amqp" else f"{options['broker_id']}/{args[1]}"
    return {
        "watch_id": td["name"],
        "kind": kind,
        "target": target,
        "routing_key": options.get("routing_key", "{schema}.{table}.{op}"),
        "payload": payload,
        "columns": options.get("columns"),
        "ignore_columns": options.get("ignore_columns"),
        "key_columns": options.get("key_columns"),
        "by_hand": True,
    }


def fire_by_hand(td: dict[str, Any]) -> None:
    """pg_mq_change_trigger: the same events, described by the trigger's arguments and
    sent with the rights of the role that changed the table."""
    watch = _by_hand(td)
    if watch is None:
        return
    try:
        _emit(td, watch, int(td["relid"]))
    except _db.SPIError as exc:
        if _db.must_propagate(exc):
            raise
        _db.warn(f"pg_message_queue: trigger {td['name']}: {_db.message(exc)}; no events", _BY_HAND_HINT)


def fire(td: dict[str, Any]) -> None:
    """The trigger: one statement computes and sends every event of this statement."""
    args = td["args"] or []
    relid = int(td["relid"])
    try:
        watch_id = int(args[0])
    except (ValueError, IndexError):
        _db.warn(f"pg_message_queue: trigger {td['name']} has no watch_id argument; no events")
        return
    rows = _db.run(
        f"SELECT watch_id, relid::pg_catalog.int8 AS relid, kind, target, routing_key, payload, columns,"
        f" ignore_columns, key_columns, NOT EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = relid) AS gone"
        f" FROM {_db.schema()}.pg_mq_watch WHERE watch_id = $1",
        ("int8",),
        (watch_id,),
    )
    if not rows:
        _db.warn(f"pg_message_queue: trigger {td['name']}: watch {watch_id} does not exist; no events")
        return
    watch = dict(rows[0])
    schema, table = td["table_schema"], td["table_name"]
    if int(watch["relid"]) != relid:
        under = _db.run(
            "SELECT c.relispartition AS part, pg_catalog.pg_partition_root(c.oid)::pg_catalog.int8 AS root,"
            " EXISTS (SELECT FROM pg_catalog.pg_partition_ancestors(c.oid) a WHERE a.relid = $2) AS under,"
            " (SELECT n.nspname::text FROM pg_catalog.pg_class r JOIN pg_catalog.pg_namespace n"
            " ON n.oid = r.relnamespace WHERE r.oid = $2) AS s,"
            " (SELECT r.relname::text FROM pg_catalog.pg_class r WHERE r.oid = $2) AS t"
            " FROM pg_catalog.pg_class c WHERE c.oid = $1",
            ("oid", "oid"),
            (relid, int(watch["relid"])),
        )[0]
        if under["under"]:  # a partition of the watched table: the events name the watched table
            schema, table = under["s"], under["t"]
            watch["partition"] = f"{td['table_schema']}.{td['table_name']}"
        elif not watch["gone"]:
            _db.warn(f"pg_message_queue: trigger {td['name']}: watch {watch_id} is not a watch of this table")
            return
        else:  # restored from a dump: the table has a new oid (a partition's root for its triggers)
            adopted = int(under["root"]) if under["part"] else relid
            _db.run(
                f"UPDATE {_db.schema()}.pg_mq_watch SET relid = $2 WHERE watch_id = $1",
                ("int8", "oid"),
                (watch_id, adopted),
            )
            if under["part"]:
                names = _db.run(
                    "SELECT n.nspname::text AS s, c.relname::text AS t FROM pg_catalog.pg_class c"
                    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
                    ("oid",),
                    (adopted,),
                )[0]
                schema, table = names["s"], names["t"]
                watch["partition"] = f"{td['table_schema']}.{td['table_name']}"
    _emit(td, watch, relid, schema, table)


_NOW = (
    "SELECT pg_catalog.pg_current_xact_id()::text AS txid,"
    " pg_catalog.to_jsonb(pg_catalog.clock_timestamp()) #>> '{}' AS ts,"
    " pg_catalog.current_setting('pg_mq.event_context', true) AS ctx,"
    " pg_catalog.current_setting('pg_mq.suppress_events', true) AS quiet"
)
_ON = ("on", "true", "yes", "1", "t", "y", "tr", "tru", "ye")
_OFF = ("", "off", "false", "no", "0", "f", "n", "of", "fa", "fal", "fals")


def _suppressed(setting: str | None, relid: int) -> bool:
    """Whether pg_mq.suppress_events = on applies to this statement: only when the session's
    login role may watch the table (its owner or a superuser); any other writer's setting is
    ignored with a WARNING, so no writer can hide its changes from the table's consumers."""
    value = (setting or "").strip().lower()
    if value in _OFF:
        return False
    if value not in _ON:
        _db.warn(f"pg_message_queue: pg_mq.suppress_events = {setting!r} is not a boolean; events sent")
        return False
    allowed = _db.run(
        "SELECT COALESCE((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = SESSION_USER), false)"
        " OR pg_catalog.pg_has_role(SESSION_USER, c.relowner, 'USAGE') AS ok"
        " FROM pg_catalog.pg_class c WHERE c.oid = $1",
        ("oid",),
        (relid,),
    )
    if allowed and allowed[0]["ok"]:
        return True
    _db.warn(
        "pg_message_queue: pg_mq.suppress_events is honoured only for the table's owner or a superuser; events sent"
    )
    return False


def _emit(
    td: dict[str, Any], watch: dict[str, Any], relid: int, schema: str | None = None, table: str | None = None
) -> None:
    op = td["event"]
    now = _db.run(_NOW)[0]
    if now["quiet"] and _suppressed(now["quiet"], relid):
        return
    cols = columns(relid)
    for col in cols:
        problem = type_problem(int(col["type"]))
        if problem is not None:
            _db.warn(f'pg_message_queue: column "{col["name"]}" is left out of events: {problem}')
    _send(watch, op, cols, now, schema or td["table_schema"], table or td["table_name"])


def _send(
    watch: dict[str, Any],
    op: str,
    cols: list[dict[str, Any]],
    now: dict[str, Any],
    schema: str,
    table: str,
    source: str | None = None,
    more: tuple[Any, ...] = (),
) -> int:
    """Build and send the events; returns how many were sent. ``source`` and ``more``
    (text parameters from $12 on) are the snapshot's rows."""
    context = _context(now["ctx"])
    has_context = context != "{}"
    sent = _send_sql(watch, lambda keyed: _events_sql(op, watch, cols, has_context, source, keyed), has_context)
    if sent is None:
        return 0
    sql, types, extra = sent
    if _seq["txid"] != now["txid"]:
        _seq.update(txid=now["txid"], n=0)
    try:
        result = _db.run(
            sql,
            ("int8", "text", "text", "text", "jsonb", "text", *types, "text", "text", *("text",) * len(more)),
            (
                _seq["n"],
                now["txid"],
                schema,
                table,
                context,
                now["ts"],
                *extra,
                json.dumps(schema, ensure_ascii=False),
                json.dumps(table, ensure_ascii=False),
                *more,
            ),
        )
    except _db.SPIError as exc:
        # The target changed under the watch (a queue dropped in between, ...): the
        # user's statement goes on (each plpy.execute is its own subtransaction).
        if _db.must_propagate(exc) or watch.get("by_hand") or source is not None:
            raise
        _db.warn(f"pg_message_queue: watch {watch['watch_id']}: {_db.message(exc)}; no events")
        return 0
    n = int(result[0]["n"])
    _seq["n"] += n
    return n


# ---- snapshot -----------------------------------------------------------------------------

MAX_BATCH = 1_000_000

_KEY_TYPE = """
WITH RECURSIVE d(t, depth) AS (
    SELECT $1::pg_catalog.oid, 0
    UNION ALL
    SELECT ty.typbasetype, d.depth + 1 FROM d JOIN pg_catalog.pg_type ty ON ty.oid = d.t WHERE ty.typtype = 'd'
)
SELECT ty.oid::pg_catalog.int8 AS oid, ty.typtype::text AS kind, pg_catalog.format_type(ty.oid, NULL) AS sql
FROM d JOIN pg_catalog.pg_type ty ON ty.oid = d.t ORDER BY d.depth DESC LIMIT 1
"""


def _key_type(name: str, type_oid: int, table: str) -> str:
    """The SQL type a key column is compared as (its domain's base type), checked: ordering
    it runs only built-in code (a superuser's types throughout, or an enum)."""
    base = _db.run(_KEY_TYPE, ("oid",), (type_oid,))[0]
    settled = _db.run(_JSON_CODE, ("oid",), (int(base["oid"]),))[0]["settled"]
    if not settled and base["kind"] != "e":
        _db.fail(
            "42501",
            f'key column "{name}" of table {table} has type {base["sql"]}, whose ordering may run a non-superuser\'s'
            " code; a snapshot cannot page through it",
            hint="Watch with key_columns of built-in types.",
        )
    return str(base["sql"])


def _after(keys: list[tuple[str, bool, str]], first: int) -> str:
    """SQL: the row x comes after the key given as text parameters $first, $first+1, ...
    in the order (each key column ascending, NULLs last). Built-in operators only."""
    params = [f"${first + i}::pg_catalog.text::{t}" for i, (_e, _n, t) in enumerate(keys)]
    if not any(nullable for _e, nullable, _t in keys):
        if len(keys) == 1:
            return f"{keys[0][0]} OPERATOR(pg_catalog.>) {params[0]}"
        return f"ROW({', '.join(e for e, _n, _t in keys)}) OPERATOR(pg_catalog.>) ROW({', '.join(params)})"
    ors = []
    for i, (expr, _nullable, _t) in enumerate(keys):
        same = [f"{keys[j][0]} IS NOT DISTINCT FROM {params[j]}" for j in range(i)]
        p = f"${first + i}"
        later = f"({p} IS NOT NULL AND ({expr} IS NULL OR {expr} OPERATOR(pg_catalog.>) {params[i]}))"
        ors.append("(" + " AND ".join([*same, later]) + ")")
    return "(" + " OR ".join(ors) + ")"


def snapshot(table_name: str | None, target: str | None, batch_size: int | None) -> int:
    """Send op READ events for the rows already in the table, in key order, to the target of
    one of its watches, batch_size rows per statement (keyset pagination); returns how many."""
    table = _table(table_name)
    name, relid = table["name"], int(table["oid"])
    if batch_size is None:
        _db.fail("22004", "batch_size must not be NULL")
    if not 1 <= batch_size <= MAX_BATCH:
        _db.fail("22023", f"batch_size must be between 1 and {MAX_BATCH}, not {batch_size}")
    rows = _db.run(
        "SELECT watch_id, relid::pg_catalog.int8 AS relid, kind, target, routing_key, payload, columns,"
        f" ignore_columns, key_columns FROM {_db.schema()}.pg_mq_watch WHERE relid = $1"
        " AND ($2::text IS NULL OR target = $2 OR (kind = 'amqp' AND pg_catalog.split_part(target, '/', 2) = $2))"
        " ORDER BY watch_id",
        ("oid", "text"),
        (relid, target),
    )
    if not rows:
        _db.fail(
            "42704",
            f"table {name} has no watch" + (f" to {target!r}" if target is not None else ""),
            hint="A snapshot goes to a watch's target: watch the table first (pg_mq_watch_notify/_queue/_amqp/_pgq).",
        )
    if len(rows) > 1:
        _db.fail(
            "22023",
            f"table {name} has {len(rows)} watches; name the target of the snapshot",
            hint="pg_mq_watch_snapshot(table, target => '...'): a channel, queue or exchange of pg_mq_watches.",
        )
    watch = dict(rows[0])
    if watch["kind"] == "pgq":
        problem = _pgq_problem(watch["target"])
        if problem is not None:
            _db.fail(problem[0], f"the watch of table {name}: {problem[1]}", hint=problem[2])
    if watch["kind"] == "queue":
        queue = queues.find(watch["target"])
        if queue is None or not queues.table_exists(queue):
            _db.fail("42P01", f'queue "{watch["target"]}" of the watch of table {name} does not exist')
    cols = columns(relid)
    by_name = {c["name"]: c for c in cols}
    keys = _key_names(watch, cols)
    if not keys:
        _db.fail(
            "22023",
            f"table {name} has no primary key and its watch no key_columns: a snapshot has no order to page by",
            hint="Watch it again with key_columns => ARRAY['...'].",
        )
    nullable = {
        r["name"]
        for r in _db.run(
            "SELECT a.attname::text AS name FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0"
            " AND NOT a.attisdropped AND NOT a.attnotnull",
            ("oid",),
            (relid,),
        )
    }
    order = [(f"x.{_db.ident(k)}", k in nullable, _key_type(k, int(by_name[k]["type"]), name)) for k in keys]
    if watch["key_columns"]:  # not known to be unique: the row's place breaks ties
        if table["kind"] == "p":
            order.append(("x.tableoid", False, "pg_catalog.oid"))
        order.append(("x.ctid", False, "pg_catalog.tid"))
    sort = ", ".join(f"{e} USING OPERATOR(pg_catalog.<)" + (" NULLS LAST" if n else "") for e, n, _t in order)
    texts = ", ".join(f"{e}::pg_catalog.text AS k{i}" for i, (e, _n, _t) in enumerate(order))
    width = len(order)
    # $1.. $width: the last key sent (all NULL before the first batch, with a flag)
    bound_sql = (
        f"SELECT {texts} FROM {name} AS x WHERE $%d OR {_after(order, 1)} ORDER BY {sort} OFFSET $%d LIMIT 1"
        % (width + 1, width + 2)
    )
    bound_types = (*("text",) * width, "bool", "int8")
    now = _db.run(_NOW)[0]
    meta = _db.run(
        "SELECT n.nspname::text AS s, c.relname::text AS t FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
        ("oid",),
        (relid,),
    )[0]
    # the batch: after $12.. (unless $12+2w is true: the first), not after $12+w.. (unless the last)
    lo, hi = 12, 12 + width
    flags = 12 + 2 * width
    source = (
        f"(SELECT * FROM {name} AS x WHERE (${flags}::pg_catalog.text::pg_catalog.bool OR {_after(order, lo)})"
        f" AND (${flags + 1}::pg_catalog.text::pg_catalog.bool OR NOT {_after(order, hi)})"
        f" ORDER BY {sort}) AS x"
    )
    last: list[str | None] = [None] * width
    first = True
    total = 0
    while True:
        try:
            found = _db.run(bound_sql, bound_types, (*last, first, batch_size - 1))
        except _db.SPIError as exc:
            if exc.sqlstate == "42883":
                _db.fail(
                    "42883",
                    f"the key of table {name} ({', '.join(keys)}) has a type without built-in ordering:"
                    f" {_db.message(exc)}",
                )
            raise
        upper = [found[0][f"k{i}"] for i in range(width)] if found else [None] * width
        total += _send(
            watch,
            "READ",
            cols,
            now,
            meta["s"],
            meta["t"],
            source,
            (*last, *upper, "t" if first else "f", "f" if found else "t"),
        )
        if not found:
            return total
        last, first = upper, False


def _context(text: str | None) -> str:
    """The event's "context" member from pg_mq.event_context (any JSON value), "{}" for none."""
    if not text:
        return "{}"
    if len(text.encode()) > MAX_CONTEXT_BYTES:
        _db.warn(f"pg_message_queue: pg_mq.event_context is over {MAX_CONTEXT_BYTES} bytes; left out of events")
        return "{}"
    try:
        value = json.loads(text)
    except ValueError:
        _db.warn("pg_message_queue: pg_mq.event_context is not JSON; left out of events")
        return "{}"
    return json.dumps(value)
