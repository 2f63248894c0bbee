"""PgQ's row-change triggers: pgq.logutriga, pgq.sqltriga and pgq.jsontriga.

PgQ's C (triggers/common.c, logutriga.c, sqltriga.c, jsontriga.c, makesql.c,
stringutil.c, qbuilder.c, parsesql.c in github.com/pgq/pgq) is the reference for
every rule, message and encoding here; the comments name the C function each part
follows. The SQL trigger functions are PL/pgSQL around :func:`fire`: they pass the
rows as their record text (``OLD::text``: every column through its type's output
function, which is what PgQ's SPI_getvalue gives) and raise the error :func:`fire`
returns with PgQ's SQLSTATE and exact message (PL/Python would prefix it).

Nothing here is SECURITY DEFINER: like PgQ's, the triggers run with the rights of the
role changing the table, so a ``when=`` or ``ev_*=`` expression (chosen by whoever
created the trigger) runs as that role, and pgq.insert_event needs pgq_writer.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .. import _db

# Which PgQ function: the three differ in ev_type / ev_data only (common.c does the rest).
LOGU, SQL, JSON = "logutriga", "sqltriga", "jsontriga"
EV_TYPE, EV_DATA, EV_EXTRA1, EV_EXTRA2, EV_EXTRA3, EV_EXTRA4, EV_WHEN = range(7)
FIELD_NAMES = ("ev_type", "ev_data", "ev_extra1", "ev_extra2", "ev_extra3", "ev_extra4")
MAGIC = {"_pgq_" + name: i for i, name in enumerate(FIELD_NAMES)}
OP_STR = {"I": "INSERT", "U": "UPDATE", "D": "DELETE", "R": "TRUNCATE"}
BOOL, INT2, INT4, INT8, DATE, TIMESTAMP, TIMESTAMPTZ = 16, 21, 23, 20, 1082, 1114, 1184
JSON_TIME_TYPES = (DATE, TIMESTAMP, TIMESTAMPTZ)
C_SPACE = " \t\n\v\f\r"  # C isspace() in the C locale


class PgqError(Exception):
    """An error PgQ raises (elog(ERROR) is SQLSTATE XX000), or one of a statement it runs."""

    def __init__(self, message: str, sqlstate: str = "XX000") -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate


# ---- table information: per statement (no DDL can change the table under a running DML) ----

TABLE_INFO = (
    "SELECT n.nspname::pg_catalog.text AS nsp, c.relname::pg_catalog.text AS rel,"
    " ARRAY(SELECT k.attname::pg_catalog.text FROM pg_catalog.pg_index i, pg_catalog.pg_attribute k"
    "  WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid AND k.attrelid OPERATOR(pg_catalog.=) i.indexrelid"
    "  AND i.indisprimary AND k.attnum OPERATOR(pg_catalog.>) 0 AND NOT k.attisdropped ORDER BY k.attnum) AS pkeys,"
    " ARRAY(SELECT a.attname::pg_catalog.text FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=)"
    "  c.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped ORDER BY a.attnum) AS names,"
    " ARRAY(SELECT a.atttypid::pg_catalog.int8 FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=)"
    "  c.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped ORDER BY a.attnum) AS types,"
    " ARRAY(SELECT pg_catalog.format_type(a.atttypid, NULL) FROM pg_catalog.pg_attribute a"
    "  WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped"
    "  ORDER BY a.attnum) AS typnames,"
    # PgQ compares old and new values with the type's default equality (typcache's eq_opr:
    # the default btree opclass's, else the hash one's), and by their text when there is
    # none, or for arrays: per column that operator, as OPERATOR(schema.name), or NULL.
    " ARRAY(SELECT CASE WHEN t.typcategory OPERATOR(pg_catalog.<>) 'A' THEN ("
    "   SELECT 'OPERATOR(' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(opn.nspname) OPERATOR(pg_catalog.||) '.'"
    "    OPERATOR(pg_catalog.||) o.oprname OPERATOR(pg_catalog.||) ')'"
    "   FROM pg_catalog.pg_opclass oc JOIN pg_catalog.pg_am am ON am.oid OPERATOR(pg_catalog.=) oc.opcmethod"
    "   JOIN pg_catalog.pg_amop ao ON ao.amopfamily OPERATOR(pg_catalog.=) oc.opcfamily"
    "    AND ao.amoplefttype OPERATOR(pg_catalog.=) oc.opcintype"
    "    AND ao.amoprighttype OPERATOR(pg_catalog.=) oc.opcintype"
    "    AND ao.amopstrategy OPERATOR(pg_catalog.=) CASE am.amname WHEN 'btree' THEN 3 ELSE 1 END"
    "   JOIN pg_catalog.pg_operator o ON o.oid OPERATOR(pg_catalog.=) ao.amopopr"
    "   JOIN pg_catalog.pg_namespace opn ON opn.oid OPERATOR(pg_catalog.=) o.oprnamespace"
    "   WHERE oc.opcdefault AND am.amname OPERATOR(pg_catalog.=) ANY ('{btree,hash}')"
    "   AND (oc.opcintype OPERATOR(pg_catalog.=) ANY (ARRAY[a.atttypid, t.typbasetype])"
    "    OR oc.opcintype OPERATOR(pg_catalog.=) CASE t.typtype WHEN 'c' THEN 'pg_catalog.record'::pg_catalog.regtype"
    "     WHEN 'e' THEN 'pg_catalog.anyenum'::pg_catalog.regtype"
    "     WHEN 'r' THEN 'pg_catalog.anyrange'::pg_catalog.regtype END"
    "    OR EXISTS (SELECT FROM pg_catalog.pg_cast k WHERE k.castmethod OPERATOR(pg_catalog.=) 'b'"
    "     AND k.castsource OPERATOR(pg_catalog.=) ANY (ARRAY[a.atttypid, t.typbasetype])"
    "     AND k.casttarget OPERATOR(pg_catalog.=) oc.opcintype))"
    "   ORDER BY am.amname OPERATOR(pg_catalog.=) 'btree' DESC, oc.opcintype OPERATOR(pg_catalog.=) a.atttypid DESC"
    "   LIMIT 1) END"
    "  FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid"
    "  WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped"
    "  ORDER BY a.attnum) AS eq_ops"
    " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
    " WHERE c.oid OPERATOR(pg_catalog.=) $1"
)


class Table:
    """PgQ's PgqTableInfo: name, primary key and (ours) the columns' names and types."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.name = f"{row['nsp']}.{row['rel']}"  # fill_tbl_info: not quoted
        self.pkey_list = ",".join(row["pkeys"])
        self.json_info = (
            ',"table":[' + json_quote(row["nsp"]) + "," + json_quote(row["rel"]) + '],"pkey":['
            + ",".join(json_quote(k) for k in row["pkeys"]) + "]"
        )  # fmt: skip
        self.names: list[str] = row["names"]
        self.types: list[int] = [int(t) for t in row["types"]]
        self.typnames: list[str] = row["typnames"]
        self.eq_ops: list[str | None] = row["eq_ops"]
        self.index = {name: i for i, name in enumerate(self.names)}


