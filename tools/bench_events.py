"""``make bench-events``: the cost of change events, as a ratio to the same statement
on a table with no trigger, measured in the same run.

Starts a private PostgreSQL 15 (fsync on) and a private RabbitMQ (tools/servers.py),
creates one table per variant with the same columns, and times, from one client,
a 10,000-row INSERT and then a 10,000-row UPDATE of every row, each in its own
transaction, commit included (the time an application waits). Variants:

- ``none``: no trigger (the baseline of record);
- ``seed per-row plpgsql``: seed 002's hand-written ``sysmeta_notify`` trigger, a
  per-row PL/pgSQL ``pg_notify`` with a lookup, as the issue asks for;
- ``watch notify`` (payload keys), ``watch queue`` (payload row, into a jsonb queue),
  ``watch queue json`` (the same into a queue created as json: no jsonb to parse);
- ``watch amqp``: payload row to a real RabbitMQ; the commit-time trigger publishes
  the 10,000 messages and waits for the broker's confirms before COMMIT returns;
- ``watch amqp strict``: the same watch, broker ``strict``: COMMIT returns once the
  outbox rows are written, the relay sends them later (the documented path for
  "never sent unless committed"); the outbox is emptied between rounds.

Rounds are interleaved (the order of the variants rotates every round); the table
shows per-variant medians, the median of the per-round ratios to ``none``, and the median
CPU time of the backend that ran the statement, trigger included (/proc/<pid>/schedstat:
less moved by other load on a shared machine than the wall time). The "(before)" variants
are the same watches in a session that runs the trigger statements as they were before
1.0.x's cheaper ones (events.LEGACY_STATEMENTS): after / before ratios from the same rounds.
``--explain`` prints EXPLAIN ANALYZE of the statement each watch's trigger runs
(auto_explain, nested statements). Not a test: nothing here asserts on timing.

    .venv/bin/python tools/bench_events.py [--rounds 5] [--rows 10000] [--only notify,queue,queue0] [--explain]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Postgres, RabbitMQ

DBNAME = "bench_events"
COLUMNS = "guid text PRIMARY KEY, size integer, note text"

SEED = """
CREATE TABLE identifier (guid text PRIMARY KEY, docid text);
CREATE FUNCTION sysmeta_notify() RETURNS trigger AS $sysmeta_notify$
DECLARE
  doc_id varchar;
BEGIN
  SELECT docid INTO doc_id FROM identifier WHERE guid=NEW.guid;
  PERFORM pg_notify( 'sysm_watch', json_build_object('op', TG_OP, 'pid', NEW.guid, 'docid', doc_id)::text );
  RETURN NULL;
END;
$sysmeta_notify$ LANGUAGE plpgsql;
"""

# name -> (table, SQL making its trigger or watch, SQL emptying what it wrote between rounds)
VARIANTS: dict[str, tuple[str, str, str]] = {
    "none": ("t_none", "", ""),
    "seed per-row plpgsql": (
        "t_seed",
        "CREATE TRIGGER sysmeta_notify AFTER INSERT OR UPDATE ON t_seed"
        " FOR EACH ROW EXECUTE PROCEDURE sysmeta_notify()",
        "",
    ),
    "watch notify": (
        "t_notify",
        "SELECT pg_mq_watch_notify('t_notify', 'bench_n', operations => '{INSERT,UPDATE}')",
        "",
    ),
    "watch queue": (
        "t_queue",
        "SELECT pg_mq_watch_queue('t_queue', 'bench_q', operations => '{INSERT,UPDATE}')",
        "TRUNCATE pg_mq_queue_bench_q",
    ),
    # the same watch into a queue created as json: no jsonb to parse
    "watch queue json": (
        "t_queue_j",
        "SELECT pg_mq_create_queue('bench_qj', 'json');"
        " SELECT pg_mq_watch_queue('t_queue_j', 'bench_qj', operations => '{INSERT,UPDATE}')",
        "TRUNCATE pg_mq_queue_bench_qj",
    ),
    # not a variant: the floor of "watch queue", 10,000 messages of '{}' written straight
    # into its queue table (indexes, defaults, sequence, statement trigger), no table write
    "queue write alone": ("t_none", "", "TRUNCATE pg_mq_queue_bench_q"),
    "watch amqp": (
        "t_amqp",
        "SELECT pg_mq_watch_amqp('t_amqp', 1, 'amq.topic', operations => '{INSERT,UPDATE}')",
        "DELETE FROM amqp.outbox",
    ),
    "watch amqp strict": (
        "t_amqp_strict",
        "SELECT pg_mq_watch_amqp('t_amqp_strict', 2, 'amq.topic', operations => '{INSERT,UPDATE}')",
        "DELETE FROM amqp.outbox",
    ),
}
# The same watches in a session whose statements are those before 1.0.x's cheaper ones
# (events.LEGACY_STATEMENTS): the "before" of each figure, measured in the same rounds.
BEFORE = " (before)"
for _name in ("watch notify", "watch queue", "watch amqp", "watch amqp strict"):
    _table, _make, _reset = VARIANTS[_name]
    VARIANTS[_name + BEFORE] = (
        _table + "_b",
        _make.replace(f"'{_table}'", f"'{_table}_b'").replace("'bench_q'", "'bench_qb'"),
        _reset.replace("bench_q", "bench_qb"),
    )
SHORT = {"none": "none", "seed": "seed per-row plpgsql", "notify": "watch notify", "queue": "watch queue",
         "queuejson": "watch queue json", "amqp": "watch amqp", "strict": "watch amqp strict",
         "floor": "queue write alone",
         "notify0": "watch notify" + BEFORE, "queue0": "watch queue" + BEFORE, "amqp0": "watch amqp" + BEFORE,
         "strict0": "watch amqp strict" + BEFORE}  # fmt: skip
TARGETS = {
    "watch notify": ("< seed per-row plpgsql", None),
    "watch queue": ("<= 2x", 2.0),
    "watch amqp": ("<= 2.5x", 2.5),
}


def legacy_session(dsn: str) -> psycopg.Connection:
    """A session whose watches' triggers run the statements as they were before (see
    events.LEGACY_STATEMENTS); set in this backend's Python only."""
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("SELECT pg_mq_unwatch('t_none')")  # loads the package in this backend
    conn.execute(
        "DO $$\nimport sys\nsys.modules['pg_message_queue.events'].LEGACY_STATEMENTS = True\n$$ LANGUAGE plpython3u"
    )
    return conn


