"""``make bench-pgq``: ours (pg_message_queue_pgq) side by side with real PgQ 3.

One private PostgreSQL 15 (fsync on), two databases: ``bench_pgq3`` with real
PgQ 3 (Debian's postgresql-15-pgq3, its insert path is C) and ``bench_ours`` with
pg_message_queue + pg_message_queue_pgq. Every case runs on both, several rounds,
alternating which goes first; prints the median per backend and the ratio
ours/PgQ (median of the per-round ratios), against the target 0.9. Not a test:
nothing here asserts on timing. When the companion extension is not installed,
ours is printed as skipped, never with a number.

Cases (one client connection per consumer, in this process):
  insert1     pgq.insert_event 1 per transaction, synchronous_commit off, timed window
  insert100   100 pgq.insert_event per transaction (one statement), timed window
  drain1      one consumer drains N events (default 200,000) in batches:
              next_batch / get_batch_events / finish_batch, pgq.ticker() after each
  drain2      two consumers (two connections, concurrently) each read all N events
  plain10k    one INSERT of 10,000 rows into a 4-column table without trigger (rows/s)
  logu10k     the same with an AFTER ROW pgq.logutriga trigger: per-row trigger cost is
              1/logu10k - 1/plain10k

The drain cases prefill the queue first (not timed): transactions of --tick-every
events, a tick after each (what pgqd does at ticker_max_count), so the batches
have --tick-every events.

    .venv/bin/python tools/bench_pgq.py [--rounds 3] [--seconds 2] [--events 200000]
        [--only insert1,drain1] [--pgq-only]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import fmt_rate, median, paired_ratios, verdict
from servers import Postgres

BACKENDS = {"pgq3": "pgq", "ours": "pg_message_queue_pgq"}
QUEUE = "bench"
TARGET = 0.9
CASES = {
    "insert1": "insert_event, 1 per transaction (synchronous_commit off)",
    "insert100": "insert_event, 100 per transaction",
    "drain1": "one consumer drains all events in batches",
    "drain2": "two consumers each read all events",
    "plain10k": "10,000-row INSERT into a 4-column table, no trigger (rows/s; baseline of trig10k)",
    "logu10k": "the same INSERT with an AFTER ROW pgq.logutriga trigger (rows/s)",
}
PAYLOAD = "m" * 100


def one(conn: psycopg.Connection, sql: str, params: object = None) -> object:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def fresh_queue(conn: psycopg.Connection, consumers: tuple[str, ...]) -> None:
    if one(conn, "SELECT count(*) FROM pgq.get_queue_info() WHERE queue_name = %s", (QUEUE,)):
        conn.execute("SELECT pgq.drop_queue(%s, true)", (QUEUE,))
    conn.execute("SELECT pgq.create_queue(%s)", (QUEUE,))
    for c in consumers:
        conn.execute("SELECT pgq.register_consumer(%s, %s)", (QUEUE, c))


def tick(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pgq.force_tick(%s)", (QUEUE,))
    conn.execute("SELECT pgq.ticker()")


# --------------------------------------------------------------------------- cases


def run_insert(dsn: str, per_tx: int, seconds: float) -> float:
    """Events per second inserted in ``seconds``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        fresh_queue(conn, ("c",))
        conn.execute("SET synchronous_commit = off")
        batch = [PAYLOAD] * per_tx
        n = 0
        start = time.perf_counter()
        deadline = start + seconds
        if per_tx == 1:
            while time.perf_counter() < deadline:
                conn.execute("SELECT pgq.insert_event('bench', 'bench', %s)", (PAYLOAD,))
                n += 1
        else:
            while time.perf_counter() < deadline:
                conn.execute("SELECT pgq.insert_event('bench', 'bench', p) FROM unnest(%s::text[]) p", (batch,))
                n += per_tx
        elapsed = time.perf_counter() - start
        conn.execute("SELECT pgq.drop_queue(%s, true)", (QUEUE,))
    return n / elapsed