_tables: dict[int, tuple[str, Table]] = _db.cache({})


def table_info(relid: int, statement: str) -> Table:
    found = _tables.get(relid)
    if found is not None and found[0] == statement:
        return found[1]
    rows = _db.run(TABLE_INFO, ("oid",), (relid,))
    table = Table(rows[0])
    if len(_tables) > 1000:
        _tables.clear()
    _tables[relid] = (statement, table)
    return table


# ---- trigger arguments: PgQ parses them once per trigger (parse_newstyle_args) ----


class TriggerArgs:
    """PgQ's PgqTriggerInfo, for the table information it was made with."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.finalized = False
        self.skip = False
        self.backup = False
        self.deny = False
        self.custom_fields = False
        self.ignore_list: str | None = None
        self.pkey_list: str | None = None
        self.query: list[Query | None] = [None] * 7


_triggers: dict[tuple[Any, ...], TriggerArgs] = _db.cache({})


class Event:
    """PgQ's PgqTriggerEvent for one firing."""

    def __init__(self, op: str, table: Table, tgargs: TriggerArgs, old: list[str | None] | None,
                 new: list[str | None] | None) -> None:  # fmt: skip
        self.op = op
        self.table = table
        self.tgargs = tgargs
        self.old = old
        self.new = new
        self.pkey_list = tgargs.pkey_list if tgargs.pkey_list is not None else table.pkey_list
        self.fields: list[str | None] = ["", "", "", None, None, None]
        self.skip_event = False

    @property
    def row(self) -> list[str | None]:
        """tg_newtuple for UPDATE, else tg_trigtuple."""
        return self.new if self.new is not None else self.old  # type: ignore[return-value]

    def skip_col(self, i: int) -> bool:
        """pgqtriga_skip_col."""
        name = self.table.names[i]
        if name.startswith("_pgq_ev_"):
            self.tgargs.custom_fields = True
            return True
        if self.tgargs.ignore_list is not None:
            return strlist_contains(self.tgargs.ignore_list, name)
        return False

    def is_pkey(self, i: int) -> bool:
        """pgqtriga_is_pkey."""
        name = self.table.names[i]
        if name.startswith("_pgq_ev_"):
            self.tgargs.custom_fields = True
            return False
        return strlist_contains(self.pkey_list, name)


