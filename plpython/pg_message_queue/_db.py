"""The one place that talks to ``plpy``: plans, errors, quoting, the schema.

Prepared plans are cached per backend, keyed by the SQL text (which already
contains every identifier it depends on), at most ``MAX_PLANS`` of them: the
least recently used go first, and :func:`forget` drops those of a dropped or
changed queue at once.

Every SQL function's generated prologue calls :func:`bind` the first time that
function runs in a backend: a new extension (dropped and created again, perhaps
in another schema) empties every cache registered with :func:`cache`.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, NoReturn

import plpy  # provided by PL/Python inside the server

MAX_PLANS = 256
_plans: OrderedDict[str, Any] = OrderedDict()
_schema: list[str] = []
_bound: dict[str, int] = {}  # extension name -> the pg_extension oid the caches belong to
_caches: list[dict[Any, Any]] = []


def cache(store: dict[Any, Any]) -> dict[Any, Any]:
    """Register a module-level cache to be emptied when the extension changes."""
    _caches.append(store)
    return store


def bind(extension: str) -> None:
    """Called once per SQL function and backend: empty the caches when ``extension``
    is not the installation they were filled for."""
    rows = plpy.execute(
        plpy.prepare(
            # Runs before a procedure pins its search_path: every name qualified, operators too.
            "SELECT e.oid, pg_catalog.quote_ident(n.nspname) AS s FROM pg_catalog.pg_extension e"
            " JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace"
            " WHERE e.extname OPERATOR(pg_catalog.=) $1",
            ["pg_catalog.name"],
        ),
        [extension],
    )
    if not rows:
        fail("55000", f"{extension} is not installed in this database")
    oid = int(rows[0]["oid"])
    if _bound.get(extension) == oid:
        return
    if extension in _bound:
        reset()
    _bound[extension] = oid
    if extension == "pg_message_queue":
        _schema[:] = [rows[0]["s"]]


def reset() -> None:
    """Forget every cached plan, schema and registered cache."""
    _plans.clear()
    _schema.clear()
    _bound.clear()
    for store in _caches:
        store.clear()


def plan(sql: str, types: tuple[str, ...] = ()) -> Any:
    """A prepared plan for ``sql`` with parameter ``types``, cached per backend."""
    key = sql + "\x00" + ",".join(types)
    found = _plans.get(key)
    if found is None:
        found = plpy.prepare(sql, list(types))
        _plans[key] = found
        if len(_plans) > MAX_PLANS:
            _plans.popitem(last=False)
    else:
        _plans.move_to_end(key)
    return found


def forget(fragment: str) -> None:
    """Drop the cached plans whose SQL mentions ``fragment`` (a dropped queue's table)."""
    for key in [k for k in _plans if fragment in k]:
        del _plans[key]


def run(sql: str, types: tuple[str, ...] = (), args: tuple[Any, ...] = ()) -> Any:
    """Execute ``sql`` through its cached plan with ``args`` as parameters."""
    try:
        return plpy.execute(plan(sql, types), list(args))
    except plpy.SPIError as exc:
        raise _clean(exc) from None


def run_once(sql: str, types: tuple[str, ...] = (), args: tuple[Any, ...] = ()) -> Any:
    """Execute ``sql`` once, without caching its plan (a text that will not come again)."""
    try:
        return plpy.execute(plpy.prepare(sql, list(types)), list(args))
    except plpy.SPIError as exc:
        raise _clean(exc) from None


_seconds: dict[str, float] = cache({})


def interval_seconds(value: str) -> float:
    """An interval's length in seconds (months count 30 days), cached per text form."""
    found = _seconds.get(value)
    if found is None:
        if len(_seconds) > 1000:
            _seconds.clear()
        found = run("SELECT EXTRACT(epoch FROM $1::pg_catalog.interval)::float8 AS s", ("text",), (value,))[0]["s"]
        _seconds[value] = found
    return found


def ddl(sql: str) -> None:
    """Run a one-off statement (DDL is not worth a cached plan)."""
    try:
        plpy.execute(sql)
    except plpy.SPIError as exc:
        raise _clean(exc) from None


# PL/Python prefixes an error's message with its exception's class name (and
# module, unless "builtins"): this class makes that prefix "pg_message_queue".
Error = type("pg_message_queue", (plpy.Error,), {"__module__": "builtins"})


# The same for errors of the statements we run: still an SPIError (callers catch
# those), same SQLSTATE, detail and hint (spidata), but no "spiexceptions.X:" class
# name in the message, and one prefix when an error passes through several of our
# functions.
QueryError = type("pg_message_queue", (plpy.SPIError,), {"__module__": "builtins"})
_PREFIX = re.compile(r"^(?:(?:spiexceptions\.\w+|pg_message_queue|plpy\.\w+): )+")


def _clean(exc: Any) -> Any:
    if isinstance(exc, QueryError):
        return exc
    clean = QueryError(_PREFIX.sub("", message(exc)))
    clean.sqlstate = getattr(exc, "sqlstate", None) or "XX000"
    spidata = getattr(exc, "spidata", None)
    if spidata is not None:
        clean.spidata = spidata
    return clean


def fail(sqlstate: str, message: str, detail: str | None = None, hint: str | None = None) -> NoReturn:
    """Raise an ERROR with an SQLSTATE; PL/Python reads these attributes."""
    exc = Error(message)
    exc.sqlstate = sqlstate
    if detail is not None:
        exc.detail = detail
    if hint is not None:
        exc.hint = hint
    raise exc


def message(exc: BaseException) -> str:
    """An error's own text, without the class names PL/Python prints before it."""
    return _PREFIX.sub("", str(exc.args[0])) if exc.args else type(exc).__name__


def warn(message: str, detail: str | None = None) -> None:
    if detail is None:
        plpy.warning(message)  # detail=None would print "DETAIL: None"
    else:
        plpy.warning(message, detail=detail)


def ident(name: str) -> str:
    return plpy.quote_ident(name)


def literal(value: str) -> str:
    return plpy.quote_literal(value)


def schema() -> str:
    """The extension's schema as a quoted identifier, looked up once per backend."""
    if not _schema:
        rows = plpy.execute(
            "SELECT pg_catalog.quote_ident(n.nspname) AS s FROM pg_catalog.pg_extension e"
            " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
            " WHERE e.extname = 'pg_message_queue'"
        )
        if not rows:
            fail("55000", "pg_message_queue is not installed in this database")
        _schema.append(rows[0]["s"])
    return _schema[0]


def commit() -> None:
    """End the transaction of a CALLed procedure and start a new one."""
    plpy.commit()
    pin_search_path()


def commit_first(procedure: str) -> None:
    """A looping procedure's first COMMIT, before any work: inside a transaction block
    (or a function) it fails at once, with a clear 2D000."""
    try:
        commit()
    except plpy.SPIError as exc:
        if getattr(exc, "sqlstate", None) != "2D000":
            raise
        fail(
            "2D000",
            f"{procedure} cannot run inside a transaction block: it commits after every batch",
            hint="CALL it on its own, outside BEGIN ... COMMIT (and not from a function).",
        )


def pin_search_path() -> str:
    """For procedures, which cannot have a SET clause: pg_catalog first, for this transaction.

    Returns the search_path it replaced, for :func:`restore_search_path`.
    """
    rows = plpy.execute(
        "SELECT pg_catalog.current_setting('search_path') AS old,"
        " pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true) AS new"
    )
    return rows[0]["old"]


def restore_search_path(old: str) -> None:
    """Give a procedure's caller back its search_path (CALL inside a DO block or a
    transaction would otherwise keep the pinned one until the transaction ends)."""
    plpy.execute(plpy.prepare("SELECT pg_catalog.set_config('search_path', $1, true)", ["text"]), [old])


def subtransaction() -> Any:
    return plpy.subtransaction()


SPIError = plpy.SPIError


def must_propagate(exc: Any) -> bool:
    """Errors a caller may never swallow: cancels, shutdowns, serialization and deadlocks.

    (Every plpy.execute runs in its own subtransaction, so other SPI errors can
    be caught safely.)
    """
    return str(getattr(exc, "sqlstate", "") or "")[:2] in ("57", "40", "53", "58", "XX")