def prefill(conn: psycopg.Connection, events: int, tick_every: int) -> None:
    batch = [PAYLOAD] * tick_every
    left = events
    while left > 0:
        k = min(left, tick_every)
        conn.execute("SELECT pgq.insert_event('bench', 'bench', p) FROM unnest(%s::text[]) p", (batch[:k],))
        tick(conn)
        left -= k


def drain(dsn: str, consumer: str, counts: list[int], errors: list[BaseException], start: threading.Barrier) -> None:
    """Read every batch ``consumer`` has, with pgq.ticker() after each (as pgqd would run
    meanwhile); appends the number of events read to ``counts``."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            n = 0
            start.wait()
            while True:
                batch = one(conn, "SELECT pgq.next_batch('bench', %s)", (consumer,))
                if batch is None:
                    break
                n += len(conn.execute("SELECT * FROM pgq.get_batch_events(%s)", (batch,)).fetchall())
                conn.execute("SELECT pgq.finish_batch(%s)", (batch,))
                conn.execute("SELECT pgq.ticker()")
            counts.append(n)
    except BaseException as exc:
        errors.append(exc)
        start.abort()


def run_drain(dsn: str, consumers: int, events: int, tick_every: int) -> float:
    """Events per second read by all consumers together (each reads all ``events``)."""
    names = tuple(f"c{i}" for i in range(consumers))
    with psycopg.connect(dsn, autocommit=True) as conn:
        fresh_queue(conn, names)
        prefill(conn, events, tick_every)
        conn.execute("VACUUM ANALYZE")
    counts: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(consumers + 1)
    threads = [threading.Thread(target=drain, args=(dsn, c, counts, errors, barrier)) for c in names]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    if counts != [events] * consumers:
        raise RuntimeError(f"consumers read {counts} events, expected {events} each")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pgq.drop_queue(%s, true)", (QUEUE,))
    return sum(counts) / elapsed


def run_trigger_insert(dsn: str, trigger: str | None, rows: int = 10_000) -> float:
    """Rows per second of one INSERT of ``rows`` rows into a fresh table, with
    pgq.<trigger> (AFTER, FOR EACH ROW) on it, or without any."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        fresh_queue(conn, ("c",))
        conn.execute("DROP TABLE IF EXISTS bench_t")
        conn.execute("CREATE TABLE bench_t (id int PRIMARY KEY, name text, n numeric, at timestamptz)")
        if trigger:
            conn.execute(
                f"CREATE TRIGGER t AFTER INSERT OR UPDATE OR DELETE ON bench_t FOR EACH ROW "
                f"EXECUTE FUNCTION pgq.{trigger}('bench')"
            )
        start = time.perf_counter()
        conn.execute(
            "INSERT INTO bench_t SELECT g, 'name ' || g, g * 1.5, now() FROM generate_series(1, %s) g", (rows,)
        )
        elapsed = time.perf_counter() - start
        conn.execute("DROP TABLE bench_t")
        conn.execute("SELECT pgq.drop_queue(%s, true)", (QUEUE,))
    return rows / elapsed


def case_runner(name: str, args: argparse.Namespace) -> Callable[[str], float]:
    return {
        "insert1": lambda dsn: run_insert(dsn, 1, args.seconds),
        "insert100": lambda dsn: run_insert(dsn, 100, args.seconds),
        "drain1": lambda dsn: run_drain(dsn, 1, args.events, args.tick_every),
        "drain2": lambda dsn: run_drain(dsn, 2, args.events, args.tick_every),
        "plain10k": lambda dsn: run_trigger_insert(dsn, None),
        "logu10k": lambda dsn: run_trigger_insert(dsn, "logutriga"),
    }[name]


# --------------------------------------------------------------------------- main