def fire(kind: str, relid: int, op: str, when: str, level: str, argv: list[str] | None, statement: str,
         replication_role: str, old_text: str | None, new_text: str | None, old_json: str | None,
         new_json: str | None) -> list[str] | None:  # fmt: skip
    """One firing of pgq.<kind>, for its PL/pgSQL wrapper: None to go on, ``["skip"]`` for
    a BEFORE trigger to drop the row, ``["error", sqlstate, message]`` to raise PgQ's
    error, or ``["event" | "event-skip", queue, ev_type, ev_data, ev_extra1..4]`` for the
    wrapper to call pgq.insert_event with (SQL's own call: no PL/Python subtransaction
    per event), then go on or drop the row."""
    try:
        return _fire(kind, relid, op, when, level, argv or [], statement, replication_role, old_text, new_text,
                     old_json, new_json)  # fmt: skip
    except PgqError as exc:
        return ["error", exc.sqlstate, exc.message]
    except _db.SPIError as exc:
        state = getattr(exc, "sqlstate", None) or "XX000"
        if state[:2] in ("57", "40", "53", "58") or state in ("XX001", "XX002"):
            raise  # cancels, shutdowns, serialization failures, corruption: as they are
        return ["error", state, _db.message(exc)]


def _fire(kind: str, relid: int, op: str, when: str, level: str, argv: list[str], statement: str,
          replication_role: str, old_text: str | None, new_text: str | None, old_json: str | None,
          new_json: str | None) -> list[str] | None:  # fmt: skip
    # pgq_is_logging_disabled: nothing at all in the "local" replication role
    if replication_role == "local":
        return None
    # pgq_prepare_event: calling conventions
    if op == "TRUNCATE":
        if level != "STATEMENT":
            raise PgqError("pgq tRuncate trigger must be fired FOR EACH STATEMENT")
    elif level != "ROW":
        raise PgqError("pgq Ins/Upd/Del trigger must be fired FOR EACH ROW")
    if len(argv) < 1:
        raise PgqError("pgq trigger must have destination queue as argument")
    op_type = {"INSERT": "I", "UPDATE": "U", "DELETE": "D", "TRUNCATE": "R"}.get(op)
    if op_type is None:
        raise PgqError("unknown event for pgq trigger")
    table = table_info(relid, statement)
    # tg_trigtuple / tg_newtuple: the wrapper passes OLD for UPDATE and DELETE, NEW for INSERT and UPDATE
    old = parse_record(old_text) if old_text is not None else None
    new = parse_record(new_text) if new_text is not None else None
    width = len(old if old is not None else new if new is not None else table.names)
    if width != len(table.names):  # columns added or dropped earlier in the same query string
        _tables.pop(relid, None)
        table = table_info(relid, statement)
    key = (relid, kind, when, level, op, tuple(argv))
    tgargs = _triggers.get(key)
    if tgargs is None or tgargs.table is not table:
        # PgQ drops its parsed arguments (and prepared expressions) when the table's
        # relcache entry is invalidated; ours go with the table information, per statement
        if len(_triggers) > 1000:
            _triggers.clear()
        tgargs = _triggers[key] = TriggerArgs(table)
    ev = Event(op_type, table, tgargs, old, new)
    queue = argv[0]
    if not tgargs.finalized:
        _parse_args(ev, argv)
        ev.pkey_list = tgargs.pkey_list if tgargs.pkey_list is not None else table.pkey_list
    if op_type in "UD" and ev.pkey_list == "":
        raise PgqError("Update/Delete on table without pkey")
    tgargs.finalized = True
    if tgargs.skip and when == "AFTER":
        raise PgqError("SKIP does not work in AFTER trigger.")
    if tgargs.deny:
        raise PgqError(f"Table '{table.name}' to queue '{queue}': change not allowed ({OP_STR[op_type]})")
    skip_row = tgargs.skip
    event: list[Any] | None = None
    if tgargs.backup and op_type == "U":
        ev.fields[EV_EXTRA2] = jsonenc_row(ev, ev.old, old_json) if kind == JSON else urlenc_row(ev, ev.old)
    ev.fields[EV_EXTRA1] = table.name
    if kind == SQL:
        ev.fields[EV_TYPE] = op_type
        sql = make_sql(ev)
        if sql is not None:
            ev.fields[EV_DATA] = sql
            event = tg_event(ev, queue)
    else:
        row_json = new_json  # the wrapper's to_json of NEW, or of OLD for DELETE
        if kind == JSON:
            ev.fields[EV_TYPE] = json_type(ev)
        else:
            ev.fields[EV_TYPE] = op_type + (":" + ev.pkey_list if op_type != "R" else "")
        if is_interesting_change(ev):
            if kind == JSON:
                ev.fields[EV_DATA] = jsonenc_row(ev, ev.row, row_json)
            else:
                ev.fields[EV_DATA] = urlenc_row(ev, ev.row)
            event = tg_event(ev, queue)
    if event is not None:
        return ["event-skip" if skip_row else "event", *event]
    return ["skip"] if skip_row else None


