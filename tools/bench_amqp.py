"""AMQP benchmark: amqp.publish on commit (confirmed) next to raw pika publishers.

Entry point for ``tools/bench.py`` (``make bench``)::

    run(dsn, rounds=5, seconds_per_case=2.0, amqp_port=None) -> list[dict]

``dsn`` is a database where the extension is installed (superuser). Without
``amqp_port`` a private RabbitMQ node is started (tools/servers.py) and stopped
afterwards. Each round runs every case for ``seconds_per_case`` seconds, in an
order rotated per round (interleaved); the result is the median over rounds:

- ``raw pika, no confirms``: BlockingChannel.basic_publish without confirm mode
- ``raw pika, confirm each``: confirm mode, one round trip per message (pika's API)
- ``raw pipelined confirms, 100``: batches of 100 written at once, then their confirms
  awaited (the extension's own AMQP code, amqp_link, outside the server): what the
  broker allows a confirmed publisher, i.e. the ceiling of ``amqp.publish, 100/tx``
- ``amqp.publish, 1/tx``: one message per committed transaction, confirmed at commit
- ``amqp.publish, 100/tx``: 100 messages per transaction (one statement), confirmed
- commit latency p50/p99 of a one-row INSERT transaction with and without one
  amqp.publish in it; the difference is what publish adds.

Prints a table and returns one dict per case. Standalone (starts its own
PostgreSQL and RabbitMQ; needs ``make install`` first)::

    .venv/bin/python tools/bench_amqp.py [--rounds 5] [--seconds 2] [--fsync on|off]

Before/after in one run: ``--dsn`` and ``--amqp-port`` use servers already running,
and ``--versus DSN`` adds the two ``amqp.publish`` cases run against a second server
(e.g. one with the previous code installed, from another checkout under another
isolated name) in the same interleaved rounds, labelled ``(versus)``, with the ratio
of this install's 100/tx rate to the other's per round.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Postgres, RabbitMQ

QUEUE = "pgmq_bench_amqp"
BODY = "x" * 100
BIG = 10_000
LINK_PY = Path(__file__).resolve().parents[1] / "plpython" / "pg_message_queue" / "amqp_link.py"


def _amqp_link() -> Any:
    """The extension's amqp_link module, loaded on its own (it needs no plpy)."""
    found = sys.modules.get("pgmq_bench_amqp_link")
    if found is None:
        spec = importlib.util.spec_from_file_location("pgmq_bench_amqp_link", LINK_PY)
        assert spec is not None and spec.loader is not None
        found = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = found
        spec.loader.exec_module(found)
    return found


def _pika(port: int) -> Any:
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, heartbeat=0))
    return conn.channel()


def _timed(seconds: float, step: Callable[[], int]) -> float:
    """Run ``step`` (returns messages done) repeatedly for ``seconds``; messages/s."""
    done = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        done += step()
        now = time.perf_counter()
        if now >= end:
            return done / (now - start)


def _raw_unconfirmed(port: int, seconds: float) -> float:
    ch = _pika(port)
    try:
        return _timed(seconds, lambda: (ch.basic_publish("", QUEUE, BODY), 1)[1])
    finally:
        ch.connection.close()


def _raw_confirm_each(port: int, seconds: float) -> float:
    ch = _pika(port)
    ch.confirm_delivery()
    try:
        return _timed(seconds, lambda: (ch.basic_publish("", QUEUE, BODY), 1)[1])
    finally:
        ch.connection.close()


def _raw_pipelined(port: int, seconds: float, batch: int = 100) -> float:
    link = _amqp_link()
    conn = link.connect(-1, [{"host": "127.0.0.1", "port": port, "heartbeat": 0}])
    props = link.encode_properties(headers=link.encode_table({"x-pg-txid": "1"}), message_id="bench")
    messages = [link.Message("", QUEUE, BODY, props, False, "bench")] * batch

    def step() -> int:
        outcomes = link.publish(conn, messages, 10.0)
        assert all(o.status == link.ACK for o in outcomes), outcomes[0]
        return batch

    try:
        return _timed(seconds, step)
    finally:
        link.disconnect(-1)


