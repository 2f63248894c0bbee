"""What every pgq module shares: PgQ's errors and qualified names."""

from __future__ import annotations

from typing import Any, NoReturn

from .. import _db

# The version of PgQ whose API this is: pgqd refuses a pgq.version() below 3.
PGQ_VERSION = "3.5"


def fail(message: str) -> NoReturn:
    """PgQ's own errors: SQLSTATE P0001 (RAISE EXCEPTION) with PgQ's message. The SQL
    wrappers strip the ``pg_message_queue:`` prefix PL/Python puts in front."""
    _db.fail("P0001", message)


def split_fqname(name: str) -> tuple[str, str]:
    """PgQ's rule: schema before the first dot, else public."""
    schema, dot, rest = name.partition(".")
    return (schema, rest) if dot else ("public", name)


def quote_fqname(name: str) -> str:
    schema, rel = split_fqname(name)
    return _db.ident(schema) + "." + _db.ident(rel)


def one(sql: str, types: tuple[str, ...] = (), args: tuple[Any, ...] = ()) -> dict[str, Any] | None:
    rows = _db.run(sql, types, args)
    return rows[0] if rows else None


def plpgsql_text(value: Any) -> str:
    """How PL/pgSQL's RAISE prints a value: NULL as <NULL>."""
    return "<NULL>" if value is None else str(value)