def _parse_args(ev: Event, argv: list[str]) -> None:
    """parse_newstyle_args."""
    tgargs = ev.tgargs
    for arg in argv[1:]:
        if arg == "SKIP":
            tgargs.skip = True
        elif arg.startswith("ignore="):
            tgargs.ignore_list = arg[7:]
        elif arg.startswith("pkey="):
            tgargs.pkey_list = arg[5:]
        elif arg == "backup":
            tgargs.backup = True
        elif arg == "deny":
            tgargs.deny = True
        else:
            for field, name in enumerate((*FIELD_NAMES, "when")):
                if arg.startswith(name + "="):
                    make_query(ev, field, arg[len(name) + 1 :])
                    break
            else:
                raise PgqError("bad param to pgq trigger")
    if ev.op == "R":
        if tgargs.ignore_list is not None:
            raise PgqError("Column ignore does not make sense for truncate trigger")
        if tgargs.pkey_list is not None:
            raise PgqError("Custom pkey_list does not make sense for truncate trigger")
        if tgargs.backup:
            raise PgqError("Backup does not make sense for truncate trigger")


# ---- custom expressions (qbuilder.c, parsesql.c) ----


class Query:
    """A ``select <expr>`` whose column references became parameters: PgQ prepares
    them with the columns' types; here each is a text parameter cast to that type
    (the text is the column's output, so the value is the same)."""

    def __init__(self, sql: str, columns: list[int], types: list[str]) -> None:
        self.sql = sql
        self.columns = columns
        self.types = types


def make_query(ev: Event, field: int, expr: str) -> None:
    if ev.op == "R":
        raise PgqError("Custom expressions do not make sense for truncater trigger")
    if ev.tgargs.query[field] is not None:
        return
    columns: list[int] = []
    parts = ["select "]
    pos = 0
    while pos < len(expr):
        tok, length = sql_token(expr, pos)
        if tok < 0:
            raise PgqError("QB: syntax error")
        text = expr[pos : pos + length]
        pos += length
        if tok == T_WORD and text in ev.table.index and len(text.encode()) < 64:
            col = ev.table.index[text]
            if col not in columns:
                columns.append(col)
            n = columns.index(col) + 1
            parts.append(f"${n}::{ev.table.typnames[col]}")
        else:
            parts.append(text)
    query = Query("".join(parts), columns, ["text"] * len(columns))
    _db.plan(query.sql, tuple(query.types))  # prepared now, as PgQ does: a bad expression fails here
    ev.tgargs.query[field] = query


T_SPACE, T_STRING, T_NUMBER, T_WORD, T_FQIDENT = 257, 258, 259, 260, 261
_ALPHA = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGIT = set("0123456789")


