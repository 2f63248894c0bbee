"""Server CPU per send: the backend's own CPU time (from /proc) per call, N calls in a
plpgsql loop rolled back, median of interleaved rounds (alternating order).

CPU time rather than wall time, because the machine it runs on is shared. Compares
pg_mq_send_message as installed with the wrappers as they were before the generated
send functions (PL/pgSQL around the PL/Python ``_pg_mq_send``) and before the
dispatcher (looking up ``send_call`` and EXECUTEing it), both recreated here, and
shows the layers of the new path; then the same sends one per transaction from a
client (per-transaction costs included). Usage (after make install):

    .venv/bin/python tools/send_cpu.py [--calls 3000] [--rounds 9]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from statistics import median

import psycopg
from bench import PRIOR_BATCH_SQL, PRIOR_EXEC_SQL, PRIOR_SEND_SQL
from servers import Postgres

# The earlier wrappers, as tools/bench.py recreates them, then two probes of their parts.
PRIOR = (
    ";\n".join((PRIOR_SEND_SQL, PRIOR_EXEC_SQL, PRIOR_BATCH_SQL))
    + """;
CREATE FUNCTION bench_prior.lookup_only(in_channel text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    call text;
BEGIN
    SELECT c.send_call INTO call FROM {ext}.pg_mq_config_catalog AS c WHERE c.channel OPERATOR(pg_catalog.=) in_channel;
    RETURN call;
END
$$;
CREATE FUNCTION bench_prior.execute_only(in_payload text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    id bigint;
BEGIN
    EXECUTE 'SELECT 1::pg_catalog.int8' INTO id USING in_payload, 25::oid, NULL::interval, 0, NULL::jsonb;
    RETURN id;
END
$$;
"""
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pgmq-sendcpu-"))
    os.chmod(root, 0o755)
    pg = Postgres(root / "pg", fsync=True)
    try:
        pg.start()
        with psycopg.connect(pg.dsn(), autocommit=True) as db:
            db.execute("CREATE EXTENSION pg_message_queue CASCADE")
            db.execute("SELECT pg_mq_create_queue('bench', 'text')")
            db.execute("CREATE SCHEMA bench_prior")
            db.execute(PRIOR.replace("{ext}", "public"))
            call = db.execute("SELECT send_call FROM pg_mq_config_catalog WHERE channel = 'bench'").fetchone()[0]
            direct = call.split("(")[0].replace("SELECT", "PERFORM", 1)
            p = "repeat('m', 100)"
            cases = {
                "before: wrapper -> _pg_mq_send (PL/Python)": f"PERFORM bench_prior.send_python('bench', {p})",
                "before: wrapper -> send_call EXECUTE": f"PERFORM bench_prior.send_execute('bench', {p})",
                "now: pg_mq_send_message as installed": f"PERFORM pg_mq_send_message('bench', {p})",
                "now, with delay, priority and headers": (
                    f"PERFORM pg_mq_send_message('bench', {p}, delay => '1 s', priority => 2, headers => '{{}}')"
                ),
                "  the dispatcher called directly": f"PERFORM _pg_mq_send_dispatch('bench', {p}, 25, NULL, 0, NULL)",
                "  generated send function called directly": f"{direct}({p}, 25, NULL, 0, NULL)",
                "  the wrapper's catalog lookup of send_call": "PERFORM bench_prior.lookup_only('bench')",
                "  an EXECUTE 'SELECT 1' USING 5 arguments": f"PERFORM bench_prior.execute_only({p})",
                "INSERT into the queue table (NOTIFY trigger)": f"INSERT INTO pg_mq_queue_bench (payload) VALUES ({p})",
                "plpgsql loop alone": "PERFORM 1",
            }
            # Batches of 100 (a constant array, so building it costs nothing): µs per batch.
            a = "'{" + ",".join(["m" * 100] * 100) + "}'::text[]"
            batch_fn = f"_pg_mq_send_batch_{direct.split('_pg_mq_send_')[1]}"
            batches = {
                "batch before: wrapper -> PL/Python-built EXECUTE": (
                    f"PERFORM bench_prior.send_batch_python('bench', {a})"
                ),
                "batch now: pg_mq_send_batch as installed": f"PERFORM pg_mq_send_batch('bench', {a})",
                "  the batch dispatcher called directly": (
                    f"PERFORM _pg_mq_send_batch_dispatch('bench', {a}, 1009, NULL, 0, NULL)"
                ),
                "  generated batch function called directly": f"PERFORM {batch_fn}({a}, 1009, NULL, 0, NULL)",
                "batch INSERT .. unnest on the queue table": (
                    f"INSERT INTO pg_mq_queue_bench (payload) SELECT u.p FROM unnest({a}) WITH ORDINALITY AS u(p, i)"
                    " ORDER BY u.i"
                ),
            }
            cases.update(batches)
            per_loop = {k: args.calls // 20 if k in batches else args.calls for k in cases}
            pid = db.execute("SELECT pg_backend_pid()").fetchone()[0]
            tick = os.sysconf("SC_CLK_TCK")

            def cpu() -> float:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / tick

            got: dict[str, list[float]] = {k: [] for k in cases}
            for r in range(args.rounds + 1):  # round 0 warms the backend
                for name in list(cases) if r % 2 else list(reversed(cases)):
                    block = f"DO $do$ BEGIN FOR i IN 1..{per_loop[name]} LOOP {cases[name]}; END LOOP; END $do$"
                    db.execute("BEGIN")
                    start = cpu()
                    db.execute(block)
                    used = cpu() - start
                    db.execute("ROLLBACK")
                    if r:
                        got[name].append(used / per_loop[name] * 1e6)
            # The same from a client: one send per transaction (autocommit, prepared,
            # synchronous_commit off), where per-transaction costs count too.
            db.execute("SET synchronous_commit = off")
            statements = {
                "before: wrapper -> _pg_mq_send (PL/Python)": "SELECT bench_prior.send_python('bench', %s::text)",
                "before: wrapper -> send_call EXECUTE": "SELECT bench_prior.send_execute('bench', %s::text)",
                "now: pg_mq_send_message as installed": "SELECT pg_mq_send_message('bench', %s::text)",
                "INSERT into the queue table (NOTIFY trigger)": "INSERT INTO pg_mq_queue_bench (payload) VALUES (%s)",
                "batch before: wrapper -> PL/Python-built EXECUTE": (
                    "SELECT bench_prior.send_batch_python('bench', %s::text[])"
                ),
                "batch now: pg_mq_send_batch as installed": "SELECT pg_mq_send_batch('bench', %s::text[])",
                "batch INSERT .. unnest on the queue table": (
                    "INSERT INTO pg_mq_queue_bench (payload)"
                    " SELECT u.p FROM unnest(%s::text[]) WITH ORDINALITY AS u(p, i) ORDER BY u.i"
                ),
            }
            per_tx: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in statements}
            n = args.calls // 2
            for r in range(args.rounds + 1):
                for name in list(statements) if r % 2 else list(reversed(statements)):
                    batch = name.startswith("batch")
                    count, value = (n // 10, ["m" * 100] * 100) if batch else (n, "m" * 100)
                    start, t0 = cpu(), time.perf_counter()
                    for _ in range(count):
                        db.execute(statements[name], (value,), prepare=True)
                    t1, used = time.perf_counter(), cpu() - start
                    if r:
                        per_tx[name][0].append(used / count * 1e6)
                        per_tx[name][1].append((t1 - t0) / count * 1e6)
        print(
            f"server CPU µs per call ({args.calls} calls per loop, batches of 100 {args.calls // 20};"
            f" median of {args.rounds} interleaved rounds)"
        )
        for name, values in got.items():
            print(f"  {name:<52} {median(values):7.1f}  ({min(values):.0f}-{max(values):.0f})")
        print(
            f"one send (or batch of 100) per transaction from one client ({n} sends, {n // 10} batches per round,"
            " sync off, prepared): server CPU (range), wall, µs per transaction"
        )
        for name, (c, w) in per_tx.items():
            print(f"  {name:<52} {median(c):7.1f}  ({min(c):.0f}-{max(c):.0f})  {median(w):7.1f}")
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
