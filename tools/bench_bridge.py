"""What the NOTIFY -> AMQP bridge costs (not a test: nothing asserts on timing).

1. Per call, server side: a PL/pgSQL loop of N calls in one transaction, rolled back
   (so nothing is sent): ``pg_notify``, ``pg_mq_notify`` on an unmapped channel (it is
   only ``pg_notify``), ``pg_mq_notify`` on a mapped channel (``amqp.publish`` too).
2. End to end: M notifications from one client, 100 per transaction, until the last one
   is consumed from a RabbitMQ queue: plain ``pg_notify`` forwarded by the bridge,
   ``pg_mq_notify`` (sent at the application's commit, the bridge skipping them), and the
   baseline ``amqp.publish`` in the same transactions (no bridge involved).

Rounds alternate the order of the cases; the medians are printed. Standalone: starts
its own PostgreSQL (fsync on) and RabbitMQ; needs ``make install`` first::

    .venv/bin/python tools/bench_bridge.py --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pika
import pika.exceptions
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import Postgres, RabbitMQ

ROOT = Path(__file__).resolve().parent.parent
PER_TX = 100


def per_call(conn: psycopg.Connection, n: int, call: str) -> float:
    """Microseconds per call of ``call`` (with ``i`` the loop variable), rolled back."""
    conn.execute("BEGIN")
    t0 = time.perf_counter()
    conn.execute(f"DO $$ BEGIN FOR i IN 1..{n} LOOP PERFORM {call}; END LOOP; END $$")
    elapsed = time.perf_counter() - t0
    conn.execute("ROLLBACK")
    return elapsed / n * 1e6


class Consumer:
    """Counts the messages of ``queue``; ``wait(m)`` returns when m arrived."""

    def __init__(self, port: int, queue: str) -> None:
        self.port, self.queue = port, queue
        self.count = 0
        self.done = threading.Event()
        self.target = 0
        self.last = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.ready = threading.Event()
        self.thread.start()
        self.ready.wait(30)

    def _run(self) -> None:
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", self.port, heartbeat=0))
        ch = conn.channel()
        ch.basic_qos(prefetch_count=1000)

        def got(_ch: object, _m: object, _p: object, _b: bytes) -> None:
            self.count += 1
            if self.target and self.count >= self.target:
                self.last = time.perf_counter()
                self.done.set()

        ch.basic_consume(self.queue, got, auto_ack=True)
        self.ready.set()
        with contextlib.suppress(pika.exceptions.AMQPError):  # the broker stops at the end
            ch.start_consuming()

    def expect(self, m: int) -> None:
        self.count, self.target, self.last = 0, m, 0.0
        self.done.clear()

    def wait(self, timeout: float) -> float:
        if not self.done.wait(timeout):
            raise RuntimeError(f"only {self.count} of {self.target} messages arrived")
        return self.last


def end_to_end(conn: psycopg.Connection, consumer: Consumer, m: int, sql: str) -> float:
    """Messages per second from the first send to the last message consumed."""
    consumer.expect(m)
    t0 = time.perf_counter()
    for start in range(0, m, PER_TX):
        conn.execute(sql, (start + 1, start + PER_TX))
        conn.commit()
    last = consumer.wait(120)
    return m / (last - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=5000, help="calls per server-side loop")
    ap.add_argument("--messages", type=int, default=5000, help="messages per end-to-end run")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pgmq-bench-bridge-"))
    root.chmod(0o755)
    pg = Postgres(root / "pg", fsync=True)
    rabbit = RabbitMQ(root / "rabbit")
    bridge = None
    try:
        pg.start()
        rabbit.start()
        pg.psql("CREATE DATABASE bench_bridge")
        dsn = pg.dsn("bench_bridge")
        queue = "bench_bridge"
        ch = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", rabbit.port)).channel()
        ch.queue_declare(queue)
        ch.connection.close()
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("CREATE EXTENSION pg_message_queue CASCADE")
            broker = admin.execute(
                "INSERT INTO amqp.broker (host, port) VALUES ('127.0.0.1', %s) RETURNING broker_id", (rabbit.port,)
            ).fetchone()[0]
            admin.execute("SELECT pg_mq_bridge_map('mapped', %s, '', %s, 1)", (broker, queue))
        env = {**os.environ, "PYTHONPATH": str(ROOT / "plpython")}
        log = root / "bridge.log"
        with log.open("w") as err:
            bridge = subprocess.Popen(
                [sys.executable, "-m", "pg_message_queue.bridge", "--dsn", dsn], env=env, stderr=err
            )
        while "ready:" not in log.read_text():
            if bridge.poll() is not None:
                raise RuntimeError(log.read_text())
            time.sleep(0.1)
        consumer = Consumer(rabbit.port, queue)

        calls = {
            "pg_notify": "pg_notify('plain', i::text)",
            "pg_mq_notify, unmapped channel": "pg_mq_notify('plain', i::text)",
            "  the Python path (_pg_mq_notify), unmapped": "_pg_mq_notify('plain', i::text)",
            "pg_mq_notify, mapped channel": "pg_mq_notify('mapped', i::text)",
            "  the Python path (_pg_mq_notify), mapped": "_pg_mq_notify('mapped', i::text)",
        }
        flows = {
            "amqp.publish in the app's transaction (baseline)": "SELECT count(amqp.publish("
            f"{broker}, '', '{queue}', g::text, 1)) FROM generate_series(%s::int, %s::int) g",
            "pg_notify -> bridge -> amqp.publish": "SELECT count(pg_notify('mapped', g::text))"
            " FROM generate_series(%s::int, %s::int) g",
            "pg_mq_notify (outbox at the app's commit)": "SELECT count(pg_mq_notify('mapped', g::text))"
            " FROM generate_series(%s::int, %s::int) g",
        }
        us: dict[str, list[float]] = {k: [] for k in calls}
        rate: dict[str, list[float]] = {k: [] for k in flows}
        with psycopg.connect(dsn, autocommit=True) as loop, psycopg.connect(dsn) as app:
            for r in range(args.rounds):
                order = list(calls) if r % 2 == 0 else list(reversed(calls))
                for k in order:
                    us[k].append(per_call(loop, args.calls, calls[k]))
                order = list(flows) if r % 2 == 0 else list(reversed(flows))
                for k in order:
                    rate[k].append(end_to_end(app, consumer, args.messages, flows[k]))
        print(f"Per call, server side ({args.calls} calls in one transaction, rolled back), median of {args.rounds}:")
        base = statistics.median(us["pg_notify"])
        for k, v in us.items():
            print(f"  {k:<45} {statistics.median(v):8.1f} us   {statistics.median(v) / base:5.1f}x pg_notify")
        print(f"End to end, {args.messages} messages, {PER_TX} per transaction, median msg/s of {args.rounds}:")
        base = statistics.median(rate[next(iter(flows))])
        for k, v in rate.items():
            print(
                f"  {k:<50} {statistics.median(v):8.0f} msg/s  {statistics.median(v) / base:5.2f}x"
                f"  (range {min(v):.0f}-{max(v):.0f})"
            )
    finally:
        if bridge is not None:
            bridge.terminate()
            bridge.wait(10)
        rabbit.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