def describe(pg: Postgres, args: argparse.Namespace, versions: dict[str, str]) -> None:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    print("PgQ benchmark: ours (pg_message_queue_pgq) vs real PgQ 3 (not a test: no assertions on timing)")
    print(f"  machine     {platform.node()}: {cpu}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print(f"  server      PostgreSQL 15 private server, fsync=on, databases {', '.join(versions)}")
    for name, v in versions.items():
        print(f"  {name:<11} {v}")
    print(
        f"  rounds      {args.rounds} interleaved (alternating which backend goes first); inserts "
        f"{args.seconds:g}s windows; drains {args.events:,} events, a tick every {args.tick_every}"
    )
    print("  reported    median events/s over rounds; ratio = median of per-round ours/PgQ; target >= 0.9")
    print(flush=True)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0, help="timed window of the insert cases")
    ap.add_argument("--events", type=int, default=200_000, help="events the drain cases read")
    ap.add_argument("--tick-every", type=int, default=1000, help="events per tick (batch) in the drain cases")
    ap.add_argument("--only", help="comma-separated cases: " + ", ".join(CASES))
    ap.add_argument("--pgq-only", action="store_true", help="measure real PgQ alone (ours printed as skipped)")
    args = ap.parse_args(argv)
    cases = [c for c in CASES if not args.only or c in args.only.split(",")]
    root = Path(tempfile.mkdtemp(prefix="pgmq-bench-pgq-"))
    os.chmod(root, 0o755)  # the server runs as postgres when we are root
    pg = Postgres(root / "pg", fsync=True)
    try:
        pg.start()
        dsns: dict[str, str] = {}
        versions: dict[str, str] = {}
        with psycopg.connect(pg.dsn(), autocommit=True) as admin:
            for backend, extension in BACKENDS.items():
                available = admin.execute(
                    "SELECT default_version FROM pg_available_extensions WHERE name = %s", (extension,)
                ).fetchone()
                if available is None or (backend == "ours" and args.pgq_only):
                    why = "--pgq-only" if available else "not installed"
                    versions[backend] = f"skipped: {extension} {why}"
                    continue
                admin.execute(f"CREATE DATABASE bench_{backend}")
                with psycopg.connect(pg.dsn(f"bench_{backend}"), autocommit=True) as conn:
                    conn.execute(f"CREATE EXTENSION {extension} CASCADE")
                    versions[backend] = f"{extension} {available[0]}, pgq.version() {one(conn, 'SELECT pgq.version()')}"
                dsns[backend] = pg.dsn(f"bench_{backend}")
        describe(pg, args, versions)
        if "pgq3" not in dsns:
            raise SystemExit("real PgQ (postgresql-15-pgq3) is not installed: run 'make deps'")
        results: dict[str, dict[str, list[float]]] = {c: {b: [] for b in dsns} for c in cases}
        for case in cases:
            run = case_runner(case, args)
            for r in range(args.rounds):
                order = list(dsns) if r % 2 == 0 else list(reversed(dsns))
                line = []
                for backend in order:
                    rate = run(dsns[backend])
                    results[case][backend].append(rate)
                    line.append(f"{backend} {fmt_rate(rate)}/s")
                print(f"  {case} round {r + 1}: " + ", ".join(line), flush=True)
        print()
        print(f"{'case':<10} {'PgQ 3 events/s':>15} {'ours events/s':>40} {'ours/PgQ':>9}  target 0.9")
        for case in cases:
            theirs = results[case]["pgq3"]
            if "ours" in dsns:
                mine = results[case]["ours"]
                ratio = median(paired_ratios(mine, theirs))
                print(
                    f"{case:<10} {fmt_rate(median(theirs)):>15} {fmt_rate(median(mine)):>40} "
                    f"{ratio:>9.2f}  {verdict(ratio, TARGET)}"
                )
            else:
                print(f"{case:<10} {fmt_rate(median(theirs)):>15} {versions['ours']:>40} {'n/a':>9}  n/a")
        print()
        for case, title in CASES.items():
            if case in cases:
                print(f"  {case:<10} {title}")
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
