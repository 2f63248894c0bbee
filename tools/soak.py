"""Soak run: queues and AMQP-on-commit under continuous load, then an audit.

A private PostgreSQL (fsync on) and RabbitMQ node, in a temporary folder:

- 4 producers send to queue ``jobs`` (some messages delayed, random priorities;
  a few are "poison" and always nacked, so ``max_deliveries`` dead-letters them);
- 4 consumers lease with ``pg_mq_read``, ack most messages, nack some (once);
- a writer inserts into an application table whose AFTER INSERT trigger calls
  ``amqp.publish``; a relay (``CALL amqp.relay``) runs beside it; an AMQP
  consumer records every message_id that arrives;
- a sampler records the RSS of every long-lived backend and the number of
  broker connections.

At the end: sent = acked + still queued + dead-lettered, no message acked twice,
every committed AMQP message_id arrived. Exit status 1 when an audit line fails.

    .venv/bin/python tools/soak.py --minutes 10     # make soak SOAK_ARGS="--minutes 2"
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pika
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Postgres, RabbitMQ

DB = "soak"
QUEUE = "jobs"
AMQP_QUEUE = "soak_events"
MAX_DELIVERIES = 3


class Soak:
    def __init__(self, pg: Postgres, rabbit: RabbitMQ, seconds: float) -> None:
        self.pg = pg
        self.rabbit = rabbit
        self.seconds = seconds
        self.dsn = pg.dsn(DB)
        self.stop_producing = threading.Event()
        self.stop_consuming = threading.Event()
        self.stop_all = threading.Event()
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self.sent: dict[int, str] = {}  # msg_id -> payload, committed sends
        self.send_errors = 0
        self.acked: list[int] = []  # ids pg_mq_ack returned, across consumers
        self.reads = 0
        self.redeliveries = 0
        self.nacks = 0
        self.orders: set[str] = set()  # message_ids of committed application rows
        self.arrived: Counter[str] = Counter()
        self.backends: dict[str, int] = {}  # role -> backend pid
        self.rss: dict[str, list[int]] = {}  # role -> VmRSS kB samples (includes touched shared buffers)
        self.anon: dict[str, list[int]] = {}  # role -> RssAnon kB samples (the backend's private memory)
        self.broker_conns: list[int] = []

    # ---- setup ----

    def setup(self) -> None:
        self.pg.psql(f"CREATE DATABASE {DB}")
        with psycopg.connect(self.dsn, autocommit=True) as db:
            db.execute("CREATE EXTENSION pg_message_queue CASCADE")
            db.execute("SELECT pg_mq_create_queue(%s, 'text')", (QUEUE,))
            db.execute("SELECT pg_mq_set_queue_config(%s, 'max_deliveries', %s)", (QUEUE, str(MAX_DELIVERIES)))
            self.broker_id = db.execute(
                "INSERT INTO amqp.broker (host, port, vhost, username, password, confirm_timeout, connect_timeout)"
                " VALUES ('127.0.0.1', %s, '/', 'guest', 'guest', 5, 2) RETURNING broker_id",
                (self.rabbit.port,),
            ).fetchone()[0]
            db.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, body text NOT NULL)")
            db.execute(
                f"""CREATE FUNCTION orders_publish() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM amqp.publish({self.broker_id}, '', '{AMQP_QUEUE}', NEW.body,
                                         delivery_mode => 2, message_id => 'order-' || NEW.id);
                    RETURN NULL;
                END $$"""
            )
            db.execute(
                "CREATE TRIGGER orders_publish AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION orders_publish()"
            )
        conn = pika.BlockingConnection(pika.URLParameters(self.rabbit.url))
        conn.channel().queue_declare(AMQP_QUEUE, durable=True)
        conn.close()

    def _connect(self, role: str) -> psycopg.Connection:
        conn = psycopg.connect(self.dsn, autocommit=True)
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        with self.lock:
            self.backends[role] = pid
        return conn

    def _guard(self, role: str, body) -> None:  # type: ignore[no-untyped-def]
        try:
            body()
        except BaseException as exc:
            with self.lock:
                self.errors.append(f"{role}: {exc!r}")
            self.stop_all.set()
            self.stop_producing.set()
            self.stop_consuming.set()

    # ---- workers ----

    def producer(self, n: int) -> None:
        rnd = random.Random(n)
        with self._connect(f"producer{n}") as conn:
            i = 0
            while not self.stop_producing.is_set():
                i += 1
                payload = f"p{n}-{i}" + ("-poison" if rnd.random() < 0.02 else "")
                delay = "1 second" if rnd.random() < 0.1 else None
                priority = rnd.choice((0, 0, 0, 1, 5))
                try:
                    msg_id = conn.execute(
                        "SELECT msg_id FROM pg_mq_send_message(%s, %s::text, delay => %s::interval, priority => %s)",
                        (QUEUE, payload, delay, priority),
                    ).fetchone()[0]
                except psycopg.errors.SerializationFailure:
                    with self.lock:
                        self.send_errors += 1
                    continue
                with self.lock:
                    self.sent[msg_id] = payload
                if i % 50 == 0:
                    time.sleep(0.05)  # leave the consumers some room on 2 cores

    def consumer(self, n: int) -> None:
        rnd = random.Random(100 + n)
        with self._connect(f"consumer{n}") as conn:
            while not self.stop_consuming.is_set():
                rows = conn.execute(
                    "SELECT msg_id, read_count, payload FROM pg_mq_read(%s, 10, '10 seconds', wait => '0.5 seconds')",
                    (QUEUE,),
                ).fetchall()
                ack, nack = [], []
                for msg_id, read_count, payload in rows:
                    if payload.endswith("-poison") or (read_count == 1 and rnd.random() < 0.05):
                        nack.append(msg_id)
                    else:
                        ack.append(msg_id)
                if nack:
                    conn.execute("SELECT pg_mq_nack(%s, %s)", (QUEUE, nack))
                done = [r[0] for r in conn.execute("SELECT * FROM pg_mq_ack(%s, %s)", (QUEUE, ack))] if ack else []
                with self.lock:
                    self.reads += len(rows)
                    self.redeliveries += sum(1 for r in rows if r[1] > 1)
                    self.nacks += len(nack)
                    self.acked.extend(done)

    def writer(self) -> None:
        with self._connect("writer") as conn:
            i = 0
            while not self.stop_producing.is_set():
                i += 1
                with conn.transaction():
                    ids = [
                        r[0]
                        for r in conn.execute(
                            "INSERT INTO orders (body) SELECT 'order ' || g FROM generate_series(1, %s) g RETURNING id",
                            (1 + i % 3,),
                        )
                    ]
                with self.lock:
                    self.orders.update(f"order-{x}" for x in ids)
                time.sleep(0.01)

    def relay(self) -> None:
        with self._connect("relay") as conn:
            conn.execute("CALL amqp.relay(poll_interval => 1, run_for => %s::interval)", (f"{self.seconds + 5} s",))

    def amqp_consumer(self) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(self.rabbit.url))
        ch = conn.channel()
        idle_since = None
        while True:
            method, props, _body = ch.basic_get(AMQP_QUEUE, auto_ack=True)
            if method is not None:
                with self.lock:
                    self.arrived[props.message_id] += 1
                idle_since = None
                continue
            if self.stop_all.is_set():
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 2:
                    break
            conn.sleep(0.05)
        conn.close()

    def _broker_connections(self) -> int:
        out = self.rabbit.ctl("list_connections", "client_properties", "--no-table-headers", "--quiet")
        return out.count('"pg_message_queue"')

    def sample(self) -> None:
        with self.lock:
            backends = dict(self.backends)
        for role, pid in backends.items():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            fields = {k: v for k, _, v in (line.partition(":") for line in status.splitlines())}
            self.rss.setdefault(role, []).append(int(fields["VmRSS"].split()[0]))
            self.anon.setdefault(role, []).append(int(fields["RssAnon"].split()[0]))
        try:
            self.broker_conns.append(self._broker_connections())
        except Exception as exc:
            with self.lock:
                self.errors.append(f"rabbitmqctl list_connections: {exc!r}")

    def sampler(self, every: float) -> None:
        while not self.stop_all.wait(every):
            self.sample()

    # ---- run and audit ----

    def run(self) -> bool:
        self.setup()
        start = time.monotonic()
        threads = [
            threading.Thread(target=self._guard, args=(f"producer{n}", lambda n=n: self.producer(n))) for n in range(4)
        ]
        consumers = [
            threading.Thread(target=self._guard, args=(f"consumer{n}", lambda n=n: self.consumer(n))) for n in range(4)
        ]
        side = [
            threading.Thread(target=self._guard, args=("writer", self.writer)),
            threading.Thread(target=self._guard, args=("relay", self.relay)),
        ]
        amqp_in = threading.Thread(target=self._guard, args=("amqp consumer", self.amqp_consumer))
        sampler = threading.Thread(target=self.sampler, args=(max(5.0, self.seconds / 40),))
        for t in [*threads, *consumers, *side, amqp_in, sampler]:
            t.start()
        time.sleep(2)
        self.sample()  # a first sample once every backend is up
        while time.monotonic() - start < self.seconds and not self.stop_all.is_set():
            time.sleep(1)
        self.stop_producing.set()
        for t in [*threads, side[0]]:
            t.join(60)
        # let consumers drain what is ready (delayed messages come due within a second)
        drain_until = time.monotonic() + 120
        with psycopg.connect(self.dsn, autocommit=True) as db:
            while time.monotonic() < drain_until and not self.stop_all.is_set():
                (ready,) = db.execute(
                    f"SELECT count(*) FROM pg_mq_queue_{QUEUE} WHERE delivered_at IS NULL AND visible_at <= now()"
                ).fetchone()
                if ready == 0:
                    break
                time.sleep(1)
        self.sample()
        self.stop_consuming.set()
        for t in consumers:
            t.join(60)
        side[1].join(self.seconds + 60)
        with psycopg.connect(self.dsn, autocommit=True) as db:
            db.execute("CALL amqp.relay(run_for => '60 seconds', exit_when_empty => true)")
            outbox = db.execute("SELECT count(*) FROM amqp.outbox").fetchone()[0]
            queued = {r[0] for r in db.execute(f"SELECT msg_id FROM pg_mq_queue_{QUEUE}")}
            dead = [
                int(r[0])
                for r in db.execute(f"SELECT headers -> 'x-dead-letter' ->> 'msg_id' FROM pg_mq_queue_{QUEUE}_dlq")
            ]
            dead_poison = db.execute(
                f"SELECT count(*) FILTER (WHERE payload LIKE '%%-poison'), count(*) FROM pg_mq_queue_{QUEUE}_dlq"
            ).fetchone()
        self.stop_all.set()
        amqp_in.join(120)
        sampler.join(30)
        elapsed = time.monotonic() - start
        return self.report(elapsed, queued, dead, outbox, dead_poison)

    def report(self, elapsed: float, queued: set[int], dead: list[int], outbox: int, dead_poison: tuple) -> bool:
        sent = set(self.sent)
        acked = Counter(self.acked)
        twice = [i for i, c in acked.items() if c > 1]
        accounted = set(acked) | queued | set(dead)
        overlap = (set(acked) & queued) | (set(acked) & set(dead)) | (queued & set(dead))
        missing_amqp = self.orders - set(self.arrived)
        unexpected_amqp = set(self.arrived) - self.orders
        dup_amqp = sum(c - 1 for c in self.arrived.values() if c > 1)
        checks = [
            ("sent = acked + queued + dead-lettered", sent == accounted and not overlap),
            ("no message acked twice", not twice),
            ("every committed AMQP message_id arrived", not missing_amqp),
            ("nothing arrived that was not committed", not unexpected_amqp),
            ("amqp.outbox empty after the relay", outbox == 0),
            ("no worker error", not self.errors),
        ]
        conns = self.broker_conns
        # the writer's backend and the relay's: one cached connection each, whatever the duration
        checks.append(("broker connections not growing", bool(conns) and max(conns) <= 2))
        print()
        print(f"soak: {elapsed / 60:.1f} min, PostgreSQL fsync=on, RabbitMQ {self.rabbit.port}")
        rows = [
            ("messages sent (committed)", len(sent)),
            ("send retries (40001)", self.send_errors),
            ("reads (leases)", self.reads),
            ("redeliveries (read_count > 1)", self.redeliveries),
            ("nacks", self.nacks),
            ("acked", len(acked)),
            ("still queued", len(queued)),
            ("dead-lettered (poison / all)", f"{dead_poison[0]} / {dead_poison[1]}"),
            ("acked twice", len(twice)),
            ("AMQP messages committed", len(self.orders)),
            ("AMQP messages arrived (distinct)", len(self.arrived)),
            ("AMQP duplicates (by message_id)", dup_amqp),
            ("AMQP missing", len(missing_amqp)),
            ("amqp.outbox left", outbox),
            ("broker connections (samples)", " ".join(map(str, conns))),
        ]
        width = max(len(r[0]) for r in rows)
        for name, value in rows:
            print(f"  {name:<{width}}  {value}")
        print()
        print(
            f"  {'backend (kB)':<12} {'VmRSS first':>12} {'last':>7} {'max':>7}"
            f"  {'RssAnon first':>13} {'last':>7} {'max':>7}"
        )
        for role in sorted(self.rss):
            s, a = self.rss[role], self.anon[role]
            print(
                f"  {role:<12} {s[0]:>12} {s[-1]:>7} {max(s):>7}  {a[0]:>13} {a[-1]:>7} {max(a):>7}  ({len(s)} samples)"
            )
        print()
        for name, ok in checks:
            print(f"  {'ok  ' if ok else 'FAIL'}  {name}")
        for e in self.errors:
            print(f"  error: {e}")
        if missing_amqp:
            print(f"  missing AMQP ids (first 10): {sorted(missing_amqp)[:10]}")
        if sent != accounted:
            print(f"  unaccounted ids (first 10): {sorted(sent - accounted)[:10]}")
        return all(ok for _, ok in checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to load (default 10)")
    parser.add_argument("--keep", action="store_true", help="keep the servers' folder (for a post-mortem)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pgmq-soak-"))
    root.chmod(0o755)
    pg = Postgres(root / "pg", fsync=True)
    rabbit = RabbitMQ(root / "rabbit")
    ok = False
    try:
        pg.start()
        rabbit.start()
        ok = Soak(pg, rabbit, args.minutes * 60).run()
    finally:
        pg.stop()
        rabbit.stop()
        if args.keep:
            print(f"servers' folder kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