def _raw_pipelined_big(port: int, seconds: float) -> float:
    """One batch of BIG messages written at once, then its confirms: the broker's floor
    under a commit that publishes BIG messages (a watched 10,000-row statement)."""
    return _raw_pipelined(port, seconds, BIG)


def _publish_per_tx(conn: psycopg.Connection, broker_id: int, n: int, seconds: float) -> float:
    if n == 1:
        sql = "SELECT amqp.publish(%s, '', %s, %s)"
    else:
        sql = f"SELECT count(amqp.publish(%s, '', %s, %s)) FROM generate_series(1, {n})"

    def step() -> int:
        conn.execute(sql, (broker_id, QUEUE, BODY))
        conn.commit()
        return n

    return _timed(seconds, step)


def _publish_only(conn: psycopg.Connection, broker_id: int, seconds: float) -> float:
    """publish() alone: 100 calls in one statement, rolled back (nothing is sent)."""
    sql = "SELECT count(amqp.publish(%s, '', %s, %s)) FROM generate_series(1, 100)"

    def step() -> int:
        conn.execute(sql, (broker_id, QUEUE, BODY))
        conn.rollback()
        return 100

    return _timed(seconds, step)


def _latencies(conn: psycopg.Connection, broker_id: int, with_publish: bool, seconds: float) -> list[float]:
    sql = "INSERT INTO pgmq_bench_amqp_rows (body) VALUES (%s)"
    out: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        conn.execute(sql, (BODY,))
        if with_publish:
            conn.execute("SELECT amqp.publish(%s, '', %s, %s)", (broker_id, QUEUE, BODY))
        conn.commit()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


@contextlib.contextmanager
def _broker(amqp_port: int | None) -> Iterator[int]:
    if amqp_port is not None:
        yield amqp_port
        return
    root = Path(tempfile.mkdtemp(prefix="pgmq-bench-rabbit-"))
    node = RabbitMQ(root)
    try:
        node.start()
        yield node.port
    finally:
        node.stop()
        shutil.rmtree(root, ignore_errors=True)


def run(
    dsn: str,
    rounds: int = 5,
    seconds_per_case: float = 2.0,
    amqp_port: int | None = None,
    versus: str | None = None,
    big: bool = False,
) -> list[dict]:
    with _broker(amqp_port) as port:
        return _run(dsn, port, rounds, seconds_per_case, versus, big)


def _add_broker(admin: psycopg.Connection, port: int) -> int:
    admin.execute("CREATE EXTENSION IF NOT EXISTS pg_message_queue CASCADE")
    return admin.execute(
        "INSERT INTO amqp.broker (host, port, vhost, username, password)"
        " VALUES ('127.0.0.1', %s, '/', 'guest', 'guest') RETURNING broker_id",
        (port,),
    ).fetchone()[0]


