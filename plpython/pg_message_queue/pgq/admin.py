"""Queues: create, drop, settings, grants and storage of the event tables."""

from __future__ import annotations

from typing import Any

from .. import _db
from . import producer, ticker
from .common import fail, one, quote_fqname, split_fqname

# set_queue_config's parameters and the SQL type of their column.
SETTINGS = {
    "queue_ticker_max_count": "pg_catalog.int4",
    "queue_ticker_max_lag": "pg_catalog.interval",
    "queue_ticker_idle_period": "pg_catalog.interval",
    "queue_ticker_paused": "pg_catalog.bool",
    "queue_rotation_period": "pg_catalog.interval",
    "queue_external_ticker": "pg_catalog.bool",
}


def queue_row(name: str | None, lock: bool = False) -> dict[str, Any] | None:
    return one(
        "SELECT * FROM pgq.queue WHERE queue_name = $1" + (" FOR UPDATE" if lock else ""),
        ("text",),
        (name,),
    )


def create_queue(name: str | None) -> int:
    """1 when the queue was created, 0 when it existed. Makes its sequences, the
    parent event table and queue_ntables event tables, then its first tick."""
    if name is None:
        fail("Invalid NULL value")
    if queue_row(name) is not None:
        return 0
    qid = int(one("SELECT pg_catalog.nextval('pgq.queue_queue_id_seq') AS id")["id"])
    prefix, tick_seq, ev_seq = f"pgq.event_{qid}", f"pgq.event_{qid}_tick_seq", f"pgq.event_{qid}_id_seq"
    ntables = one(
        "INSERT INTO pgq.queue (queue_id, queue_name, queue_data_pfx, queue_event_seq, queue_tick_seq)"
        " VALUES ($1, $2, $3, $4, $5) RETURNING queue_ntables",
        ("int4", "text", "text", "text", "text"),
        (qid, name, prefix, ev_seq, tick_seq),
    )["queue_ntables"]
    _db.ddl(f"CREATE SEQUENCE {quote_fqname(tick_seq)}")
    _db.ddl(f"CREATE SEQUENCE {quote_fqname(ev_seq)}")
    _db.ddl(f"CREATE TABLE {quote_fqname(prefix)} () INHERITS (pgq.event_template)")
    for i in range(ntables):
        table = quote_fqname(f"{prefix}_{i}")
        _db.ddl(f"CREATE TABLE {table} () INHERITS ({quote_fqname(prefix)})")
        _db.ddl(
            f"ALTER TABLE {table} ALTER COLUMN ev_id"
            f" SET DEFAULT pg_catalog.nextval({_db.literal(ev_seq)}::pg_catalog.regclass)"
        )
        _db.ddl(f"CREATE INDEX {_db.ident(f'event_{qid}_{i}_txid_idx')} ON {table} (ev_txid)")
    grant_perms(name)
    ticker.tick(name)
    tune_storage(name)
    producer.rebuild_insert()
    return 1


def drop_queue(name: str | None, force: bool | None) -> int:
    """Drop a queue; with consumers attached only when ``force`` (which unregisters them)."""
    q = queue_row(name, lock=True)
    if q is None:
        fail("No such event queue")
    if force:
        from . import consumer

        for row in _db.run(
            "SELECT c.co_name FROM pgq.subscription s JOIN pgq.consumer c ON c.co_id = s.sub_consumer"
            " WHERE s.sub_queue = $1 ORDER BY 1",
            ("int4",),
            (q["queue_id"],),
        ):
            consumer.unregister_consumer(name, row["co_name"])
    elif one("SELECT 1 FROM pgq.subscription WHERE sub_queue = $1 LIMIT 1", ("int4",), (q["queue_id"],)):
        fail("cannot drop queue, consumers still attached")
    for i in range(q["queue_ntables"]):
        _db.ddl(f"DROP TABLE {quote_fqname(q['queue_data_pfx'] + '_' + str(i))}")
    _db.ddl(f"DROP TABLE {quote_fqname(q['queue_data_pfx'])}")
    _db.run("DELETE FROM pgq.tick WHERE tick_queue = $1", ("int4",), (q["queue_id"],))
    _db.ddl(f"DROP SEQUENCE {quote_fqname(q['queue_tick_seq'])}")
    _db.ddl(f"DROP SEQUENCE {quote_fqname(q['queue_event_seq'])}")
    _db.run("DELETE FROM pgq.queue WHERE queue_name = $1", ("text",), (name,))
    _db.forget(q["queue_data_pfx"])
    producer.rebuild_insert()
    return 1


def set_queue_config(name: str | None, param: str | None, value: str | None) -> int:
    if name is None or param is None:
        fail("Invalid NULL value")
    if queue_row(name) is None:
        fail("No such event queue")
    column = "queue_" + param
    if column not in SETTINGS:
        fail(f'cannot change parameter "{param}s"')  # sic: PgQ's format string has %s
    _db.run(
        f"UPDATE pgq.queue SET {column} = $1::pg_catalog.text::{SETTINGS[column]} WHERE queue_name = $2",
        ("text", "text"),
        (value, name),
    )
    return 1


def grant_perms(name: str | None) -> int:
    """The queue's sequences readable by all; its event tables get event_template's grants."""
    q = queue_row(name)
    if q is None:
        fail("Queue not found")
    _db.ddl(f"GRANT SELECT ON {quote_fqname(q['queue_tick_seq'])} TO public")
    _db.ddl(f"GRANT SELECT ON {quote_fqname(q['queue_event_seq'])} TO public")
    _db.ddl(f"GRANT USAGE ON {quote_fqname(q['queue_event_seq'])} TO pgq_admin")
    schema, table = split_fqname(q["queue_data_pfx"])
    grant_perms_from("pgq", "event_template", schema, table)
    for i in range(q["queue_ntables"]):
        grant_perms_from("pgq", "event_template", schema, f"{table}_{i}")
    return 1


def grant_perms_from(src_schema: str, src_table: str, dst_schema: str, dst_table: str) -> int:
    """Copy the grants of one table to another (CREATE TABLE LIKE does not)."""
    target = _db.ident(dst_schema) + "." + _db.ident(dst_table)
    for g in _db.run(
        "SELECT grantee, privilege_type, is_grantable FROM information_schema.table_privileges"
        " WHERE table_schema = $1 AND table_name = $2",
        ("text", "text"),
        (src_schema, src_table),
    ):
        grantee = "public" if g["grantee"] == "PUBLIC" else _db.ident(g["grantee"])
        option = " WITH GRANT OPTION" if g["is_grantable"] == "YES" else ""
        _db.ddl(f"GRANT {g['privilege_type']} ON {target} TO {grantee}{option}")
    return 1


def tune_storage(name: str | None) -> int:
    """Event tables are only inserted into and truncated: full pages, no autovacuum."""
    q = queue_row(name)
    if q is None:
        return 0
    for i in range(q["queue_ntables"]):
        _db.ddl(
            f"ALTER TABLE {quote_fqname(q['queue_data_pfx'] + '_' + str(i))}"
            " SET (fillfactor = 100, autovacuum_enabled = off, toast.autovacuum_enabled = off)"
        )
    return 1


def seq_getval(name: str) -> int:
    return one(f"SELECT last_value FROM {quote_fqname(name)}")["last_value"]


def seq_setval(name: str, value: int) -> int:
    current = seq_getval(name)
    if current < value:
        _db.run("SELECT pg_catalog.setval($1::pg_catalog.regclass, $2)", ("text", "int8"), (quote_fqname(name), value))
        return value
    return current