def sql_token(s: str, p: int) -> tuple[int, int]:
    """parsesql.c's sql_tokenizer (standard_conforming_strings on): (token, length)."""
    start = p
    n = len(s)

    def at(i: int) -> str:
        return s[i] if i < n else ""

    c = s[p]
    if c in C_SPACE or s.startswith("--", p) or s.startswith("/*", p):
        tok = T_SPACE
        while True:
            if s.startswith("--", p):
                while p < n and s[p] != "\n":
                    p += 1
            elif s.startswith("/*", p):
                level = 1
                p += 2
                while level:
                    if s.startswith("*/", p):
                        level -= 1
                        p += 2
                    elif s.startswith("/*", p):
                        level += 1
                        p += 2
                    elif p >= n:
                        return -1, 0
                    else:
                        p += 1
            elif at(p) != "" and at(p) in C_SPACE:
                while at(p) != "" and at(p) in C_SPACE:
                    p += 1
            else:
                break
    elif c in "Ee" and at(p + 1) == "'":
        tok = T_STRING
        p += 2
        while p < n:
            if s[p] == "'":
                if at(p + 1) == "'":
                    p += 1
                else:
                    break
            elif s[p] == "\\":
                if at(p + 1) == "":
                    return -1, 0
                p += 1
            p += 1
        if at(p) != "'":
            return -1, 0
        p += 1
    elif c == "'":
        tok = T_STRING
        p += 1
        while p < n:
            if s[p] == "'":
                if at(p + 1) == "'":
                    p += 1
                else:
                    break
            p += 1
        if at(p) != "'":
            return -1, 0
        p += 1
    elif c in _ALPHA or c == "_":
        tok = T_WORD
        while True:
            while at(p) != "" and (at(p) in _ALPHA or at(p) in _DIGIT or at(p) in "_."):
                p += 1
            if at(p) == '"':
                p += 1
                while p < n:
                    if s[p] == '"':
                        if at(p + 1) == '"':
                            p += 1
                        else:
                            break
                    p += 1
                if at(p) != '"':
                    return -1, 0
                p += 1
            elif at(p) == ".":
                tok = T_FQIDENT
                p += 1
            else:
                break
    elif c in _DIGIT or (c == "." and at(p + 1) in _DIGIT and at(p + 1) != ""):
        tok = T_NUMBER
        while p < n:
            if s[p] in _DIGIT or s[p] == ".":
                p += 1
            elif s[p] in "eE":
                if at(p + 1) != "" and (at(p + 1) in ".+-" or at(p + 1) in _DIGIT):
                    p += 2
                else:
                    break
            else:
                break
    elif c == "$":
        nxt = at(p + 1)
        if nxt != "" and nxt in _DIGIT:
            tok = T_WORD
            p += 2
            while at(p) != "" and at(p) in _DIGIT:
                p += 1
        elif nxt != "" and (nxt in _ALPHA or nxt in "_$"):
            tok = T_STRING
            p2 = s.find("$", p + 1)
            if p2 < 0:
                return -1, 0
            p2 += 1
            tag = s[p:p2]
            p3 = p2
            while True:
                p3 = s.find("$", p3)
                if p3 < 0:
                    return -1, 0
                if s.startswith(tag, p3):
                    break
                p3 += 1
            p = p3 + len(tag)
        else:
            return -1, 0
    elif c == ".":
        return -1, 0
    else:
        tok = ord(c)
        p += 1
    return tok, p - start


def _value_text(value: Any, typoid: int) -> str | None:
    """SPI_getvalue of an expression's result: its type's output."""
    if value is None:
        return None
    if typoid == BOOL:
        return "t" if value else "f"
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    rows = _db.run("SELECT pg_catalog.concat($1) AS t", (_typname(typoid),), (value,))
    return rows[0]["t"]


def _typname(typoid: int) -> str:
    return _db.run("SELECT pg_catalog.format_type($1, NULL) AS t", ("oid",), (typoid,))[0]["t"]


def override_fields(ev: Event) -> None:
    """override_fields: each ev_*= query, then when=."""
    for field, query in enumerate(ev.tgargs.query):
        if query is None:
            continue
        row = ev.row
        rows = _db.run(query.sql, tuple(query.types), tuple(row[c] for c in query.columns))
        if len(rows) != 1:
            raise PgqError(f"Expect 1 row from override query, got {len(rows)}")
        name = rows.colnames()[0]
        typoid = rows.coltypes()[0]
        value = rows[0][name]
        if field == EV_WHEN:
            if typoid != BOOL:
                raise PgqError(f"when= query result must be boolean, got={typoid}")
            if value is None:
                raise PgqError("when= should not be NULL")
            if not value:
                ev.skip_event = True
            continue
        ev.fields[field] = _value_text(value, typoid)