def _run(dsn: str, port: int, rounds: int, seconds: float, versus: str | None = None, big: bool = False) -> list[dict]:
    admin = psycopg.connect(dsn, autocommit=True)
    fsync = admin.execute("SHOW fsync").fetchone()[0]
    admin.execute("CREATE TABLE IF NOT EXISTS pgmq_bench_amqp_rows (id bigserial PRIMARY KEY, body text)")
    broker_id = _add_broker(admin, port)
    other = psycopg.connect(versus, autocommit=True) if versus else None
    other_broker = _add_broker(other, port) if other is not None else 0
    other_conn = psycopg.connect(versus) if versus else None
    ch = _pika(port)
    ch.queue_declare(QUEUE, arguments={"x-max-length": 200_000})
    conn = psycopg.connect(dsn)
    samples: dict[str, list[float]] = {}
    lat: dict[str, list[float]] = {"without publish": [], "with publish": []}
    cases: list[tuple[str, Callable[[], float]]] = [
        ("raw pika, no confirms", lambda: _raw_unconfirmed(port, seconds)),
        ("raw pika, confirm each", lambda: _raw_confirm_each(port, seconds)),
        ("raw pipelined confirms, 100", lambda: _raw_pipelined(port, seconds)),
        ("amqp.publish, 1/tx", lambda: _publish_per_tx(conn, broker_id, 1, seconds)),
        ("amqp.publish, 100/tx", lambda: _publish_per_tx(conn, broker_id, 100, seconds)),
    ]
    if other_conn is not None:
        cases += [
            ("amqp.publish, 1/tx (versus)", lambda: _publish_per_tx(other_conn, other_broker, 1, seconds)),
            ("amqp.publish, 100/tx (versus)", lambda: _publish_per_tx(other_conn, other_broker, 100, seconds)),
            ("publish() alone, rolled back", lambda: _publish_only(conn, broker_id, seconds)),
            ("publish() alone, rolled back (versus)", lambda: _publish_only(other_conn, other_broker, seconds)),
        ]
    if big:
        cases += [
            (f"raw pipelined confirms, {BIG}", lambda: _raw_pipelined_big(port, seconds)),
            (f"amqp.publish, {BIG}/tx", lambda: _publish_per_tx(conn, broker_id, BIG, seconds)),
        ]
        if other_conn is not None:
            cases.append(
                (f"amqp.publish, {BIG}/tx (versus)", lambda: _publish_per_tx(other_conn, other_broker, BIG, seconds))
            )
    ratios: dict[str, list[float]] = {
        "100/tx vs no confirms": [],
        "100/tx vs pipelined confirms": [],
        "1/tx vs confirm each": [],
    }
    if other_conn is not None:
        ratios["(versus) 100/tx vs no confirms"] = []
        ratios["100/tx vs (versus) 100/tx"] = []
        ratios["1/tx vs (versus) 1/tx"] = []
        ratios["publish() alone vs (versus)"] = []
    try:
        _publish_per_tx(conn, broker_id, 100, 0.3)  # warm up: connection, plans
        if other_conn is not None:
            _publish_per_tx(other_conn, other_broker, 100, 0.3)
        for r in range(rounds):
            this: dict[str, float] = {}
            for name, case in cases[r % len(cases) :] + cases[: r % len(cases)]:
                ch.queue_purge(QUEUE)
                this[name] = case()
                samples.setdefault(name, []).append(this[name])
            ratios["100/tx vs no confirms"].append(this["amqp.publish, 100/tx"] / this["raw pika, no confirms"])
            ratios["100/tx vs pipelined confirms"].append(
                this["amqp.publish, 100/tx"] / this["raw pipelined confirms, 100"]
            )
            ratios["1/tx vs confirm each"].append(this["amqp.publish, 1/tx"] / this["raw pika, confirm each"])
            if other_conn is not None:
                ratios["(versus) 100/tx vs no confirms"].append(
                    this["amqp.publish, 100/tx (versus)"] / this["raw pika, no confirms"]
                )
                ratios["100/tx vs (versus) 100/tx"].append(
                    this["amqp.publish, 100/tx"] / this["amqp.publish, 100/tx (versus)"]
                )
                ratios["1/tx vs (versus) 1/tx"].append(this["amqp.publish, 1/tx"] / this["amqp.publish, 1/tx (versus)"])
                ratios["publish() alone vs (versus)"].append(
                    this["publish() alone, rolled back"] / this["publish() alone, rolled back (versus)"]
                )
            if big:
                ratios.setdefault(f"{BIG}/tx vs raw pipelined {BIG}", []).append(
                    this[f"amqp.publish, {BIG}/tx"] / this[f"raw pipelined confirms, {BIG}"]
                )
                if other_conn is not None:
                    ratios.setdefault(f"{BIG}/tx vs (versus) {BIG}/tx", []).append(
                        this[f"amqp.publish, {BIG}/tx"] / this[f"amqp.publish, {BIG}/tx (versus)"]
                    )
            order = [False, True] if r % 2 == 0 else [True, False]
            for with_publish in order:
                key = "with publish" if with_publish else "without publish"
                lat[key].extend(_latencies(conn, broker_id, with_publish, seconds / 2))
        left = admin.execute("SELECT count(*) FROM amqp.outbox WHERE broker_id = %s", (broker_id,)).fetchone()[0]
    finally:
        ch.queue_delete(QUEUE)
        ch.connection.close()
        conn.close()
        admin.execute("DELETE FROM amqp.outbox WHERE broker_id = %s", (broker_id,))
        admin.execute("DELETE FROM amqp.broker WHERE broker_id = %s", (broker_id,))
        admin.execute("DROP TABLE IF EXISTS pgmq_bench_amqp_rows")
        admin.close()
        if other is not None and other_conn is not None:
            other_conn.close()
            other.execute("DELETE FROM amqp.outbox WHERE broker_id = %s", (other_broker,))
            other.execute("DELETE FROM amqp.broker WHERE broker_id = %s", (other_broker,))
            other.close()

    results: list[dict] = [
        {"case": name, "msgs_per_s": statistics.median(v), "rounds": v} for name, v in samples.items()
    ]
    for name, v in ratios.items():
        results.append({"case": f"ratio {name}", "ratio": statistics.median(v), "rounds": v})
    p = {k: (_pct(v, 0.5), _pct(v, 0.99)) for k, v in lat.items()}
    results.append(
        {
            "case": "commit latency ms (p50, p99)",
            "without_publish": p["without publish"],
            "with_publish": p["with publish"],
            "extra_p50_ms": p["with publish"][0] - p["without publish"][0],
            "extra_p99_ms": p["with publish"][1] - p["without publish"][1],
        }
    )
    results.append({"case": "messages left in amqp.outbox (should be 0)", "count": left})
    _print(results, rounds, seconds, fsync)
    return results


