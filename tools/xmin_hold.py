"""``make bench-xmin``: a queue that churns while a transaction holds back xmin.

Starts a private PostgreSQL 15 (fsync on) with one text queue ``q``. A producer
sends single messages in a loop (``pg_mq_send_message``) and a consumer leases
and acknowledges them (``pg_mq_read('q', 10)`` then ``pg_mq_ack``), each on its
own connection in a thread, through three phases:

1. warm-up (``--warmup`` s);
2. hold (``--seconds`` s): another connection runs ``BEGIN ISOLATION LEVEL
   REPEATABLE READ; SELECT 1 FROM pg_mq_queue_q`` and keeps that snapshot open,
   so no row version the churn deletes or updates can be removed meanwhile;
3. recovery (``--recovery`` s) after that transaction commits, starting with a
   manual ``VACUUM pg_mq_queue_q`` (``--no-vacuum``: leave it to autovacuum, which
   stays on with its defaults in every phase).

Every ``--every`` s it prints: messages acked per second, the median and 90th
percentile of the consumer's read+ack pair (client-side, both commits
included; empty reads not counted), the shared buffers (hit + read) and the time
of one claim -- the SQL of one ``pg_mq_read('q', 10)`` run under
``EXPLAIN (ANALYZE, BUFFERS)`` from a separate connection and rolled back -- and
the table's dead and live tuples and its autovacuum count from
``pg_stat_user_tables`` (autovacuum_naptime is the default 1 min). Not a test:
nothing here asserts on timing.

    .venv/bin/python tools/xmin_hold.py [--seconds 60] [--warmup 15] [--recovery 30] [--every 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Postgres

TABLE = "pg_mq_queue_q"
HEADER = (
    f"{'t s':>5} {'sent/s':>7} {'acked/s':>8} {'p50 ms':>7} {'p90 ms':>7}"
    f" {'buf/claim':>9} {'claim ms':>8} {'dead tup':>9} {'live tup':>9} {'autovac':>7}"
)


class Churn:
    """The producer and consumer threads and what they counted since the last sample."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.sent = 0
        self.acked = 0
        self.latencies: list[float] = []
        self.errors: list[BaseException] = []
        bodies = (self._produce, self._consume)
        self.threads = [threading.Thread(target=self._run, args=(b,), daemon=True) for b in bodies]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def take(self) -> tuple[int, int, list[float]]:
        with self.lock:
            got = (self.sent, self.acked, self.latencies)
            self.sent, self.acked, self.latencies = 0, 0, []
        return got

    def _run(self, body: Callable[[psycopg.Connection], None]) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                body(conn)
        except BaseException as exc:  # reported by the main thread
            self.errors.append(exc)
            self.stop.set()

    def _produce(self, conn: psycopg.Connection) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            conn.execute("SELECT pg_mq_send_message('q', %s)", (f"m{i}",))
            with self.lock:
                self.sent += 1

    def _consume(self, conn: psycopg.Connection) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            ids = [r[0] for r in conn.execute("SELECT msg_id FROM pg_mq_read('q', 10)").fetchall()]
            if not ids:
                time.sleep(0.002)
                continue
            done = conn.execute("SELECT count(*) FROM pg_mq_ack('q', %s)", (ids,)).fetchone()
            ms = (time.perf_counter() - t0) * 1000
            with self.lock:
                self.acked += done[0] if done else 0
                self.latencies.append(ms)


def claim_buffers(conn: psycopg.Connection) -> tuple[int, float]:
    """Shared buffers (hit + read) and milliseconds of one pg_mq_read('q', 10) claim, rolled back."""
    conn.execute("BEGIN")
    try:
        sql = conn.execute("SELECT _pg_mq_read_sql('q', 10, '30 seconds', NULL, true, false)").fetchone()[0]
        conn.execute(f"PREPARE claim(int4, interval, timestamptz) AS {sql}")
        doc = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE claim(10, '30 seconds', clock_timestamp())"
        ).fetchone()[0]
    finally:
        conn.execute("ROLLBACK")
        conn.execute("DEALLOCATE claim")
    top = (doc if isinstance(doc, list) else json.loads(doc))[0]
    plan = top["Plan"]
    return plan["Shared Hit Blocks"] + plan["Shared Read Blocks"], float(top["Execution Time"])