def fill_magic_columns(ev: Event) -> None:
    row = ev.row
    for i, name in enumerate(ev.table.names):
        if not name.startswith("_pgq_ev_"):
            continue
        field = MAGIC.get(name)
        if field is None:
            raise PgqError(f"Unknown magic column: {name}")
        ev.fields[field] = row[i]


def tg_event(ev: Event, queue: str) -> list[str | None] | None:
    """pgq_insert_tg_event: magic columns, overrides, when=; the arguments of
    pgq.insert_event (which the wrapper calls), or None when when= said no."""
    if ev.tgargs.custom_fields:
        fill_magic_columns(ev)
    override_fields(ev)
    if ev.skip_event:
        return None
    return [queue, *ev.fields]


# ---- encodings (stringutil.c) ----


def strlist_contains(liststr: str, name: str) -> bool:
    """pgq_strlist_contains: ``name`` as a whole item of a comma/space separated list."""
    start = 0
    length = len(name)
    while True:
        p = liststr.find(name, start)
        if p < 0:
            return False
        start = p + length + (1 if p + length < len(liststr) else 0)
        if p > 0 and liststr[p - 1] not in C_SPACE and liststr[p - 1] != ",":
            continue
        if p + length < len(liststr) and liststr[p + length] not in C_SPACE and liststr[p + length] != ",":
            continue
        return True


_URL_SAFE = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_.-")
_URL_BYTE = ["+" if b == 0x20 else chr(b) if b in _URL_SAFE else f"%{b:02x}" for b in range(256)]
_URL_PLAIN = re.compile(r"[0-9A-Za-z_.\-]*")


def urlencode(value: str) -> str:
    """pgq_urlencode: bytes outside [0-9A-Za-z_.-] as %xx (lower case), space as +."""
    if _URL_PLAIN.fullmatch(value):
        return value
    return "".join(map(_URL_BYTE.__getitem__, value.encode()))


_JSON_ESCAPES = {0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x22: '\\"', 0x5C: "\\\\"}
_JSON_ESCAPES.update({c: f"\\u{c:04x}" for c in range(0x20) if c not in _JSON_ESCAPES})


def json_quote(value: str) -> str:
    """PostgreSQL's escape_json."""
    return '"' + value.translate(_JSON_ESCAPES) + '"'


def quote_literal(value: str) -> str:
    return _db.literal(value)


def quote_ident(value: str) -> str:
    return _db.ident(value)


_RECORD_FIELD = re.compile(r'"((?:[^"\\]|""|\\.)*)"|([^,]*)')
_RECORD_ESCAPE = re.compile(r'""|\\(.)', re.DOTALL)


def _unescape(m: re.Match[str]) -> str:
    return m.group(1) if m.group(1) is not None else '"'


def parse_record(text: str) -> list[str | None]:
    """The columns of a row's text (record_out): each its type's output, None for NULL
    (record_out writes NULL as nothing, an empty string as "")."""
    inner = text[1:-1]
    if '"' not in inner:
        return [v if v else None for v in inner.split(",")]
    out: list[str | None] = []
    pos, n = 0, len(inner)
    while True:
        m = _RECORD_FIELD.match(inner, pos)
        quoted, plain = m.group(1), m.group(2)  # type: ignore[union-attr]
        if quoted is not None:
            out.append(_RECORD_ESCAPE.sub(_unescape, quoted) if '"' in quoted or "\\" in quoted else quoted)
        else:
            out.append(plain or None)
        pos = m.end()  # type: ignore[union-attr]
        if pos >= n:
            return out
        pos += 1  # the comma


def urlenc_row(ev: Event, row: list[str | None] | None) -> str:
    """pgq_urlenc_row."""
    if ev.op == "R" or row is None:
        return ""
    parts = []
    for i, name in enumerate(ev.table.names):
        if ev.skip_col(i):
            continue
        value = row[i]
        parts.append(urlencode(name) if value is None else urlencode(name) + "=" + urlencode(value))
    return "&".join(parts)