def _print(results: list[dict], rounds: int, seconds: float, fsync: str = "?") -> None:
    print(f"  AMQP, median of {rounds} interleaved rounds of {seconds:g}s per case, PostgreSQL fsync {fsync}")
    for r in results:
        if "msgs_per_s" in r:
            print(f"  {r['case']:<34} {r['msgs_per_s']:>10,.0f} msg/s")
        elif "ratio" in r:
            target = "  (target >= 0.70)" if r["case"] == "ratio 100/tx vs no confirms" else ""
            verdict = (" met" if r["ratio"] >= 0.7 else " NOT met") if target else ""
            print(f"  {r['case']:<34} {r['ratio']:>10.2f}{target}{verdict}")
        elif "extra_p50_ms" in r:
            w, wo = r["with_publish"], r["without_publish"]
            print(f"  commit latency p50/p99 without publish {wo[0]:.3f}/{wo[1]:.3f} ms,")
            print(f"                         with 1 publish   {w[0]:.3f}/{w[1]:.3f} ms")
            print(f"  extra commit latency p50/p99         {r['extra_p50_ms']:.3f}/{r['extra_p99_ms']:.3f} ms")
        else:
            print(f"  {r['case']:<34} {r['count']:>10}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--fsync", choices=["on", "off"], default="on")
    ap.add_argument("--dsn", help="use this running server (extension installed) instead of starting one")
    ap.add_argument("--amqp-port", type=int, help="use this running RabbitMQ instead of starting one")
    ap.add_argument("--versus", help="DSN of a second server whose amqp.publish cases run in the same rounds")
    ap.add_argument("--big", action="store_true", help=f"add {BIG:,}-message cases (raw pipelined floor, 1 tx)")
    args = ap.parse_args()
    if args.dsn:
        run(args.dsn, args.rounds, args.seconds, args.amqp_port, args.versus, args.big)
        return
    root = Path(tempfile.mkdtemp(prefix="pgmq-bench-amqp-"))
    root.chmod(0o755)  # the server runs as the postgres OS user when we are root
    pg = Postgres(root / "pg", fsync=args.fsync == "on")
    try:
        pg.start()
        pg.psql("CREATE DATABASE bench_amqp")
        run(pg.dsn("bench_amqp"), args.rounds, args.seconds, args.amqp_port, args.versus, args.big)
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
