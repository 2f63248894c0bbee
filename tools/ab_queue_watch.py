"""A/B of a queue watch's trigger statement in its forms, on ONE watched table, run alternately.

Starts a private PostgreSQL 15 (fsync on, pg_stat_statements with track = all) unless
``--dsn`` names a server that has it preloaded. One table ``(guid text PRIMARY KEY, size
integer, note text)`` watched into one queue (payload row); a second, unwatched table is
the baseline. One session per form, each set in its own backend's Python:

- ``none``: the unwatched table (the baseline);
- ``new``: the current statements;
- ``unsorted``: the same, but the members in json_build_object's order (as they were
  before a jsonb queue got them in jsonb's order);
- ``old``: the statements before 1.0.x's cheaper ones (events.LEGACY_STATEMENTS).

Every round (the order rotates) each session runs a 10,000-row INSERT and then an UPDATE
of every row, each its own transaction; we record the backend's CPU time
(/proc/<pid>/schedstat) and, from pg_stat_statements, the trigger statement's mean
execution and planning time. Prints medians and medians of per-round ratios; with
``--explain`` each form's EXPLAIN (ANALYZE, BUFFERS) through auto_explain. Not a test:
nothing asserts on timing.

    .venv/bin/python tools/ab_queue_watch.py [--rounds 15] [--rows 10000] [--type jsonb] [--explain]
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Postgres

DBNAME = "ab_queue_watch"
COLUMNS = "guid text PRIMARY KEY, size integer, note text"
FORMS = ("none", "new", "unsorted", "old")
# Python run in a form's backend (m: the events module)
PATCH = {
    "old": "m.LEGACY_STATEMENTS = True",
    "unsorted": "f = m._events_sql\n"
    "m._events_sql = lambda op, w, c, ctx, src=None, keyed=False: f(op, w, c, ctx, src, False)",
}


def cpu(conn: psycopg.Connection) -> float:
    with open(f"/proc/{conn.info.backend_pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def setup(conn: psycopg.Connection, queue_type: str) -> None:
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_message_queue CASCADE")
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    for table in ("ab_none", "ab_watched"):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} ({COLUMNS})")
    conn.execute("SELECT pg_mq_drop_queue(channel, force => true) FROM pg_mq_queues WHERE channel = 'ab_q'")
    conn.execute(f"SELECT pg_mq_create_queue('ab_q', '{queue_type}')")
    conn.execute("SELECT pg_mq_watch_queue('ab_watched', 'ab_q', operations => '{INSERT,UPDATE}')")


def session(dsn: str, form: str) -> psycopg.Connection:
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("SELECT pg_mq_unwatch('ab_none')")  # loads the package in this backend
    if form in PATCH:
        conn.execute(
            "DO $$\nimport sys\nm = sys.modules['pg_message_queue.events']\n" + PATCH[form] + "\n$$ LANGUAGE plpython3u"
        )
    return conn


def trigger_stats(conn: psycopg.Connection) -> dict[str, tuple[float, float, int]]:
    """The triggers' queue INSERT statements by form and operation: summed execution and
    planning ms, calls."""
    out: dict[str, tuple[float, float, int]] = {}
    for query, exec_ms, plan_ms, calls in conn.execute(
        "SELECT query, total_exec_time, total_plan_time, calls FROM pg_stat_statements"
        " WHERE query LIKE 'WITH i AS (INSERT INTO %pg_mq_queue_ab_q%'"
    ):
        # (constants are $n here) the new form's event writes "pk" before the first "seq"
        keyed = query.index("COALESCE(e.pk::pg_catalog.text") < query.index("|| e.seq ||")
        form = "old" if "ORDER BY e.seq" in query else "new" if keyed else "unsorted"
        key = f"{form} {'UPDATE' if 'FULL JOIN' in query else 'INSERT'}"
        prev = out.get(key, (0.0, 0.0, 0))
        out[key] = (prev[0] + exec_ms, prev[1] + plan_ms, prev[2] + calls)
    return out


def explain(conns: dict[str, psycopg.Connection], rows: int, reset: psycopg.Connection) -> None:
    for form in FORMS[1:]:
        conn = conns[form]
        plans: list[str] = []
        conn.add_notice_handler(lambda d, plans=plans: plans.append(d.message_primary or ""))
        conn.execute("LOAD 'auto_explain'")
        for setting in ("log_min_duration = 0", "log_analyze = on", "log_nested_statements = on",
                        "log_level = notice", "log_timing = on", "log_buffers = on"):  # fmt: skip
            conn.execute(f"SET auto_explain.{setting}")
        reset.execute("TRUNCATE ab_watched, pg_mq_queue_ab_q")
        for what, sql in (
            ("INSERT", f"INSERT INTO ab_watched SELECT 'g' || g, g, 'n' FROM generate_series(1, {rows}) g"),
            ("UPDATE", "UPDATE ab_watched SET size = size + 1"),
        ):
            plans.clear()
            conn.execute(sql)
            print(f"\n=== {form} form, {rows}-row {what}: the trigger's statement")
            for plan in plans:
                if "pg_mq_queue_ab_q" in plan:
                    print(plan)
        conn.execute("SET auto_explain.log_min_duration = -1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--type", default="jsonb", choices=("jsonb", "json", "text"))
    parser.add_argument("--dsn", help="a running server with pg_stat_statements preloaded (else a private one)")
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    pg = None
    root = None
    dsn = args.dsn
    if dsn is None:
        root = Path(tempfile.mkdtemp(prefix="pgmq-ab-queue-"))
        os.chmod(root, 0o755)
        pg = Postgres(root / "pg", fsync=True)
        pg.init()
        with open(pg.data / "postgresql.conf", "a") as f:
            f.write("shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n")
            f.write("pg_stat_statements.track_planning = on\n")
        pg.start()
        pg.psql(f"CREATE DATABASE {DBNAME}")
        dsn = pg.dsn(DBNAME)
    try:
        run(dsn, args)
    finally:
        if pg is not None:
            pg.stop()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


def run(dsn: str, args: argparse.Namespace) -> None:
    admin = psycopg.connect(dsn, autocommit=True)
    setup(admin, args.type)
    conns = {form: session(dsn, form) for form in FORMS}
    if args.explain:
        explain(conns, args.rows, admin)
    insert = "INSERT INTO {t} SELECT 'g' || g, g, 'n' FROM generate_series(1, " + str(args.rows) + ") g"
    update = "UPDATE {t} SET size = size + 1"
    cpus: dict[tuple[str, str], list[float]] = {(f, op): [] for f in FORMS for op in ("INSERT", "UPDATE")}
    for n in range(args.rounds + 1):  # round 0 warms up
        if n == 1:
            admin.execute("SELECT pg_stat_statements_reset()")
        order = FORMS[n % len(FORMS) :] + FORMS[: n % len(FORMS)]
        for form in order:
            table = "ab_none" if form == "none" else "ab_watched"
            admin.execute(f"TRUNCATE {table}, pg_mq_queue_ab_q")
            admin.execute("CHECKPOINT")
            conn = conns[form]
            for op, sql in (("INSERT", insert), ("UPDATE", update)):
                before = cpu(conn)
                with conn.transaction():
                    conn.execute(sql.format(t=table))
                if n:
                    cpus[(form, op)].append(cpu(conn) - before)
    load = os.getloadavg()
    print(
        f"\nQueue watch A/B: {args.rows:,}-row statements into a {args.type} queue, {args.rounds} rounds,"
        f" {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load {load[0]:.2f} {load[1]:.2f}"
    )

    def ratio(a: str, b: str, op: str) -> float:
        return statistics.median(x / y for x, y in zip(cpus[(a, op)], cpus[(b, op)], strict=True))

    print("backend CPU ms (median), medians of the per-round ratios")
    print(f"{'':<8}" + "".join(f"{f:>10}" for f in FORMS) + "   new/old  new/unsorted  unsorted/old  x none")
    for op in ("INSERT", "UPDATE"):
        med = "".join(f"{statistics.median(cpus[(f, op)]) * 1000:>10.1f}" for f in FORMS)
        nones = " / ".join(f"{ratio(f, 'none', op):.2f}" for f in FORMS[1:])
        print(
            f"{op:<8}{med}  {ratio('new', 'old', op):>8.2f}  {ratio('new', 'unsorted', op):>12.2f}"
            f"  {ratio('unsorted', 'old', op):>12.2f}  {nones}"
        )
    print("\ntrigger statement, pg_stat_statements (rounds 1..): mean exec ms, mean plan ms, calls")
    for key, (exec_ms, plan_ms, calls) in sorted(trigger_stats(admin).items()):
        print(f"  {key:<16} {exec_ms / calls:>8.1f} {plan_ms / calls:>8.2f} {calls:>5}")
    for conn in (*conns.values(), admin):
        conn.close()


if __name__ == "__main__":
    main()