def server_cpu(conn: psycopg.Connection) -> float:
    """Seconds the connection's backend has run on a CPU (Linux schedstat; NaN elsewhere):
    less moved by other load on a shared machine than the wall time."""
    try:
        with open(f"/proc/{conn.info.backend_pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return float("nan")


def timed(conn: psycopg.Connection, sql: str) -> tuple[float, float]:
    """Wall time (commit included) and the backend's CPU time of one transaction."""
    cpu = server_cpu(conn)
    start = time.perf_counter()
    with conn.transaction():
        conn.execute(sql)
    return time.perf_counter() - start, server_cpu(conn) - cpu


def setup(conn: psycopg.Connection, names: list[str], rabbit_port: int) -> None:
    conn.execute("CREATE EXTENSION pg_message_queue CASCADE")
    conn.execute(SEED)
    conn.execute(
        "INSERT INTO amqp.broker (broker_id, host, port, vhost, username, password, strict)"
        f" VALUES (1, '127.0.0.1', {rabbit_port}, '/', 'guest', 'guest', false),"
        f" (2, '127.0.0.1', {rabbit_port}, '/', 'guest', 'guest', true)"
    )
    for name in names:
        table, make, _reset = VARIANTS[name]
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({COLUMNS})")
        if make:
            conn.execute(make)


def explain(conn: psycopg.Connection, names: list[str], rows: int) -> None:
    """EXPLAIN ANALYZE of what each watch's trigger runs, through auto_explain."""
    plans: list[str] = []
    conn.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
    conn.execute("LOAD 'auto_explain'")
    for setting in ("log_min_duration = 0", "log_analyze = on", "log_nested_statements = on", "log_level = notice",
                    "log_timing = on", "log_buffers = off"):  # fmt: skip
        conn.execute(f"SET auto_explain.{setting}")
    for name in names:
        if not name.startswith("watch"):
            continue
        table, _make, reset = VARIANTS[name]
        for what, sql in (
            ("INSERT", f"INSERT INTO {table} SELECT 'g' || g, g, 'n' FROM generate_series(1, {rows}) g"),
            ("UPDATE", f"UPDATE {table} SET size = size + 1"),
        ):
            plans.clear()
            conn.execute(sql)
            trigger = [p for p in plans if "pg_mq" in p or "amqp.outbox" in p or "pg_notify" in p]
            print(f"\n=== {name}, {rows}-row {what}: the trigger's statement(s)")
            for plan in trigger[:3]:
                print(plan)
        conn.execute(f"TRUNCATE {table}")
        if reset:
            conn.execute(reset)
    conn.execute("SET auto_explain.log_min_duration = -1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated: seed,notify,queue,amqp,strict,floor; notify0,queue0,amqp0,strict0 are the"
        " same watches before 1.0.x's cheaper statements (none always runs)",
    )
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the triggers' statements")
    args = parser.parse_args()
    names = ["none"] + [SHORT[s] for s in (args.only.split(",") if args.only else SHORT) if s and s != "none"]
    names = list(dict.fromkeys(names))
    if "queue write alone" in names and "watch queue" not in names:
        names.append("watch queue")
    if "watch queue" + BEFORE in names and "watch queue" not in names:
        names.append("watch queue")  # its queue: the floor and the setup need it
    if shutil.which("psql") is None:
        raise SystemExit("psql is missing: run 'make deps'")
    root = Path(tempfile.mkdtemp(prefix="pgmq-bench-events-"))
    os.chmod(root, 0o755)  # the server runs as postgres when we are root
    pg = Postgres(root / "pg", fsync=True)
    rabbit = RabbitMQ(root / "rabbitmq") if any("amqp" in n for n in names) else None
    try:
        pg.start()
        if rabbit is not None:
            rabbit.start()
        pg.psql(f"CREATE DATABASE {DBNAME}")
        with psycopg.connect(pg.dsn(DBNAME), autocommit=True) as conn:
            setup(conn, names, rabbit.port if rabbit else 1)
            legacy = legacy_session(pg.dsn(DBNAME)) if any(n.endswith(BEFORE) for n in names) else conn
            if args.explain:
                explain(conn, names, args.rows)
            insert = "INSERT INTO {t} SELECT 'g' || g, g, 'n' FROM generate_series(1, " + str(args.rows) + ") g"
            update = "UPDATE {t} SET size = size + 1"
            floor = (
                f"INSERT INTO pg_mq_queue_bench_q (payload) SELECT '{{}}'::jsonb FROM generate_series(1, {args.rows})"
            )
            times: dict[tuple[str, str], list[float]] = {(n, op): [] for n in names for op in ("INSERT", "UPDATE")}
            cpus: dict[tuple[str, str], list[float]] = {key: [] for key in times}
            for warm in (True,) + (False,) * args.rounds:
                done = len(times[(names[0], "INSERT")])
                order = names[done % len(names) :] + names[: done % len(names)]
                for name in order:
                    table, _make, reset = VARIANTS[name]
                    conn.execute(f"TRUNCATE {table}")
                    if reset:
                        conn.execute(reset)
                    conn.execute("CHECKPOINT")
                    if name == "queue write alone":
                        ins = timed(conn, floor)
                        conn.execute(reset)
                        upd = timed(conn, floor)
                    else:
                        session = legacy if name.endswith(BEFORE) else conn
                        ins = timed(session, insert.format(t=table))
                        upd = timed(session, update.format(t=table))
                    if not warm:
                        for op, (wall, cpu) in (("INSERT", ins), ("UPDATE", upd)):
                            times[(name, op)].append(wall)
                            cpus[(name, op)].append(cpu)
            report(names, times, cpus, args, conn)
    finally:
        pg.stop()
        if rabbit is not None:
            rabbit.stop()
        shutil.rmtree(root, ignore_errors=True)


def report(
    names: list[str],
    times: dict[tuple[str, str], list[float]],
    cpus: dict[tuple[str, str], list[float]],
    args: argparse.Namespace,
    conn,
) -> None:
    version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_message_queue'").fetchone()[0]
    print()
    print(
        f"Change events: {args.rows:,}-row statements, one client, commit included; median of {args.rounds} interleaved"
        f" rounds (after one warm-up); {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC,"
        f" pg_message_queue {version}, {platform.machine()}"
    )
    for op in ("INSERT", "UPDATE"):
        print()
        print(f"{op:<27} {'median ms':>10} {'x none':>8} {'cpu ms':>8}  target")
        base = times[("none", op)]
        seed_ratio = float("nan")
        for name in names:
            ms = statistics.median(times[(name, op)]) * 1000
            ratio = statistics.median(t / b for t, b in zip(times[(name, op)], base, strict=True))
            if name == "seed per-row plpgsql":
                seed_ratio = ratio
            target = ""
            if name in TARGETS:
                label, limit = TARGETS[name]
                ok = ratio < seed_ratio if limit is None else ratio <= limit
                target = f"{label}: {'met' if ok else 'missed'}" if (limit or seed_ratio == seed_ratio) else label
            cpu = statistics.median(cpus[(name, op)]) * 1000
            print(f"{name:<27} {ms:>10.1f} {ratio:>8.2f} {cpu:>8.1f}  {target}")
    pairs = [n for n in names if n + BEFORE in names]
    if pairs:
        print()
        print("after / before, median of the per-round ratios (same rounds): wall time, and the backend's CPU time")
        for name in pairs:
            cells = []
            for op in ("INSERT", "UPDATE"):
                for label, d in (("wall", times), ("cpu", cpus)):
                    after, before = d[(name, op)], d[(name + BEFORE, op)]
                    ratio = statistics.median(a / b for a, b in zip(after, before, strict=True))
                    cells.append(f"{op} {label} {ratio:.2f}")
            print(f"  {name:<22} {'  '.join(cells)}")
    print()
    print("The amqp targets apply to 'watch amqp' (a real RabbitMQ, confirms awaited at commit);")
    print("'watch amqp strict' is the outbox write alone (the relay sends after commit).")
    print("'queue write alone' is no table write, only 10,000 messages '{}' into the watch's queue table")
    print("(the same in both sections): the floor under 'watch queue' before any event is built.")


if __name__ == "__main__":
    main()
