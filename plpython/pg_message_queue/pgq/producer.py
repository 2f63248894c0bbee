"""insert_event: one cached INSERT per queue into its current event table.

Runs inside pgq.insert_event (SECURITY DEFINER, search_path pinned) without a SET
clause of its own, so every name and operator in its SQL is qualified.

The statement guards itself: it inserts only while the queue row still names the
table it was built for and allows plain inserts, so a rotation or a setting made
by another session sends the next call down the slow path, which looks again.
"""

from __future__ import annotations

from typing import Any

from .. import _db
from .common import quote_fqname

EVENT_TYPES = ("text", "text", "text", "text", "text", "text", "text")
_fast: dict[str, str] = _db.cache({})  # queue name -> the guarded INSERT for its current table
_tx_counts: dict[tuple[str, int], int] = {}  # (queue, txid) -> events, for queue_per_tx_limit

QUEUE_STATE = (
    "SELECT queue_id, queue_data_pfx, queue_cur_table, queue_event_seq, queue_disable_insert, queue_per_tx_limit,"
    " pg_catalog.current_setting('session_replication_role') OPERATOR(pg_catalog.=) 'replica' AS replica"
    " FROM pgq.queue WHERE queue_name OPERATOR(pg_catalog.=) $1"
)


def _columns() -> str:
    return "(ev_id, ev_time, ev_owner, ev_retry, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4)"


def insert_event(queue: str | None, *fields: str | None) -> int | None:
    """Insert one event (ev_type, ev_data, ev_extra1..4); its ev_id, or None when the
    queue refuses it (insert_problem then says why)."""
    if queue is None:
        return None
    sql = _fast.get(queue)
    if sql is not None:
        rows = _db.run(sql, EVENT_TYPES, (queue, *fields))
        if rows:
            return rows[0]["ev_id"]
    state = _db.run(QUEUE_STATE, ("text",), (queue,))
    if not state:
        return None
    q = state[0]
    if q["queue_disable_insert"] and not q["replica"]:
        return None
    if q["queue_per_tx_limit"] is not None and not _count_in_tx(queue, q["queue_per_tx_limit"]):
        return None
    table = quote_fqname(f"{q['queue_data_pfx']}_{q['queue_cur_table']}")
    if not q["queue_disable_insert"] and q["queue_per_tx_limit"] is None:
        _fast[queue] = (
            f"INSERT INTO {table} (ev_time, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4)"
            " SELECT pg_catalog.now(), $2, $3, $4, $5, $6, $7 FROM pgq.queue"
            f" WHERE queue_name OPERATOR(pg_catalog.=) $1 AND queue_id OPERATOR(pg_catalog.=) {int(q['queue_id'])}"
            f" AND queue_cur_table OPERATOR(pg_catalog.=) {int(q['queue_cur_table'])}"
            " AND NOT queue_disable_insert AND queue_per_tx_limit IS NULL RETURNING ev_id"
        )
    return insert_raw(table, q["queue_event_seq"], None, None, None, None, *fields)


def insert_raw(
    table: str, seq: str, ev_id: int | None, ev_time: Any, owner: int | None, retry: int | None, *fields: Any
) -> int:
    """One INSERT into ``table`` (quoted); ev_id from sequence ``seq`` when None."""
    rows = _db.run(
        f"INSERT INTO {table} {_columns()} VALUES (COALESCE($1, pg_catalog.nextval("
        f"{_db.literal(quote_fqname(seq))}::pg_catalog.regclass)),"
        " COALESCE($2, pg_catalog.now()), $3, $4, $5, $6, $7, $8, $9, $10) RETURNING ev_id",
        ("int8", "timestamptz", "int4", "int4", *EVENT_TYPES[1:]),
        (ev_id, ev_time, owner, retry, *fields),
    )
    return rows[0]["ev_id"]


STATIC_HEAD = """CREATE OR REPLACE FUNCTION pgq._pg_mq_insert_static(
    i_queue_id integer, i_table integer, ev_type text, ev_data text,
    ev_extra1 text, ev_extra2 text, ev_extra3 text, ev_extra4 text
)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $static$
DECLARE
    id bigint;
BEGIN
"""


def rebuild_insert() -> int:
    """Write insert_event's executor: one static INSERT per event table of every queue
    (PL/pgSQL plans each once per backend, where Python would run every INSERT in a
    subtransaction of its own). Table names come from queue ids: nothing a user chose."""
    _db.ddl("LOCK TABLE pgq.queue IN SHARE ROW EXCLUSIVE MODE")  # one rebuild at a time
    queues = _db.run("SELECT queue_id, queue_data_pfx, queue_ntables FROM pgq.queue ORDER BY queue_id")
    body = [STATIC_HEAD]
    for n, q in enumerate(queues):
        body.append(f"    {'IF' if n == 0 else 'ELSIF'} i_queue_id = {int(q['queue_id'])} THEN\n")
        for i in range(int(q["queue_ntables"])):
            table = quote_fqname(f"{q['queue_data_pfx']}_{i}")
            body.append(
                f"        {'IF' if i == 0 else 'ELSIF'} i_table = {i} THEN\n"
                f"            INSERT INTO {table}\n"
                "                (ev_time, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4)\n"
                "            VALUES (pg_catalog.now(), $3, $4, $5, $6, $7, $8) RETURNING ev_id INTO id;\n"
                "            RETURN id;\n"
            )
        body.append("        END IF;\n")
    if queues:
        body.append("    END IF;\n")
    body.append("    RETURN NULL;\nEND\n$static$")
    _db.ddl("".join(body))
    return len(queues)


def _count_in_tx(queue: str, limit: int) -> bool:
    txid = int(_db.run("SELECT pg_catalog.txid_current() AS t")[0]["t"])
    for key in [k for k in _tx_counts if k[1] != txid]:
        del _tx_counts[key]
    count = _tx_counts.get((queue, txid), 0) + 1
    _tx_counts[(queue, txid)] = count
    return count <= limit


def insert_problem(queue: str | None) -> str:
    """Why insert_event refused an event, in PgQ's words (its C insert_event_raw)."""
    if queue is None:
        return "Queue name must not be NULL"
    state = _db.run(QUEUE_STATE, ("text",), (queue,))
    if not state:
        return "No such queue"
    q = state[0]
    if q["queue_disable_insert"] and not q["replica"]:
        return "Insert into queue disallowed"
    return f"Queue '{queue}' allows max {q['queue_per_tx_limit']} events from one TX"


def insert_event_raw(
    queue: str | None, ev_id: int | None, ev_time: Any, owner: int | None, retry: int | None, *fields: Any
) -> int | None:
    """PgQ's low-level insert: explicit ev_id, time, owner and retry count."""
    if queue is None:
        return None
    state = _db.run(QUEUE_STATE, ("text",), (queue,))
    if not state:
        return None
    q = state[0]
    if q["queue_disable_insert"] and not q["replica"]:
        return None
    table = quote_fqname(f"{q['queue_data_pfx']}_{q['queue_cur_table']}")
    return insert_raw(table, q["queue_event_seq"], ev_id, ev_time, owner, retry, *fields)


def current_event_table(queue: str | None) -> str:
    from .common import fail

    state = _db.run(QUEUE_STATE, ("text",), (queue,))
    if not state:
        fail("Event queue not found")
    q = state[0]
    if q["queue_disable_insert"] and not q["replica"]:
        fail("Writing to queue disabled")
    return f"{q['queue_data_pfx']}_{q['queue_cur_table']}"