def tuples(conn: psycopg.Connection) -> tuple[int, int, int]:
    """Dead and live tuples of the queue table, and how many times autovacuum has vacuumed it."""
    row = conn.execute(
        "SELECT n_dead_tup, n_live_tup, autovacuum_count FROM pg_stat_user_tables WHERE relname = %s", (TABLE,)
    ).fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)


def phase(name: str, seconds: float, every: float, churn: Churn, probe: psycopg.Connection) -> list[dict]:
    print(f"\n{name}", flush=True)
    print(HEADER, flush=True)
    rows = []
    start = time.monotonic()
    last = start
    while time.monotonic() - start < seconds - 1e-6 and not churn.stop.is_set():
        churn.stop.wait(max(0.0, min(start + seconds, last + every) - time.monotonic()))
        now = time.monotonic()
        sent, acked, lat = churn.take()
        span = now - last
        last = now
        buffers, claim_ms = claim_buffers(probe)
        dead, live, autovac = tuples(probe)
        lat.sort()
        p50 = statistics.median(lat) if lat else float("nan")
        p90 = lat[int(0.9 * (len(lat) - 1))] if lat else float("nan")
        row = {
            "t": now - start,
            "sent": sent / span,
            "acked": acked / span,
            "p50": p50,
            "p90": p90,
            "buffers": buffers,
            "claim_ms": claim_ms,
            "dead": dead,
            "live": live,
            "autovac": autovac,
        }
        rows.append(row)
        print(
            f"{row['t']:>5.0f} {row['sent']:>7.0f} {row['acked']:>8.0f} {p50:>7.2f} {p90:>7.2f}"
            f" {buffers:>9} {claim_ms:>8.2f} {dead:>9,} {live:>9,} {autovac:>7}",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="how long the old snapshot is held")
    parser.add_argument("--warmup", type=float, default=15)
    parser.add_argument("--recovery", type=float, default=30)
    parser.add_argument("--every", type=float, default=5, help="seconds between samples")
    parser.add_argument("--no-vacuum", action="store_true", help="no manual VACUUM after the hold; autovacuum only")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pgmq-xmin-"))
    root.chmod(0o755)
    pg = Postgres(root / "pg", fsync=True)
    churn = None
    try:
        pg.start()
        with (
            psycopg.connect(pg.dsn(), autocommit=True) as probe,
            psycopg.connect(pg.dsn(), autocommit=True) as holder,
        ):
            probe.execute("CREATE EXTENSION pg_message_queue CASCADE")
            probe.execute("SELECT pg_mq_create_queue('q', 'text')")
            print(
                "one queue; producer: pg_mq_send_message 1/tx; consumer: pg_mq_read(q, 10) + pg_mq_ack;"
                f" fsync on; a sample every {args.every:g} s"
            )
            churn = Churn(pg.dsn())
            churn.start()
            phase(f"warm-up ({args.warmup:g} s)", args.warmup, args.every, churn, probe)

            holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            holder.execute(f"SELECT 1 FROM {TABLE} LIMIT 1")
            row = holder.execute("SELECT backend_xmin FROM pg_stat_activity WHERE pid = pg_backend_pid()").fetchone()
            print(f"\nholding a REPEATABLE READ snapshot (backend_xmin {row[0] if row else '?'})", flush=True)
            phase(f"xmin held ({args.seconds:g} s)", args.seconds, args.every, churn, probe)
            holder.execute("COMMIT")

            if args.no_vacuum:
                how = "autovacuum only"
            else:
                t0 = time.monotonic()
                probe.execute(f"VACUUM {TABLE}")
                how = f"after a manual VACUUM {TABLE} ({(time.monotonic() - t0) * 1000:.0f} ms)"
            phase(f"recovery ({args.recovery:g} s, {how})", args.recovery, args.every, churn, probe)
            churn.finish()
            if churn.errors:
                raise churn.errors[0]
    finally:
        if churn is not None:
            churn.finish()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
