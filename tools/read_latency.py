"""``make bench-read``: how long one read takes while many messages are in flight.

Starts a private PostgreSQL 15, creates a queue holding ``--leased`` messages
leased for an hour and ``--ready`` ready ones, then times single calls of
``pg_mq_read``, ``pg_mq_get_msg_text`` and ``pg_mq_pop`` (10 messages each,
every call in its own transaction, rolled back so that every call sees the same
queue), with priority_ordering on and off. Prints the median and the 90th
percentile of the server-side time of the call. Not a test: nothing here asserts
on timing.

    .venv/bin/python tools/read_latency.py [--leased 100000] [--ready 1000] [--calls 40]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Postgres

CALLS = {
    "pg_mq_read(q, 10)": "SELECT count(*) FROM pg_mq_read('q', 10, '1 hour')",
    "pg_mq_get_msg_text(q, 10)": "SELECT count(*) FROM pg_mq_get_msg_text('q', 10)",
    "pg_mq_pop(q, 10)": "SELECT count(*) FROM pg_mq_pop('q', 10)",
}


def fill(conn: psycopg.Connection, leased: int, ready: int, ordering: str) -> None:
    conn.execute("SELECT pg_mq_drop_queue('q', force => true) FROM pg_mq_config_catalog WHERE channel = 'q'")
    conn.execute("SELECT pg_mq_create_queue('q', 'text')")
    conn.execute("SELECT pg_mq_set_queue_config('q', 'priority_ordering', %s)", (ordering,))
    conn.execute("SELECT pg_mq_send_batch('q', array_agg('m' || i)) FROM generate_series(1, %s) i", (leased,))
    conn.execute("SELECT count(*) FROM pg_mq_read('q', %s, '1 hour')", (leased,))
    conn.execute("SELECT pg_mq_send_batch('q', array_agg('r' || i)) FROM generate_series(1, %s) i", (ready,))
    conn.execute("VACUUM ANALYZE pg_mq_queue_q")


def timed(conn: psycopg.Connection, sql: str, calls: int) -> list[float]:
    """Server-side milliseconds of ``sql``, one rolled-back transaction per call."""
    took = []
    for _ in range(calls + 3):
        with conn.transaction(force_rollback=True):
            conn.execute("SELECT set_config('pgmq.t0', clock_timestamp()::text, true)")
            got = conn.execute(sql).fetchone()
            assert got is not None and got[0] == 10, got
            ms = conn.execute(
                "SELECT extract(epoch FROM clock_timestamp() - current_setting('pgmq.t0')::timestamptz) * 1000"
            ).fetchone()
            assert ms is not None
            took.append(float(ms[0]))
    return took[3:]  # the first calls warm the caches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leased", type=int, default=100_000)
    parser.add_argument("--ready", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pgmq-readlat-"))
    root.chmod(0o755)
    pg = Postgres(root / "pg")
    try:
        pg.start()
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_message_queue CASCADE")
            print(f"{args.leased:,} leased + {args.ready:,} ready messages; {args.calls} calls each, ms per call")
            print(f"{'call':<28} {'priority_ordering':<18} {'median':>8} {'p90':>8}")
            for ordering in ("on", "off"):
                fill(conn, args.leased, args.ready, ordering)
                for name, sql in CALLS.items():
                    took = sorted(timed(conn, sql, args.calls))
                    p90 = took[int(0.9 * (len(took) - 1))]
                    print(f"{name:<28} {ordering:<18} {statistics.median(took):>8.2f} {p90:>8.2f}", flush=True)
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
