"""PgQ's info functions: queues, consumers, batches, with PgQ's column names."""

from __future__ import annotations

from typing import Any

from .. import _db
from .common import quote_fqname

QUEUE_INFO = (
    "SELECT q.queue_name, q.queue_ntables, q.queue_cur_table, q.queue_rotation_period, q.queue_switch_time,"
    " q.queue_external_ticker, q.queue_ticker_paused, q.queue_ticker_max_count, q.queue_ticker_max_lag,"
    " q.queue_ticker_idle_period, CURRENT_TIMESTAMP - top.tick_time AS ticker_lag,"
    " CASE WHEN ht.tick_time < top.tick_time THEN (top.tick_event_seq - ht.tick_event_seq)"
    "   / EXTRACT(epoch FROM (top.tick_time - ht.tick_time))::pg_catalog.float8 END AS ev_per_sec,"
    " top.tick_event_seq AS top_seq, q.queue_event_seq, top.tick_id AS last_tick_id"
    " FROM pgq.queue q"
    " LEFT JOIN LATERAL (SELECT tick_id, tick_time, tick_event_seq FROM pgq.tick t WHERE t.tick_queue = q.queue_id"
    "   ORDER BY t.tick_queue DESC, t.tick_id DESC LIMIT 1) top ON true"
    " LEFT JOIN LATERAL (SELECT tick_time, tick_event_seq FROM pgq.tick ht WHERE ht.tick_queue = q.queue_id"
    "   AND ht.tick_id >= top.tick_id - 20 ORDER BY ht.tick_queue ASC, ht.tick_id ASC LIMIT 1) ht ON true"
    " WHERE ($1::pg_catalog.text IS NULL OR q.queue_name = $1) ORDER BY q.queue_name"
)


def get_queue_info(queue: str | None) -> list[dict[str, Any]]:
    out = []
    for row in _db.run(QUEUE_INFO, ("text",), (queue,)):
        row = dict(row)
        seq = _db.run(f"SELECT last_value FROM {quote_fqname(row.pop('queue_event_seq'))}")[0]["last_value"]
        top = row.pop("top_seq")
        row["ev_new"] = None if top is None else seq - top
        out.append(row)
    return out


CONSUMER_INFO = (
    "SELECT q.queue_name, c.co_name AS consumer_name, CURRENT_TIMESTAMP - t.tick_time AS lag,"
    " CURRENT_TIMESTAMP - s.sub_active AS last_seen, s.sub_last_tick AS last_tick, s.sub_batch AS current_batch,"
    " s.sub_next_tick AS next_tick,"
    " (SELECT top.tick_event_seq FROM pgq.tick top WHERE top.tick_queue = q.queue_id"
    "   ORDER BY top.tick_queue DESC, top.tick_id DESC LIMIT 1) - t.tick_event_seq AS pending_events"
    " FROM pgq.queue q, pgq.consumer c, pgq.subscription s"
    " LEFT JOIN pgq.tick t ON t.tick_queue = s.sub_queue AND t.tick_id = s.sub_last_tick"
    " WHERE q.queue_id = s.sub_queue AND c.co_id = s.sub_consumer"
    " AND ($1::pg_catalog.text IS NULL OR q.queue_name = $1) AND ($2::pg_catalog.text IS NULL OR c.co_name = $2)"
    " ORDER BY 1, 2"
)


def get_consumer_info(queue: str | None, consumer: str | None) -> list[dict[str, Any]]:
    return [dict(r) for r in _db.run(CONSUMER_INFO, ("text", "text"), (queue, consumer))]


BATCH_INFO = (
    "SELECT q.queue_name, c.co_name AS consumer_name, prev.tick_time AS batch_start, cur.tick_time AS batch_end,"
    " s.sub_last_tick AS prev_tick_id, s.sub_next_tick AS tick_id, CURRENT_TIMESTAMP - cur.tick_time AS lag,"
    " prev.tick_event_seq AS seq_start, cur.tick_event_seq AS seq_end"
    " FROM pgq.subscription s, pgq.tick cur, pgq.tick prev, pgq.queue q, pgq.consumer c"
    " WHERE s.sub_batch = $1 AND prev.tick_id = s.sub_last_tick AND prev.tick_queue = s.sub_queue"
    " AND cur.tick_id = s.sub_next_tick AND cur.tick_queue = s.sub_queue"
    " AND q.queue_id = s.sub_queue AND c.co_id = s.sub_consumer"
)
BATCH_COLUMNS = (
    "queue_name", "consumer_name", "batch_start", "batch_end", "prev_tick_id", "tick_id", "lag", "seq_start", "seq_end",
)  # fmt: skip


def get_batch_info(batch_id: int | None) -> dict[str, Any]:
    """One row; all NULL for an unknown batch (PgQ's function returns a row either way)."""
    rows = _db.run(BATCH_INFO, ("int8",), (batch_id,))
    return dict(rows[0]) if rows else dict.fromkeys(BATCH_COLUMNS)