def jsonenc_row(ev: Event, row: list[str | None] | None, row_json: str | None) -> str:
    """pgq_jsonenc_row: bool, int2, int4 and int8 bare; date and timestamps as to_json
    writes them (ISO 8601, whatever DateStyle); everything else its output as a string."""
    if ev.op == "R" or row is None:
        return "{}"
    table = ev.table
    timed = None
    parts = []
    for i, name in enumerate(table.names):
        if ev.skip_col(i):
            continue
        value = row[i]
        typ = table.types[i]
        if value is None:
            enc = "null"
        elif typ == BOOL:
            enc = "true" if value == "t" else "false"
        elif typ in (INT2, INT4, INT8):
            enc = value
        elif typ in JSON_TIME_TYPES:
            if timed is None:
                timed = json.loads(row_json) if row_json is not None else {}
            enc = '"' + timed[name] + '"'
        else:
            enc = json_quote(value)
        parts.append(json_quote(name) + ":" + enc)
    return "{" + ",".join(parts) + "}"


def json_type(ev: Event) -> str:
    """fill_json_type."""
    out = '{"op":"' + OP_STR[ev.op] + '"'
    info = ev.table.json_info
    if ev.tgargs.pkey_list is not None:
        out += info[: info.index('"pkey":') + 7]
        out += "[" + ",".join(json_quote(k) for k in ev.tgargs.pkey_list.split(",")) + "]"
    else:
        out += info
    return out + "}"


# ---- which updates are events, and sqltriga's SQL (common.c, makesql.c) ----


def _unchanged(ev: Event, i: int) -> bool:
    """Old and new value of column i equal: both NULL, or by the type's equality
    (by their text when it has none, and for arrays)."""
    a, b = ev.old[i], ev.new[i]  # type: ignore[index]
    if a is None and b is None:
        return True
    if a is None or b is None:
        return False
    if a == b:
        return True
    op = ev.table.eq_ops[i]
    if op is None:
        return False
    typ = ev.table.typnames[i]
    return bool(_db.run(f"SELECT $1::{typ} {op} $2::{typ} AS eq", ("text", "text"), (a, b))[0]["eq"])


def is_interesting_change(ev: Event) -> bool:
    """pgq_is_interesting_change: an UPDATE that changed only ignored columns is no event."""
    if ev.op != "U":
        return True
    ignore_count = 0
    for i in range(len(ev.table.names)):
        is_pk = ev.is_pkey(i)
        if not is_pk and ev.tgargs.ignore_list is None:
            continue
        if _unchanged(ev, i):
            continue
        if is_pk:
            raise PgqError("primary key update not allowed")
        if ev.skip_col(i):
            ignore_count += 1
            continue
        return True
    return ignore_count == 0


def _key_eq(name: str, value: str | None) -> str:
    if value is None:
        raise PgqError("logtriga: Unexpected NULL key value")
    return quote_ident(name) + "=" + quote_literal(value)


def make_sql(ev: Event) -> str | None:
    """pgqtriga_make_sql: the statement that replays the change (None: no event)."""
    names = ev.table.names
    if ev.op == "I":
        cols = [i for i in range(len(names)) if not ev.skip_col(i)]
        row = ev.new
        return (
            "(" + ",".join(quote_ident(names[i]) for i in cols) + ") values ("
            + ",".join("null" if row[i] is None else quote_literal(row[i]) for i in cols) + ")"  # type: ignore
        )  # fmt: skip
    if ev.op == "D":
        return " and ".join(_key_eq(names[i], ev.old[i]) for i in range(len(names)) if ev.is_pkey(i))  # type: ignore
    if ev.op == "R":
        return ""
    sets = []
    ignore_count = 0
    for i in range(len(names)):
        if _unchanged(ev, i):
            continue
        if ev.is_pkey(i):
            raise PgqError("primary key update not allowed")
        if ev.skip_col(i):
            ignore_count += 1
            continue
        value = ev.new[i]  # type: ignore[index]
        sets.append(quote_ident(names[i]) + "=" + ("NULL" if value is None else quote_literal(value)))
    sql = ",".join(sets)
    if not sets:
        if ignore_count > 0:
            return None
        first = next((i for i in range(len(names)) if ev.is_pkey(i)), None)
        if first is None:
            raise PgqError("logtriga: Unexpected NULL key value")
        sql = _key_eq(names[first], ev.old[first])  # type: ignore[index]
    where = " and ".join(_key_eq(names[i], ev.old[i]) for i in range(len(names)) if ev.is_pkey(i))  # type: ignore
    return sql + " where " + where
