"""``make bench``: messages/s of pg_message_queue next to a raw-table baseline.

Starts a private PostgreSQL 15 (fsync on, so synchronous_commit matters),
creates a database with the extension, and for every case runs the extension's
variant and a plain-SQL baseline back to back, several interleaved rounds
(alternating which goes first), with N client processes each holding its own
connection. Prints the median of the rounds, the ratio ext/raw (median of the
per-round ratios), the target and whether it was met. Not a test: nothing here
asserts on timing.

    .venv/bin/python tools/bench.py [--rounds 5] [--seconds-per-case 2]
        [--only send1,get100] [--soak] [--amqp] [--no-layers]

A case is a :class:`Case` in ``CASES``: a name, a section, an ``ext`` variant
and one or more ``raw`` variants (the first is the baseline of record), a
target, and the functions it requires. A case whose functions are not installed
is printed as skipped, never with a made-up number.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fnmatch
import importlib.util
import inspect
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Postgres

ROOT = Path(__file__).resolve().parent.parent
DBNAME = "bench"
CHANNEL = "bench"
# A second queue, its NOTIFY trigger off (pg_mq_set_queue_config(..., 'notify', 'off')):
# what a send costs without NOTIFY's commit-time lock, next to PgQ (which has no NOTIFY).
QUIET = "bench_quiet"
RAW_CHANNEL = "bench_raw"
BATCH = 100
BARRIER_TIMEOUT = 120.0

Op = Callable[[psycopg.Connection, "Ctx"], int]


# --------------------------------------------------------------------------- stats


def median(values: Sequence[float]) -> float:
    """The median; NaN for no values (printed as n/a)."""
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * p / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def paired_ratios(ext: Sequence[float], raw: Sequence[float]) -> list[float]:
    """ext[i] / raw[i] for every round where both were measured and raw is not zero."""
    return [e / r for e, r in zip(ext, raw, strict=False) if r]


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    if value != value:  # NaN
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "missed"


def fmt_rate(value: float) -> str:
    return "n/a" if value != value else f"{value:,.0f}"


# --------------------------------------------------------------------------- cases


@dataclass
class Ctx:
    """What an operation needs besides its connection (built once per worker)."""

    payload: str
    batch: list[str]
    queue_table: str = ""  # schema-qualified table of queue CHANNEL, for the "ext SQL" variants
    pgq: psycopg.Connection | None = None  # this worker's connection to the PgQ database

    get_sql: str = ""  # the claim of pg_mq_get_msg_text, for the "ext SQL" get variant

    def sql(self, template: str) -> str:
        return template.replace("{qt}", self.queue_table).replace("{get_sql}", self.get_sql)


def make_ctx(payload_bytes: int, queue_table: str = "") -> Ctx:
    payload = ("m" * payload_bytes)[:payload_bytes]
    return Ctx(payload=payload, batch=[payload] * BATCH, queue_table=queue_table)


# Each worker process keeps one connection to the PgQ database, opened on first use.
_PGQ_CONN: list[psycopg.Connection] = []


def _pgq_conn(dsn: str, sync_commit: str) -> psycopg.Connection:
    if not _PGQ_CONN or _PGQ_CONN[0].closed or _PGQ_CONN[0].broken:
        _PGQ_CONN[:] = [psycopg.connect(dsn, autocommit=True, application_name="bench-pgq")]
    conn = _PGQ_CONN[0]
    conn.execute("SELECT set_config('synchronous_commit', %s, false)", (sync_commit,))
    return conn


@dataclass
class Variant:
    label: str  # "ext", "raw", "raw+NOTIFY", ...
    what: str  # the SQL, as printed under the table
    op: Op | None = None  # one transaction; returns the number of messages it handled
    table: str = "raw"  # which table it works on: "ext" (the queue), "quiet" (QUIET's), "raw" (raw_q), "raw_l",
    # "pgq" (PgQ's) or "pgmq" (pgmq's, in PgQ's database)
    requires: tuple[str, ...] = ()
    clients: int = 0  # how many of the clients run it (0: all); the others idle


@dataclass
class Case:
    name: str
    section: str
    title: str
    ext: Variant
    raws: list[Variant]  # raws[0] is the baseline of record
    target: float
    sync_commit: str = "off"
    kind: str = "throughput"  # throughput | latency
    prefill: bool = False  # the queue must hold messages before the window
    burst: bool = False  # a burst of --burst messages is sent and consumed (or purged) before the window
    note: str = ""
    variants: list[Variant] = field(init=False)

    def __post_init__(self) -> None:
        self.variants = [self.ext, *self.raws]

    def variant(self, label: str) -> Variant:
        return next(v for v in self.variants if v.label == label)


def _exec(sql: str) -> Op:
    """One statement, its own transaction; every call handles ``n`` messages."""

    def op(conn: psycopg.Connection, ctx: Ctx) -> int:
        conn.execute(ctx.sql(sql), (ctx.payload,))
        return 1

    return op


def _exec_batch(sql: str) -> Op:
    def op(conn: psycopg.Connection, ctx: Ctx) -> int:
        conn.execute(ctx.sql(sql), (ctx.batch,))
        return BATCH

    return op


def _many(sql: str) -> Op:
    """BATCH statements in one transaction (psycopg pipelines executemany)."""

    def op(conn: psycopg.Connection, ctx: Ctx) -> int:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(sql, [(ctx.payload,)] * BATCH)
        return BATCH

    return op


def _fetch(sql: str) -> Op:
    """A receiving statement; returns how many messages it got (0 = queue empty)."""

    def op(conn: psycopg.Connection, ctx: Ctx) -> int:
        return len(conn.execute(ctx.sql(sql)).fetchall())

    return op


def _lease_then_ack(conn: psycopg.Connection, lease: str, ack: str) -> int:
    """A lease consumer's two transactions: ``lease`` (its first column the ids), then,
    if it got any, ``ack`` of those ids ($1); returns how many it got."""
    ids = [r[0] for r in conn.execute(lease).fetchall()]
    if ids:
        conn.execute(ack, (ids,))
    return len(ids)


def _read_ack(conn: psycopg.Connection, ctx: Ctx) -> int:
    """Lease read, then ack: two transactions, as a lease consumer runs them."""
    return _lease_then_ack(
        conn,
        f"SELECT msg_id FROM pg_mq_read('{CHANNEL}', {BATCH}, '30 seconds'::interval)",
        f"SELECT pg_mq_ack('{CHANNEL}', %s::bigint[])",
    )


# The lease pattern in plain SQL, the floor under read + ack: a table with what a
# lease queue cannot do without (an id to ack by, a due time to find expired
# leases by), leased by an UPDATE of its due time, then acked by a DELETE, in two
# transactions, as pg_mq_read + pg_mq_ack and pgmq.read + pgmq.delete run.
RAW_LEASE = (
    "UPDATE raw_l SET vt = now() + interval '30 seconds', reads = reads + 1 WHERE id IN"
    f" (SELECT id FROM raw_l WHERE vt <= now() ORDER BY id LIMIT {BATCH} FOR UPDATE SKIP LOCKED) RETURNING id, payload"
)
RAW_ACK = "DELETE FROM raw_l WHERE id = ANY(%s)"


def _raw_read_ack(conn: psycopg.Connection, ctx: Ctx) -> int:
    """RAW_LEASE, then RAW_ACK: two transactions."""
    return _lease_then_ack(conn, RAW_LEASE, RAW_ACK)


def _pgq_exec(sql: str, n: int = 1, batch: bool = False) -> Op:
    """A statement on the PgQ database (its own connection), its own transaction."""

    def op(conn: psycopg.Connection, ctx: Ctx) -> int:
        assert ctx.pgq is not None
        ctx.pgq.execute(sql, (ctx.batch if batch else ctx.payload,))
        return n

    return op


def _pgq_drain(conn: psycopg.Connection, ctx: Ctx) -> int:
    """One PgQ consumer's batch, as its consumers run it: next_batch, get_batch_events,
    finish_batch, in one transaction. The fill ticked every BATCH events, so a batch
    holds BATCH events."""
    assert ctx.pgq is not None
    with ctx.pgq.transaction():
        batch_id = ctx.pgq.execute(f"SELECT pgq.next_batch('{CHANNEL}', '{PGQ_CONSUMER}')").fetchone()[0]
        if batch_id is None:
            return 0
        n = len(ctx.pgq.execute("SELECT * FROM pgq.get_batch_events(%s)", (batch_id,)).fetchall())
        ctx.pgq.execute("SELECT pgq.finish_batch(%s)", (batch_id,))
    return n


PGQ_DB = "bench_pgq"
PGQ_CONSUMER = "bench_consumer"
PGQ_SEND1 = f"SELECT pgq.insert_event('{CHANNEL}', 'm', %s)"
PGQ_SEND_BATCH = f"SELECT pgq.insert_event('{CHANNEL}', 'm', p) FROM unnest(%s::text[]) AS p"


def _pgq_variant(kind: str) -> Variant:
    """Real PgQ (Debian's postgresql-15-pgq3) as a peer, in its own database on the same server."""
    if kind == "send1":
        return Variant("PgQ", PGQ_SEND1 + f"  (database {PGQ_DB})", _pgq_exec(PGQ_SEND1), "pgq")
    if kind == "batch":
        return Variant("PgQ", PGQ_SEND_BATCH, _pgq_exec(PGQ_SEND_BATCH, BATCH, batch=True), "pgq")
    return Variant(
        "PgQ",
        f"1 consumer: next_batch; get_batch_events; finish_batch (1 tx; ticks every {BATCH} events)",
        _pgq_drain,
        "pgq",
        clients=1,
    )


# pgmq 1.5.1 (tools/peers/pgmq, installed by 'make bench'), a peer in PgQ's database.
PGMQ_SEND1 = f"SELECT pgmq.send('{CHANNEL}', to_jsonb(%s::text))"
PGMQ_SEND_BATCH = f"SELECT pgmq.send_batch('{CHANNEL}', ARRAY(SELECT to_jsonb(p) FROM unnest(%s::text[]) AS p))"


def _pgmq_read_delete(conn: psycopg.Connection, ctx: Ctx) -> int:
    """pgmq's lease consumer: read with a visibility timeout, then delete (two transactions)."""
    assert ctx.pgq is not None
    return _lease_then_ack(
        ctx.pgq,
        f"SELECT msg_id FROM pgmq.read('{CHANNEL}', 30, {BATCH})",
        f"SELECT pgmq.delete('{CHANNEL}', %s::bigint[])",
    )


def _pgmq_variant(kind: str) -> Variant:
    """pgmq 1.5.1 as a peer (its jsonb messages hold the same text)."""
    if kind == "send1":
        return Variant("pgmq", PGMQ_SEND1 + f"  (database {PGQ_DB})", _pgq_exec(PGMQ_SEND1), "pgmq")
    if kind == "batch":
        return Variant("pgmq", PGMQ_SEND_BATCH, _pgq_exec(PGMQ_SEND_BATCH, BATCH, batch=True), "pgmq")
    return Variant(
        "pgmq", f"pgmq.read('{CHANNEL}', 30, {BATCH}); pgmq.delete('{CHANNEL}', ids)", _pgmq_read_delete, "pgmq"
    )


SEND1 = f"SELECT pg_mq_send_message('{CHANNEL}', %s::text)"
QUIET_SEND1 = f"SELECT pg_mq_send_message('{QUIET}', %s::text)"
# pg_mq_send_message as it was before the generated send functions (PL/pgSQL
# around the PL/Python _pg_mq_send), recreated beside the installed one so both
# are measured in the same run.
PY_SEND1 = f"SELECT bench_prior.send_python('{CHANNEL}', %s::text)"
PRIOR_SEND_SQL = """
CREATE FUNCTION bench_prior.send_python(in_channel text, in_payload text)
RETURNS {ext}.pg_mq_sent LANGUAGE plpgsql AS $$
DECLARE
    sent {ext}.pg_mq_sent;
BEGIN
    sent := {ext}._pg_mq_send(in_channel, 25, in_payload, NULL, 0, NULL, NULL);
    IF sent.sent_at IS NULL THEN
        sent.sent_at := pg_catalog.now();
        sent.sent_by := SESSION_USER;
        sent.visible_at := pg_catalog.now();
    END IF;
    RETURN sent;
END
$$"""
# pg_mq_send_message as it was before _pg_mq_send_dispatch: the catalog lookup of
# send_call and its EXECUTE on every send (then the Python path, as above).
EXEC_SEND1 = f"SELECT bench_prior.send_execute('{CHANNEL}', %s::text)"
PRIOR_EXEC_SQL = """
CREATE FUNCTION bench_prior.send_execute(in_channel text, in_payload text)
RETURNS {ext}.pg_mq_sent LANGUAGE plpgsql AS $$
DECLARE
    sent {ext}.pg_mq_sent;
    call text;
BEGIN
    SELECT c.send_call INTO call FROM {ext}.pg_mq_config_catalog AS c WHERE c.channel OPERATOR(pg_catalog.=) in_channel;
    IF call IS NOT NULL THEN
        EXECUTE call INTO sent.msg_id USING in_payload, 25::pg_catalog.oid, NULL::pg_catalog.interval, 0, NULL::jsonb;
        IF sent.msg_id IS NOT NULL THEN
            sent.channel := in_channel;
            sent.sent_at := pg_catalog.now();
            sent.sent_by := SESSION_USER;
            sent.visible_at := pg_catalog.now();
            sent.deduplicated := false;
            RETURN sent;
        END IF;
    END IF;
    RETURN bench_prior.send_python(in_channel, in_payload);
END
$$"""
# pg_mq_send_batch as it was before the generated batch functions: the INSERT that
# the PL/Python _pg_mq_send_batch_sql checks and builds, EXECUTEd on every batch.
PY_SEND_BATCH = f"SELECT bench_prior.send_batch_python('{CHANNEL}', %s::text[])"
PRIOR_BATCH_SQL = """
CREATE FUNCTION bench_prior.send_batch_python(in_channel text, in_payloads anyarray)
RETURNS SETOF bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY EXECUTE {ext}._pg_mq_send_batch_sql(
        in_channel, pg_catalog.pg_typeof(in_payloads)::pg_catalog.oid, pg_catalog.cardinality(in_payloads),
        CASE WHEN pg_catalog.array_ndims(in_payloads) = 1 THEN
            pg_catalog.array_position(in_payloads, NULL) - pg_catalog.array_lower(in_payloads, 1) + 1
        END,
        NULL, 0, NULL
    ) USING in_payloads, NULL::pg_catalog.interval, 0, NULL::pg_catalog.jsonb;
END
$$"""
RAW_INSERT = "INSERT INTO raw_q (payload) VALUES (%s)"
RAW_INSERT_NOTIFY = (
    "WITH i AS (INSERT INTO raw_q (payload) VALUES (%s) RETURNING id)"
    f" SELECT pg_notify('{RAW_CHANNEL}', max(id)::text) FROM i"
)
SEND_BATCH = f"SELECT pg_mq_send_batch('{CHANNEL}', %s::text[])"
RAW_INSERT_SELECT = "INSERT INTO raw_q (payload) SELECT unnest(%s::text[])"
GET100 = f"SELECT * FROM pg_mq_get_msg_text('{CHANNEL}', {BATCH})"
RAW_DELETE = (
    f"DELETE FROM raw_q WHERE id IN (SELECT id FROM raw_q ORDER BY id LIMIT {BATCH} FOR UPDATE SKIP LOCKED) RETURNING *"
)
POP100 = f"SELECT * FROM pg_mq_pop('{CHANNEL}', {BATCH})"
# The extension's own SQL (plpython/pg_message_queue/messages.py) run straight on
# the queue table: what the table, its indexes and trigger cost without PL/Python.
EXT_SQL_SEND = "INSERT INTO {qt} (payload) VALUES (%s) RETURNING msg_id, sent_at, sent_by, visible_at"
# The claim pg_mq_get_msg_text runs, as _pg_mq_get_sql builds it for queue CHANNEL
# (fetched once by the coordinator), with its parameters written in.
EXT_SQL_GET = "{get_sql}"
EXT_SQL_BATCH = (
    "INSERT INTO {qt} (payload) SELECT u.p FROM unnest(%s::text[]) WITH ORDINALITY AS u(p, i)"
    " ORDER BY u.i RETURNING msg_id"
)
LAT_GET = f"SELECT payload FROM pg_mq_get_msg_text('{CHANNEL}', {BATCH})"
LAT_RAW_GET = (
    "DELETE FROM raw_q WHERE id IN"
    f" (SELECT id FROM raw_q ORDER BY id LIMIT {BATCH} FOR UPDATE SKIP LOCKED) RETURNING payload"
)


def _send1_case(sync: str, target: float) -> Case:
    return Case(
        name=f"send1_sync_{sync}",
        section="original API",
        title=f"send 1/tx, synchronous_commit={sync}",
        ext=Variant("ext", SEND1, _exec(SEND1), "ext", ("pg_mq_send_message",)),
        raws=[
            Variant("raw", RAW_INSERT, _exec(RAW_INSERT)),
            Variant("raw+NOTIFY", RAW_INSERT_NOTIFY, _exec(RAW_INSERT_NOTIFY)),
            Variant("ext SQL", EXT_SQL_SEND + "  (queue table + trigger, no PL/Python)", _exec(EXT_SQL_SEND), "ext"),
            Variant(
                "ext notify off",
                QUIET_SEND1 + "  (a queue with notify off: no NOTIFY trigger)",
                _exec(QUIET_SEND1),
                "quiet",
                ("pg_mq_send_message",),
            ),
            Variant(
                "ext Python path",
                PY_SEND1 + "  (pg_mq_send_message before the generated send functions)",
                _exec(PY_SEND1),
                "ext",
                ("_pg_mq_send",),
            ),
            Variant(
                "ext EXECUTE path",
                EXEC_SEND1 + "  (pg_mq_send_message before _pg_mq_send_dispatch)",
                _exec(EXEC_SEND1),
                "ext",
                ("_pg_mq_send_dispatch",),
            ),
            _pgq_variant("send1"),
            _pgmq_variant("send1"),
        ],
        target=target,
        sync_commit=sync,
    )


def _raw_delete() -> Variant:
    return Variant("raw", RAW_DELETE, _fetch(RAW_DELETE))


CASE_LIST: list[Case] = [
    # The target for sync on is not in the issue; 0.8 is the sync-off one, shown for scale.
    _send1_case("on", 0.8),
    _send1_case("off", 0.8),
    Case(
        name="send100_batch",
        section="original API",
        title="send 100/tx, one statement",
        ext=Variant("ext", SEND_BATCH, _exec_batch(SEND_BATCH), "ext", ("pg_mq_send_batch",)),
        raws=[
            Variant("raw", RAW_INSERT_SELECT, _exec_batch(RAW_INSERT_SELECT)),
            Variant("ext SQL", EXT_SQL_BATCH + "  (no PL/Python)", _exec_batch(EXT_SQL_BATCH), "ext"),
            Variant(
                "ext Python path",
                PY_SEND_BATCH + "  (pg_mq_send_batch before the generated batch functions)",
                _exec_batch(PY_SEND_BATCH),
                "ext",
                ("_pg_mq_send_batch_dispatch",),
            ),
            _pgq_variant("batch"),
            _pgmq_variant("batch"),
        ],
        target=0.85,
    ),
    Case(
        name="send100_calls",
        section="original API",
        title="send 100/tx, 100 statements",
        ext=Variant("ext", "100 x " + SEND1, _many(SEND1), "ext", ("pg_mq_send_message",)),
        raws=[Variant("raw", "100 x " + RAW_INSERT, _many(RAW_INSERT))],
        target=0.85,
        note="pipelined executemany in one transaction",
    ),
    Case(
        name="get100",
        section="original API",
        title="get 100/tx (marks delivered)",
        ext=Variant("ext", GET100, _fetch(GET100), "ext", ("pg_mq_get_msg_text",)),
        raws=[
            _raw_delete(),
            Variant(
                "ext SQL",
                "the get's claim (_pg_mq_get_sql's SQL) on the queue table, no PL/Python",
                _fetch(EXT_SQL_GET),
                "ext",
            ),
            _pgq_variant("drain"),
        ],
        target=0.7,
        prefill=True,
    ),
    Case(
        name="latency",
        section="original API",
        title="latency commit -> consumer holds msg",
        ext=Variant(
            "ext",
            f'LISTEN "{CHANNEL}"; {SEND1}; on notify {LAT_GET}',
            table="ext",
            requires=("pg_mq_send_message", "pg_mq_get_msg_text"),
        ),
        raws=[Variant("raw", f"LISTEN {RAW_CHANNEL}; INSERT..pg_notify; on notify DELETE..SKIP LOCKED")],
        target=1.0,
        kind="latency",
    ),
    Case(
        name="latency_burst",
        section="original API",
        title="latency right after a burst was consumed",
        ext=Variant(
            "ext",
            "as latency, after pg_mq_send_batch of --burst messages and one claim of them all (--burst-by)",
            table="ext",
            requires=("pg_mq_send_message", "pg_mq_get_msg_text"),
        ),
        raws=[Variant("raw", "as latency, after INSERT of --burst rows and one DELETE of them all")],
        target=1.0,
        kind="latency",
        burst=True,
    ),
    Case(
        name="read_ack100",
        section="leases",
        title="read 100 + ack (2 tx)",
        ext=Variant(
            "ext",
            f"pg_mq_read('{CHANNEL}', {BATCH}, '30 s'); pg_mq_ack('{CHANNEL}', ids)",
            _read_ack,
            "ext",
            ("pg_mq_read", "pg_mq_ack"),
        ),
        raws=[
            _raw_delete(),
            _pgmq_variant("read_delete"),
            Variant("raw lease", f"{RAW_LEASE}; {RAW_ACK}  (2 tx; raw_l has an index on vt)", _raw_read_ack, "raw_l"),
        ],
        target=0.6,
        prefill=True,
    ),
    Case(
        name="pop100",
        section="leases",
        title="pop 100/tx",
        ext=Variant("ext", POP100, _fetch(POP100), "ext", ("pg_mq_pop",)),
        raws=[_raw_delete()],
        target=0.7,
        prefill=True,
    ),
]
CASES: dict[str, Case] = {c.name: c for c in CASE_LIST}
# send 1/tx and send_batch 100/tx for leases are the cases above.
ALIASES = {"issue4": ["send1_sync_off", "send100_batch", "read_ack100", "pop100"]}


# --------------------------------------------------------------------------- workers


def _now_ns() -> int:
    # CLOCK_MONOTONIC is one clock for every process of the machine.
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def _throughput(conn: psycopg.Connection, op: Op, ctx: Ctx, seconds: float, barrier: Any) -> dict[str, Any]:
    error: BaseException | None = None
    try:  # warm up plan caches and psycopg's prepared statements, outside the window
        warm_until = time.monotonic() + 0.2
        for _ in range(8):
            if op(conn, ctx) == 0 or time.monotonic() > warm_until:
                break
    except Exception as exc:
        error = exc
    barrier.wait(BARRIER_TIMEOUT)
    if error is not None:
        raise error
    start = time.perf_counter()
    deadline = start + seconds
    count = txs = 0
    exhausted = False
    while True:
        n = op(conn, ctx)
        if n == 0:
            exhausted = True
            break
        count += n
        txs += 1
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start
    return {"count": count, "txs": txs, "elapsed": elapsed, "exhausted": exhausted}


def _latency_consumer(conn: psycopg.Connection, ext: bool, seconds: float, barrier: Any) -> dict[str, Any]:
    conn.execute(f'LISTEN "{CHANNEL if ext else RAW_CHANNEL}"')
    get = LAT_GET if ext else LAT_RAW_GET
    received: dict[int, int] = {}
    barrier.wait(BARRIER_TIMEOUT)
    end = time.monotonic() + seconds + 0.5
    try:
        while time.monotonic() < end:
            if not list(conn.notifies(timeout=0.05, stop_after=1)):
                continue
            while True:  # drain: notifications may have merged while we fetched
                rows = conn.execute(get).fetchall()
                held = _now_ns()
                for (payload,) in rows:
                    received[int(payload[:12])] = held
                if not rows:
                    break
    finally:
        conn.execute("UNLISTEN *")
    return {"received": received}


def _latency_sender(
    conn: psycopg.Connection, ext: bool, seconds: float, rate: float, ctx: Ctx, barrier: Any
) -> dict[str, Any]:
    sql = SEND1 if ext else RAW_INSERT_NOTIFY
    pad = ctx.payload[12:]
    sent: dict[int, int] = {}
    barrier.wait(BARRIER_TIMEOUT)
    interval = 1.0 / rate
    start = time.monotonic()
    next_at = start
    seq = 0
    while True:
        now = time.monotonic()
        if now - start >= seconds:
            break
        if now < next_at:
            time.sleep(next_at - now)
        conn.execute(sql, (f"{seq:012d}{pad}",))
        sent[seq] = _now_ns()  # the commit has returned to the sender
        seq += 1
        next_at = max(next_at + interval, time.monotonic() - interval)
    return {"sent": sent}


def _soak_sender(conn: psycopg.Connection, seconds: float, rate: float, ctx: Ctx, barrier: Any) -> dict[str, Any]:
    barrier.wait(BARRIER_TIMEOUT)
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate) - sent
        if due <= 0:
            time.sleep(0.002)
            continue
        for _ in range(min(due, 200)):
            conn.execute(SEND1, (ctx.payload,))
            sent += 1
    return {"count": sent, "elapsed": time.monotonic() - start}


def _soak_consumer(conn: psycopg.Connection, seconds: float, ctx: Ctx, barrier: Any) -> dict[str, Any]:
    barrier.wait(BARRIER_TIMEOUT)
    end = time.monotonic() + seconds + 2.0
    acked = 0
    while time.monotonic() < end:
        n = _read_ack(conn, ctx)
        acked += n
        if n < BATCH:
            time.sleep(0.02)
    return {"count": acked}


def _work(conn: psycopg.Connection, idx: int, cmd: dict[str, Any], barrier: Any) -> dict[str, Any]:
    ctx = make_ctx(cmd["payload_bytes"], cmd.get("queue_table", ""))
    ctx.get_sql = cmd.get("get_sql", "")
    conn.execute("SELECT set_config('synchronous_commit', %s, false)", (cmd["sync_commit"],))
    kind = cmd["kind"]
    if kind == "throughput":
        variant = CASES[cmd["case"]].variant(cmd["label"])
        assert variant.op is not None
        if variant.table in ("pgq", "pgmq"):
            ctx.pgq = _pgq_conn(cmd["pgq_dsn"], cmd["sync_commit"])
        if variant.clients and idx >= variant.clients:
            barrier.wait(BARRIER_TIMEOUT)  # this variant runs on fewer clients: idle
            return {}
        return _throughput(conn, variant.op, ctx, cmd["seconds"], barrier)
    ext = cmd["label"] == "ext"
    if kind == "latency":
        if idx == 0:
            return _latency_consumer(conn, ext, cmd["seconds"], barrier)
        if idx == 1:
            return _latency_sender(conn, ext, cmd["seconds"], cmd["rate"], ctx, barrier)
    if kind == "soak":
        if idx == 0:
            return _soak_consumer(conn, cmd["seconds"], ctx, barrier)
        if idx == 1:
            return _soak_sender(conn, cmd["seconds"], cmd["rate"], ctx, barrier)
    barrier.wait(BARRIER_TIMEOUT)  # an idle extra client
    return {}


def _worker_main(idx: int, dsn: str, cmds: Any, results: Any, barrier: Any) -> None:
    conn = psycopg.connect(dsn, autocommit=True, application_name=f"bench-client-{idx}")
    while (cmd := cmds.get()) is not None:
        try:
            out = _work(conn, idx, cmd, barrier)
        except Exception as exc:
            out = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"}
            if conn.closed or conn.broken:
                conn = psycopg.connect(dsn, autocommit=True, application_name=f"bench-client-{idx}")
            with contextlib.suppress(Exception):
                conn.execute("UNLISTEN *")
        results.put((idx, out))
    conn.close()


class Clients:
    """N client processes, each with its own connection, driven in lock step."""

    def __init__(self, dsn: str, n: int) -> None:
        ctx = mp.get_context("spawn")
        self.n = n
        self.barrier = ctx.Barrier(n)
        self.results = ctx.Queue()
        self.cmds = [ctx.Queue() for _ in range(n)]
        self.procs = [
            ctx.Process(target=_worker_main, args=(i, dsn, self.cmds[i], self.results, self.barrier)) for i in range(n)
        ]
        for p in self.procs:
            p.start()

    def run(self, cmd: dict[str, Any], poll: Callable[[], None] | None = None) -> list[dict[str, Any]]:
        for q in self.cmds:
            q.put(cmd)
        out: list[dict[str, Any]] = [{} for _ in range(self.n)]
        waited = 0.0
        limit = cmd["seconds"] + BARRIER_TIMEOUT + 60
        got = 0
        while got < self.n:
            try:
                idx, res = self.results.get(timeout=1.0)
            except Exception:
                waited += 1.0
                if poll is not None:
                    poll()
                if waited > limit or not all(p.is_alive() for p in self.procs):
                    raise RuntimeError("a benchmark client died or hung") from None
                continue
            out[idx] = res
            got += 1
        if self.barrier.broken:
            self.barrier.reset()
        return out

    def close(self) -> None:
        for q in self.cmds:
            q.put(None)
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()


# --------------------------------------------------------------------------- coordinator


@dataclass
class Measured:
    rates: dict[str, list[float]] = field(default_factory=dict)  # label -> msg/s per round
    lat: dict[str, list[float]] = field(default_factory=dict)  # label -> pooled ms samples
    lost: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None


class Bench:
    def __init__(
        self, args: argparse.Namespace, dsn: str, admin: psycopg.Connection, pgq: psycopg.Connection | None = None
    ) -> None:
        self.args = args
        self.dsn = dsn
        self.admin = admin
        self.pgq = pgq  # admin connection to the PgQ database; None when PgQ is not installed
        self.pgq_dsn = ""
        self.pgmq = False  # pgmq installed in the PgQ database (setup_pgmq)
        self.queue_table = _queue_table(admin)
        self.get_sql = _get_sql(admin)
        self.fill_rate: dict[tuple[str, str], float] = {}

    # ---- table state between runs

    def has_peer(self, table: str) -> bool:
        """Whether the variants on ``table`` can run (their peer is installed)."""
        if table == "pgq":
            return self.pgq is not None
        if table == "pgmq":
            return self.pgq is not None and self.pgmq
        return True

    def reset(self, table: str) -> None:
        if table == "pgq":
            assert self.pgq is not None
            self.pgq.execute("SELECT pgq.drop_queue(%s, true)", (CHANNEL,))
            setup_pgq_queue(self.pgq)
        elif table == "ext":
            self.admin.execute("SELECT pg_mq_purge_queue(%s)", (CHANNEL,))
            self.admin.execute(f"VACUUM ANALYZE {self.queue_table}")
        elif table == "quiet":
            self.admin.execute("SELECT pg_mq_purge_queue(%s)", (QUIET,))
        elif table == "pgmq":
            assert self.pgq is not None
            self.pgq.execute("SELECT pgmq.drop_queue(%s)", (CHANNEL,))
            self.pgq.execute("SELECT pgmq.create(%s)", (CHANNEL,))
        elif table == "raw_l":
            self.admin.execute("TRUNCATE raw_l")
        else:
            self.admin.execute("TRUNCATE raw_q")

    def fill(self, table: str, n: int) -> None:
        payload = make_ctx(self.args.payload_bytes).payload
        if table == "pgq":
            assert self.pgq is not None
            # BATCH events per transaction, then a tick: every batch holds BATCH events.
            self.pgq.execute("CALL bench_pgq_fill(%s, %s, %s)", (payload, n // BATCH, BATCH))
            self.pgq.execute("VACUUM ANALYZE")
        elif table == "pgmq":
            assert self.pgq is not None
            for left in range(n, 0, -50_000):
                self.pgq.execute(
                    "SELECT count(*) FROM pgmq.send_batch(%s, array_fill(to_jsonb(%s::text), ARRAY[%s]))",
                    (CHANNEL, payload, min(left, 50_000)),
                )
            self.pgq.execute("VACUUM ANALYZE")
        elif table == "ext":
            left = n
            while left > 0:  # through the API, in chunks: the rows look like real sends
                chunk = min(left, 50_000)
                self.admin.execute(
                    "SELECT count(*) FROM pg_mq_send_batch(%s, array_fill(%s::text, ARRAY[%s]))",
                    (CHANNEL, payload, chunk),
                )
                left -= chunk
            self.admin.execute(f"VACUUM ANALYZE {self.queue_table}")
        elif table == "raw_l":
            self.admin.execute("INSERT INTO raw_l (payload) SELECT %s FROM generate_series(1, %s)", (payload, n))
            self.admin.execute("VACUUM ANALYZE raw_l")
        else:
            self.admin.execute("INSERT INTO raw_q (payload) SELECT %s FROM generate_series(1, %s)", (payload, n))
            self.admin.execute("VACUUM ANALYZE raw_q")

    def prepare(self, case: Case, variant: Variant) -> None:
        self.reset(variant.table)
        if case.prefill:
            guess = self.fill_rate.get((case.name, variant.label), 200_000.0)
            n = int(guess * self.args.seconds_per_case * 2.0) + 20 * BATCH * self.args.clients
            self.fill(variant.table, max(20_000, min(n, 3_000_000)))
        if case.burst and self.args.burst:
            self.burst(variant.table, self.args.burst)
        self.admin.execute("CHECKPOINT")  # no checkpoint of the previous run inside this window

    def burst(self, table: str, n: int) -> None:
        """Fill ``n`` messages, then consume (or purge) them all: the window starts
        right after, with their dead index entries still there (no VACUUM)."""
        self.fill(table, n)
        if table == "ext":
            if self.args.burst_by == "purge":
                self.admin.execute("SELECT pg_mq_purge_queue(%s)", (CHANNEL,))
            else:
                self.admin.execute(f"SELECT count(*) FROM pg_mq_{self.args.burst_by}(%s, %s)", (CHANNEL, n))
        else:
            self.admin.execute("DELETE FROM raw_q")

    # ---- one variant, one round

    def run_variant(self, clients: Clients, case: Case, variant: Variant, m: Measured) -> None:
        self.prepare(case, variant)
        cmd = {
            "case": case.name,
            "label": variant.label,
            "kind": case.kind,
            "seconds": self.args.seconds_per_case,
            "sync_commit": case.sync_commit,
            "payload_bytes": self.args.payload_bytes,
            "rate": self.args.latency_rate,
            "queue_table": self.queue_table,
            "get_sql": self.get_sql,
            "pgq_dsn": self.pgq_dsn,
        }
        results = clients.run(cmd)
        errors = [r["error"] for r in results if "error" in r]
        if errors:
            raise RuntimeError(f"{variant.label}: {errors[0]}")
        if case.kind == "latency":
            sent = results[1]["sent"]
            received = results[0]["received"]
            lat = [(received[s] - t) / 1e6 for s, t in sent.items() if s in received]
            m.lat.setdefault(variant.label, []).extend(lat)
            m.lost[variant.label] = m.lost.get(variant.label, 0) + len(sent) - len(lat)
            m.rates.setdefault(variant.label, []).append(percentile(lat, 50))
            return
        rate = sum(r["count"] / r["elapsed"] for r in results if r.get("elapsed"))
        m.rates.setdefault(variant.label, []).append(rate)
        self.fill_rate[(case.name, variant.label)] = max(rate, self.fill_rate.get((case.name, variant.label), 0))
        if any(r.get("exhausted") for r in results):
            m.notes.append(f"{variant.label}: queue ran empty before the window ended (rate still honest)")


PGQ_FILL = """
CREATE PROCEDURE bench_pgq_fill(payload text, batches int, per_batch int) LANGUAGE plpgsql AS $$
BEGIN
    FOR b IN 1..batches LOOP
        PERFORM pgq.insert_event('bench', 'm', payload) FROM generate_series(1, per_batch);
        COMMIT;
        PERFORM pgq.ticker('bench');
        COMMIT;
    END LOOP;
END $$
"""


def setup_pgq_queue(pgq: psycopg.Connection) -> None:
    """PgQ's queue CHANNEL with one consumer; a tick every BATCH events (the fill ticks)."""
    pgq.execute("SELECT pgq.create_queue(%s)", (CHANNEL,))
    pgq.execute("SELECT pgq.set_queue_config(%s, 'ticker_max_count', %s)", (CHANNEL, str(BATCH)))
    pgq.execute("SELECT pgq.register_consumer(%s, %s)", (CHANNEL, PGQ_CONSUMER))


def setup_pgq(pg: Postgres) -> psycopg.Connection | None:
    """Real PgQ in its own database on the bench server, or None (and why) when it is not installed."""
    try:
        pg.psql(f"CREATE DATABASE {PGQ_DB}")
        conn = psycopg.connect(pg.dsn(PGQ_DB), autocommit=True)
    except Exception as exc:
        print(f"  PgQ         not available: {str(exc).strip().splitlines()[0]}")
        return None
    try:
        conn.execute("CREATE EXTENSION pgq")
    except psycopg.Error as exc:
        why = str(exc).strip().splitlines()[0]
        print(f"  PgQ         not installed ({why}): 'make bench' installs postgresql-15-pgq3")
        conn.close()
        return None
    conn.execute("SET synchronous_commit = off")  # for the fill
    conn.execute(PGQ_FILL)
    setup_pgq_queue(conn)
    version = conn.execute("SELECT pgq.version()").fetchone()[0]
    print(f"  PgQ         {version} (postgresql-15-pgq3), database {PGQ_DB} on the same server, no ticker daemon")
    return conn


def setup_pgmq(pgq: psycopg.Connection | None) -> bool:
    """pgmq 1.5.1 in PgQ's database ('make bench' installs it from tools/peers/pgmq)."""
    if pgq is None:
        print("  pgmq        not measured: it shares PgQ's database, which is not available")
        return False
    try:
        pgq.execute("CREATE EXTENSION pgmq")
    except psycopg.Error as exc:
        why = str(exc).strip().splitlines()[0]
        print(f"  pgmq        not installed ({why}): 'make bench' installs tools/peers/pgmq")
        return False
    pgq.execute("SELECT pgmq.create(%s)", (CHANNEL,))
    version = pgq.execute("SELECT extversion FROM pg_extension WHERE extname = 'pgmq'").fetchone()[0]
    print(f"  pgmq        {version} (tools/peers/pgmq), in database {PGQ_DB}")
    return True


def _get_sql(admin: psycopg.Connection) -> str:
    """The claim pg_mq_get_msg_text runs on queue CHANNEL: $1 (how many) and $2 (its
    timestamp) written in, statement_timestamp() standing for the clock reading."""
    try:
        sql = admin.execute("SELECT _pg_mq_get_sql(%s, %s, true, false)", (CHANNEL, BATCH)).fetchone()[0]
    except psycopg.Error:
        return "SELECT 1 WHERE false"  # not installed: the case is skipped anyway
    return sql.replace("$1", str(BATCH)).replace("$2", "pg_catalog.statement_timestamp()")


def installed_functions(admin: psycopg.Connection) -> set[str]:
    rows = admin.execute(
        "SELECT p.proname FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'"
        " JOIN pg_extension e ON e.oid = d.refobjid WHERE e.extname = 'pg_message_queue'"
    ).fetchall()
    return {r[0] for r in rows}


def select_cases(only: str | None) -> list[Case]:
    """Cases named in ``only``: exact names, a prefix up to an underscore, globs, aliases."""
    if not only:
        return list(CASE_LIST)
    wanted: list[str] = []
    for word in only.split(","):
        word = word.strip()
        wanted.extend(ALIASES.get(word, [word]))

    def hit(w: str, name: str) -> bool:
        return bool(w) and (w == name or name.startswith(w + "_") or fnmatch.fnmatchcase(name, w))

    return [c for c in CASE_LIST if any(hit(w, c.name) for w in wanted)]


def wants(only: str | None, name: str) -> bool:
    return not only or any(w.strip() == name for w in only.split(","))


def run_cases(bench: Bench, clients: Clients, cases: list[Case], have: set[str]) -> dict[str, Measured]:
    measured: dict[str, Measured] = {}
    for case in cases:
        m = Measured()
        missing = sorted({f for f in case.ext.requires if f not in have})
        if missing:
            m.skipped = f"skipped: {', '.join(missing)} not installed yet"
        elif case.kind == "latency" and bench.args.clients < 2:
            m.skipped = "skipped: needs 2 clients"
        measured[case.name] = m
    for rnd in range(bench.args.rounds):
        for i, case in enumerate(cases):
            m = measured[case.name]
            if m.skipped or m.error:
                continue
            variants = [v for v in case.variants if bench.has_peer(v.table)]
            order = variants if (rnd + i) % 2 == 0 else variants[::-1]
            t0 = time.monotonic()
            try:
                for variant in order:
                    bench.run_variant(clients, case, variant, m)
            except Exception as exc:
                m.error = f"failed: {str(exc).strip().splitlines()[0]}"
            print(
                f"  round {rnd + 1}/{bench.args.rounds} {case.name:<16} "
                f"{_round_summary(case, m)} ({time.monotonic() - t0:.1f}s)",
                flush=True,
            )
    return measured


def _round_summary(case: Case, m: Measured) -> str:
    if m.error:
        return m.error
    unit = "ms p50" if case.kind == "latency" else "msg/s"
    parts = []
    for v in case.variants:
        vals = m.rates.get(v.label)
        if vals:
            last = vals[-1]
            parts.append(f"{v.label} {last:.3f}" if case.kind == "latency" else f"{v.label} {last:,.0f}")
    return ", ".join(parts) + f" {unit}"


# --------------------------------------------------------------------------- report


def print_table(cases: list[Case], measured: dict[str, Measured]) -> None:
    head = (
        f"{'case':<38} {'sync':<4} {'ext msg/s':>10} {'raw msg/s':>10} "
        f"{'ratio':>6} {'(min-max)':>11} {'target':>7}  verdict"
    )
    section = None
    print()
    print(head)
    print("-" * len(head))
    for case in cases:
        if case.kind != "throughput":
            continue
        if case.section != section:
            section = case.section
            print(f"[{section}]")
        m = measured[case.name]
        title = case.title
        if m.skipped or m.error:
            print(f"{title:<38} {case.sync_commit:<4} {m.skipped or m.error}")
            continue
        ext = m.rates.get("ext", [])
        raw = m.rates.get(case.raws[0].label, [])
        ratios = paired_ratios(ext, raw)
        r = median(ratios)
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else ""
        print(
            f"{title:<38} {case.sync_commit:<4} {fmt_rate(median(ext)):>10} {fmt_rate(median(raw)):>10} "
            f"{r:>6.2f} {spread:>11} {'>=' + format(case.target, '.2f'):>7}  {verdict(r, case.target)}"
        )
        for extra in case.raws[1:]:
            vals = m.rates.get(extra.label, [])
            er = median(paired_ratios(ext, vals))
            print(
                f"{'  ext vs ' + extra.label:<38} {'':<4} {'':>10} {fmt_rate(median(vals)):>10} "
                f"{er:>6.2f} {'':>11} {'info':>7}  ({extra.label}/raw {median(paired_ratios(vals, raw)):.2f})"
            )
        for note in dict.fromkeys(m.notes):
            print(f"{'':<6}note: {note}")
    lat_cases = [c for c in cases if c.kind == "latency"]
    if lat_cases:
        print()
        print(f"{'latency, sender commit -> consumer holds it':<44} {'p50 ms':>8} {'p99 ms':>8} {'n':>6}")
        for case in lat_cases:
            m = measured[case.name]
            if m.skipped or m.error:
                print(f"{case.title:<44} {m.skipped or m.error}")
                continue
            if len(lat_cases) > 1:
                print(case.title)
            for v in case.variants:
                lat = m.lat.get(v.label, [])
                lost = m.lost.get(v.label, 0)
                p50 = percentile(lat, 50)
                tail = ""
                if v.label == "ext":
                    tail = f"  target p50 <= {case.target:g} ms: {verdict(p50, case.target, False)}"
                if lost:
                    tail += f"  ({lost} not received in time)"
                print(f"{'  ' + v.label:<44} {p50:>8.3f} {percentile(lat, 99):>8.3f} {len(lat):>6}{tail}")
            ext50 = median(m.rates.get("ext", []))
            raw50 = median(m.rates.get("raw", []))
            if raw50 == raw50 and raw50:
                print(f"{'  ext/raw of the per-round p50s':<44} {ext50 / raw50:>8.2f}")
    print_summary(cases, measured)
    print()
    print("What each variant runs:")
    for case in cases:
        for v in case.variants:
            print(f"  {case.name:<16} {v.label:<11} {v.what}")


def _ratio(m: Measured, label: str, base: str = "raw") -> float:
    return median(paired_ratios(m.rates.get(label, []), m.rates.get(base, [])))


def print_summary(cases: list[Case], measured: dict[str, Measured]) -> None:
    """The issue's table: the raw baseline's msg/s, then PgQ's, pgmq's and our ratio to it,
    and the floor (the same work in plain SQL, no function), all from the same run."""
    done = {c.name: measured[c.name] for c in cases if not (measured[c.name].skipped or measured[c.name].error)}

    def cell(value: float) -> str:
        return "n/a" if value != value else f"{value:.2f}"

    rows: list[tuple[str, str, str, str, str, str]] = []
    for name, label in [
        ("send1_sync_on", "a) send 1/tx, synchronous_commit on"),
        ("send1_sync_off", "b) send 1/tx, synchronous_commit off"),
        ("send100_batch", "c) send 100/tx (pg_mq_send_batch)"),
    ]:
        if name in done:
            m = done[name]
            raw = fmt_rate(median(m.rates.get("raw", [])))
            floor = cell(_ratio(m, "ext SQL"))
            rows.append((label, raw, cell(_ratio(m, "PgQ")), cell(_ratio(m, "pgmq")), cell(_ratio(m, "ext")), floor))
    if "get100" in done:
        m = done["get100"]
        ours = [cell(_ratio(m, "ext"))]
        ours += [cell(_ratio(done[n], "ext")) if n in done else "n/a" for n in ("pop100", "read_ack100")]
        pgmq = cell(_ratio(done["read_ack100"], "pgmq")) if "read_ack100" in done else "n/a"
        lease = cell(_ratio(done["read_ack100"], "raw lease")) if "read_ack100" in done else "n/a"
        rows.append(
            (
                "d) drain in batches of 100: get / pop / read+ack",
                fmt_rate(median(m.rates.get("raw", []))),
                cell(_ratio(m, "PgQ")) + " (1 consumer)",
                pgmq + " (read+delete)",
                " / ".join(ours),
                f"{cell(_ratio(m, 'ext SQL'))} / - / {lease}",
            )
        )
    for name, label in [
        ("latency", "e) latency p50 / p99, commit -> consumer holds it"),
        ("latency_burst", "e) the same, right after a burst was consumed"),
    ]:
        if name not in done:
            continue
        m = done[name]
        rows.append(
            (
                label,
                f"{percentile(m.lat.get('raw', []), 50):.2f} / {percentile(m.lat.get('raw', []), 99):.2f} ms",
                "not measured",
                "not measured",
                f"{percentile(m.lat.get('ext', []), 50):.2f} / {percentile(m.lat.get('ext', []), 99):.2f} ms",
                "raw",
            )
        )
    if not rows:
        return
    print()
    print("Ratios to the raw table, medians of the per-round ratios of this run (higher is better):")
    head = (
        f"{'scenario':<50} {'raw':>17} {'PgQ 3.5':>16} {'pgmq 1.5.1':>20} {'pg_message_queue':>20}"
        f" {'floor (plain SQL)':>20}"
    )
    print(head)
    print("-" * len(head))
    for label, raw, pgq, pgmq, ours, floor in rows:
        print(f"{label:<50} {raw:>17} {pgq:>16} {pgmq:>20} {ours:>20} {floor:>20}")
    print(
        "floor: the same work in plain SQL in the same rounds: a)-c) 'ext SQL' (the queue table's INSERT"
        " with its indexes and NOTIFY trigger), d) 'ext SQL' (the get's claim statement) and 'raw lease'"
        " (UPDATE of an indexed due time, then DELETE, 2 tx), e) the raw table's own latency."
    )


# --------------------------------------------------------------------------- layers


LAYER_N = 5000


def _prologue(admin: psycopg.Connection) -> str | None:
    """The generated prologue, cut from an installed PL/Python function's source."""
    row = admin.execute("SELECT prosrc FROM pg_proc WHERE proname = '_pg_mq_send' LIMIT 1").fetchone()
    if row is None:
        return None
    lines = row[0].splitlines()
    for i, line in enumerate(lines):
        if line.startswith("    GD[") and line.rstrip().endswith("= pgmq"):
            return "\n".join(lines[: i + 1])
    return None


def _ext_schema(admin: psycopg.Connection) -> str:
    return admin.execute(
        "SELECT quote_ident(n.nspname) FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'pg_message_queue'"
    ).fetchone()[0]


def _queue_table(admin: psycopg.Connection) -> str:
    return admin.execute(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.table_name)"
        " FROM pg_mq_config_catalog c, pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'pg_message_queue' AND c.channel = %s",
        (CHANNEL,),
    ).fetchone()[0]


def _try(admin: psycopg.Connection, sql: str) -> bool:
    """Create a helper; one the installed extension cannot support is left out."""
    try:
        with admin.transaction():
            admin.execute(sql)
        return True
    except psycopg.Error:
        return False


def setup_layers(admin: psycopg.Connection) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Helpers in schema bench_layers; returns (server-side plpgsql steps, client statements)."""
    admin.execute("DROP SCHEMA IF EXISTS bench_layers CASCADE")
    admin.execute("CREATE SCHEMA bench_layers")
    ext, qt = _ext_schema(admin), _queue_table(admin)
    sp = "SET search_path = pg_catalog, pg_temp"
    admin.execute("CREATE FUNCTION bench_layers.sql_noop() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    admin.execute(f"CREATE FUNCTION bench_layers.sql_noop_sp() RETURNS int LANGUAGE sql {sp} AS 'SELECT 1'")
    admin.execute("CREATE FUNCTION bench_layers.py_noop() RETURNS int LANGUAGE plpython3u AS 'return 1'")
    admin.execute(f"CREATE FUNCTION bench_layers.py_noop_sp() RETURNS int LANGUAGE plpython3u {sp} AS 'return 1'")
    admin.execute(f"CREATE TABLE bench_layers.q_no_trigger (LIKE {qt} INCLUDING DEFAULTS INCLUDING INDEXES)")
    # 1.0's pg_mq_send_message, which PostgreSQL inlined: no SET clause, one expression
    # (the row's times, which _pg_mq_send now leaves NULL, were read back through Python).
    inline = _try(
        admin,
        "CREATE FUNCTION bench_layers.send_inline(in_channel text, in_payload anyelement)"
        f" RETURNS {ext}.pg_mq_sent LANGUAGE sql AS $$ SELECT {ext}._pg_mq_send(in_channel,"
        " pg_catalog.pg_typeof(in_payload)::pg_catalog.oid, in_payload::pg_catalog.text,"
        " NULL::pg_catalog.interval, 0, NULL::pg_catalog.text, NULL::pg_catalog.jsonb) $$",
    )
    p = "repeat('m', 100)"
    version = admin.execute(
        f"SELECT xmin::text || ':' || ctid::text FROM {ext}.pg_mq_config_catalog WHERE channel = %s", (CHANNEL,)
    ).fetchone()[0]
    guarded = (
        f"INSERT INTO {qt} (payload, visible_at, priority, dedup_key, headers)"
        f" SELECT {p}, now() + COALESCE(NULL::interval, '0'::interval), 0, NULL, NULL"
        f" WHERE EXISTS (SELECT FROM {ext}.pg_mq_config_catalog WHERE channel = '{CHANNEL}'"
        f" AND xmin::text || ':' || ctid::text = '{version}')"
    )
    steps = [
        ("plpgsql loop alone (subtracted below)", "PERFORM 1"),
        ("SQL function, inlined", "PERFORM bench_layers.sql_noop()"),
        ("SQL function with SET search_path", "PERFORM bench_layers.sql_noop_sp()"),
        ("PL/Python return 1", "PERFORM bench_layers.py_noop()"),
        ("PL/Python return 1, SET search_path", "PERFORM bench_layers.py_noop_sp()"),
    ]
    prologue = _prologue(admin)
    if prologue is not None:
        for name, body in [
            ("py_prologue", "return 1"),
            ("py_find", f"return pgmq.queues.get('{CHANNEL}').type_oid"),
        ]:
            _try(
                admin,
                f"CREATE FUNCTION bench_layers.{name}() RETURNS int LANGUAGE plpython3u {sp}"
                " AS $py$\n" + prologue + "\n" + body + "\n$py$",
            )
        steps += [
            ("  + generated prologue (GD lookup)", "PERFORM bench_layers.py_prologue()"),
            ("  + queues.get() catalog lookup (SPI)", "PERFORM bench_layers.py_find()"),
        ]
    steps += [
        ("raw INSERT INTO raw_q", f"INSERT INTO raw_q (payload) VALUES ({p})"),
        (
            "raw INSERT + pg_notify (queued until commit)",
            f"INSERT INTO raw_q (payload) VALUES ({p}); PERFORM pg_notify('{RAW_CHANNEL}', i::text)",
        ),
        (
            "INSERT into a queue-shaped table, no trigger",
            f"INSERT INTO bench_layers.q_no_trigger (payload) VALUES ({p})",
        ),
        ("INSERT into the queue table (with NOTIFY trigger)", f"INSERT INTO {qt} (payload) VALUES ({p})"),
        ("  + the catalog guard (the INSERT _pg_mq_send runs)", guarded),
        (
            "  + in a subtransaction (plpy.execute runs one)",
            f"BEGIN {guarded}; EXCEPTION WHEN raise_exception THEN END",
        ),
        (
            "_pg_mq_send(...) directly (the PL/Python half)",
            f"PERFORM {ext}._pg_mq_send('{CHANNEL}', 25, {p}, NULL, 0, NULL, NULL)",
        ),
    ]
    if inline:
        steps.append(
            ("1.0's inlined SQL wrapper -> _pg_mq_send", f"PERFORM bench_layers.send_inline('{CHANNEL}', {p})")
        )
    call = admin.execute(
        f"SELECT to_jsonb(c) ->> 'send_call' FROM {ext}.pg_mq_config_catalog c WHERE channel = %s", (CHANNEL,)
    ).fetchone()[0]
    if call:
        # send_call is "SELECT <function>($1, $2, $3, $4, $5)": payload, its type, delay, priority, headers.
        direct = call.split("(")[0].replace("SELECT", "PERFORM", 1) + f"({p}, 25, NULL, 0, NULL)"
        steps.append(("generated send function directly", direct))
    steps.append(("pg_mq_send_message before (-> _pg_mq_send)", f"PERFORM bench_prior.send_python('{CHANNEL}', {p})"))
    steps.append(
        ("pg_mq_send_message before (-> send_call EXECUTE)", f"PERFORM bench_prior.send_execute('{CHANNEL}', {p})")
    )
    steps.append(("pg_mq_send_message(...) as installed", f"PERFORM {ext}.pg_mq_send_message('{CHANNEL}', {p})"))
    client = [
        ("SELECT 1 (round trip + commit)", "SELECT 1"),
        ("raw INSERT", RAW_INSERT),
        ("raw INSERT + NOTIFY", RAW_INSERT_NOTIFY),
        ("INSERT .. RETURNING on the queue table", EXT_SQL_SEND.replace("{qt}", qt)),
        ("SELECT _pg_mq_send(...) directly", f"SELECT {ext}._pg_mq_send('{CHANNEL}', 25, %s, NULL, 0, NULL, NULL)"),
    ]
    if inline:
        client.append(("SELECT 1.0's inlined SQL wrapper", f"SELECT bench_layers.send_inline('{CHANNEL}', %s::text)"))
    client.append(("SELECT pg_mq_send_message before (-> _pg_mq_send)", PY_SEND1))
    client.append(("SELECT pg_mq_send_message before (-> send_call EXECUTE)", EXEC_SEND1))
    client.append(("SELECT pg_mq_send_message(...) as installed", SEND1))
    return steps, client


def run_layers(dsn: str, admin: psycopg.Connection, repeats: int = 3) -> None:
    """Per-call cost of each layer of a send, server-side and from one client."""
    steps, client = setup_layers(admin)
    print()
    print(f"Where a send's time goes (1): server-side µs per call, {LAYER_N} calls in one plpgsql loop,")
    print(f"one backend, rolled back (no commit, no round trip); median of {repeats}, loop cost subtracted.")
    with psycopg.connect(dsn, autocommit=True) as conn:
        results: list[tuple[str, float | str]] = []
        for label, stmt in steps:
            block = "DO $do$ BEGIN FOR i IN 1.." + str(LAYER_N) + " LOOP " + stmt + "; END LOOP; END $do$"
            times = []
            try:
                for _ in range(repeats + 1):  # the first run warms the backend
                    conn.execute("BEGIN")
                    t = time.perf_counter()
                    conn.execute(block)
                    times.append(time.perf_counter() - t)
                    conn.execute("ROLLBACK")
                results.append((label, median(times[1:]) / LAYER_N * 1e6))
            except Exception as exc:
                conn.execute("ROLLBACK")
                results.append((label, f"n/a: {str(exc).strip().splitlines()[0][:70]}"))
        base = results[0][1] if isinstance(results[0][1], float) else 0.0
        for label, value in results:
            if isinstance(value, float):
                shown = value if label.startswith("plpgsql loop") else value - base
                print(f"  {label:<52} {shown:8.1f}")
            else:
                print(f"  {label:<52} {value}")

        n = LAYER_N // 2
        print()
        print("Where a send's time goes (2): µs per statement from one client, autocommit,")
        print(f"synchronous_commit=off, {n} statements; median of {repeats} (round trip and commit included).")
        conn.execute("SET synchronous_commit = off")
        payload = make_ctx(100).payload
        for label, stmt in client:
            times = []
            try:
                for _ in range(repeats + 1):
                    t = time.perf_counter()
                    for _ in range(n):
                        conn.execute(stmt, (payload,) if "%s" in stmt else None)
                    times.append(time.perf_counter() - t)
                print(f"  {label:<52} {median(times[1:]) / n * 1e6:8.1f}")
            except Exception as exc:
                print(f"  {label:<52} n/a: {str(exc).strip().splitlines()[0][:70]}")
    admin.execute("DROP SCHEMA bench_layers CASCADE")


# --------------------------------------------------------------------------- soak


def run_soak(bench: Bench, clients: Clients, have: set[str]) -> None:
    args = bench.args
    minutes = args.soak_minutes
    print()
    print(f"Soak: {minutes:g} min at {args.soak_rate:g} msg/s, send 1/tx + read 100/ack ")
    missing = sorted({"pg_mq_read", "pg_mq_ack", "pg_mq_send_message"} - have)
    if missing:
        print(f"  skipped: {', '.join(missing)} not installed yet")
        return
    if args.clients < 2:
        print("  skipped: needs 2 clients")
        return
    bench.reset("ext")
    maintain = "pg_mq_maintain" in have
    print(f"  autovacuum on; {'pg_mq_maintain(channel) every 10 s' if maintain else 'no pg_mq_maintain installed'}")
    size_sql = f"SELECT pg_total_relation_size('{bench.queue_table}'::regclass)"
    samples: list[tuple[float, int]] = []
    start = time.monotonic()
    next_sample = [start]

    def poll() -> None:
        now = time.monotonic()
        if now >= next_sample[0]:
            if maintain:
                bench.admin.execute("SELECT pg_mq_maintain(%s)", (CHANNEL,))
            size = bench.admin.execute(size_sql).fetchone()[0]
            samples.append((now - start, size))
            next_sample[0] += 10.0
            if len(samples) % 6 == 1:
                print(f"  t={now - start:5.0f}s  queue table {size / 1e6:8.2f} MB", flush=True)

    cmd = {
        "case": "soak",
        "label": "ext",
        "kind": "soak",
        "seconds": minutes * 60,
        "sync_commit": "off",
        "payload_bytes": args.payload_bytes,
        "rate": args.soak_rate,
    }
    results = clients.run(cmd, poll=poll)
    end_size = bench.admin.execute(size_sql).fetchone()[0]
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        print(f"  failed: {errors[0]}")
        return
    sent = results[1]["count"]
    acked = results[0]["count"]
    after_1 = next((s for t, s in samples if t >= 60.0), None)
    depth = bench.admin.execute(f"SELECT count(*) FROM {bench.queue_table}").fetchone()[0]
    print(f"  sent {sent} ({sent / results[1]['elapsed']:.0f}/s), acked {acked}, rows left {depth}")
    if after_1 is None:
        print(f"  queue table at end {end_size / 1e6:.2f} MB (run shorter than a minute: no 1-minute size)")
        return
    growth = end_size / after_1 if after_1 else float("nan")
    print(
        f"  queue table after minute 1: {after_1 / 1e6:.2f} MB, at end: {end_size / 1e6:.2f} MB, "
        f"ratio {growth:.2f} (target <= 2.00): {verdict(growth, 2.0, False)}"
    )


# --------------------------------------------------------------------------- AMQP hook


def run_amqp(args: argparse.Namespace, pg: Postgres, dsn: str) -> None:
    # ---- AMQP HOOK: tools/bench_amqp.py (another engineer's) plugs in here. ----
    print()
    path = ROOT / "tools" / "bench_amqp.py"
    if not path.exists():
        print("AMQP: tools/bench_amqp.py is absent; nothing to run.")
        return
    spec = importlib.util.spec_from_file_location("bench_amqp", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    offered = {
        "dsn": dsn,
        "pg": pg,
        "seconds_per_case": args.seconds_per_case,
        "rounds": args.rounds,
        "clients": args.clients,
        "payload_bytes": args.payload_bytes,
        "args": args,
    }
    params = inspect.signature(module.run).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = offered
    else:
        kwargs = {k: v for k, v in offered.items() if k in params}
    print("AMQP (tools/bench_amqp.py):", flush=True)
    result = module.run(**kwargs)
    if isinstance(result, str):  # it prints its own table; a string result is shown as well
        print(result)


# --------------------------------------------------------------------------- main


def describe(admin: psycopg.Connection, args: argparse.Namespace) -> None:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = "?"
    version = admin.execute("SHOW server_version").fetchone()[0]
    ext = admin.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_message_queue'").fetchone()[0]
    settings = dict(
        admin.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'shared_buffers', 'wal_sync_method')"
        ).fetchall()
    )
    print("pg_message_queue benchmark (not a test: no assertions on timing)")
    print(f"  date        {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"  machine     {platform.node()}: {cpu}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print(
        f"  server      PostgreSQL {version}, fsync={settings.get('fsync')}, shared_buffers="
        f"{int(settings.get('shared_buffers', 0)) * 8 // 1024}MB,"
        f" wal_sync_method={settings.get('wal_sync_method')}"
    )
    print(f"  extension   pg_message_queue {ext} (git {commit})")
    print(
        f"  clients     {args.clients} processes, one connection each; {args.rounds} interleaved rounds x "
        f"{args.seconds_per_case:g}s per variant; payload {args.payload_bytes} bytes"
    )
    print("  reported    median msg/s over rounds; ratio = median of per-round ext/raw")
    print(f"  latency     {args.latency_rate:g} msg/s paced sender, 1 LISTENing consumer, synchronous_commit=off")


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per case (default 5)")
    ap.add_argument(
        "--seconds-per-case", type=float, default=1.2, help="timed window per variant per round (default 1.2)"
    )
    ap.add_argument("--clients", type=int, default=2, help="client processes (default 2)")
    ap.add_argument("--payload-bytes", type=int, default=100)
    ap.add_argument("--latency-rate", type=float, default=200.0, help="latency sender's msg/s")
    ap.add_argument(
        "--only",
        help="comma-separated case names, prefixes up to an underscore or globs ("
        + ", ".join([*CASES, "layers", "issue4", "amqp"])
        + "); soak and AMQP run only when asked",
    )
    ap.add_argument(
        "--burst",
        type=int,
        default=200_000,
        help="messages sent and consumed right before latency_burst's window (default 200,000; issue 11 says 1M)",
    )
    ap.add_argument(
        "--burst-by",
        choices=["get_msg_text", "pop", "purge"],
        default="get_msg_text",
        help="how latency_burst's burst is consumed: one pg_mq_get_msg_text or pg_mq_pop of all, or pg_mq_purge_queue",
    )
    ap.add_argument("--no-layers", action="store_true", help="skip the per-layer cost breakdown")
    ap.add_argument("--soak", action="store_true", help="also a soak (default 10 minutes)")
    ap.add_argument("--soak-minutes", type=float, default=10.0)
    ap.add_argument("--soak-rate", type=float, default=1000.0)
    ap.add_argument("--amqp", action="store_true", help="also run tools/bench_amqp.py if present")
    ap.add_argument("--keep", action="store_true", help="leave the server's folder (and log) behind")
    return ap.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if shutil.which("psql") is None:
        raise SystemExit("psql is missing: run 'make deps'")
    root = Path(tempfile.mkdtemp(prefix="pgmq-bench-"))
    os.chmod(root, 0o755)  # the server runs as postgres when we are root
    pg = Postgres(root / "pg", fsync=True)
    clients: Clients | None = None
    try:
        pg.start()
        pg.psql(f"CREATE DATABASE {DBNAME}")
        dsn = pg.dsn(DBNAME)
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("CREATE EXTENSION pg_message_queue CASCADE")
            admin.execute("SELECT pg_mq_create_queue(%s, 'text')", (CHANNEL,))
            admin.execute("SELECT pg_mq_create_queue(%s, 'text')", (QUIET,))
            admin.execute("SELECT pg_mq_set_queue_config(%s, 'notify', 'off')", (QUIET,))
            admin.execute("CREATE SCHEMA bench_prior")
            _try(admin, PRIOR_SEND_SQL.replace("{ext}", _ext_schema(admin)))
            _try(admin, PRIOR_EXEC_SQL.replace("{ext}", _ext_schema(admin)))
            _try(admin, PRIOR_BATCH_SQL.replace("{ext}", _ext_schema(admin)))
            admin.execute(
                "CREATE TABLE raw_q (id bigserial PRIMARY KEY,"
                " sent_at timestamptz NOT NULL DEFAULT now(), payload text NOT NULL)"
            )
            admin.execute(
                "CREATE TABLE raw_l (id bigserial PRIMARY KEY, vt timestamptz NOT NULL DEFAULT now(),"
                " reads integer NOT NULL DEFAULT 0, payload text NOT NULL)"
            )
            admin.execute("CREATE INDEX ON raw_l (vt)")
            describe(admin, args)
            pgq = setup_pgq(pg)
            print(flush=True)
            have = installed_functions(admin)
            bench = Bench(args, dsn, admin, pgq)
            bench.pgq_dsn = pg.dsn(PGQ_DB)
            bench.pgmq = setup_pgmq(pgq)
            cases = select_cases(args.only)
            need_clients = cases or args.soak
            if need_clients:
                clients = Clients(dsn, args.clients)
            measured = run_cases(bench, clients, cases, have) if cases and clients else {}
            if cases:
                print_table(cases, measured)
            if not args.no_layers and (not args.only or wants(args.only, "layers")):
                run_layers(dsn, admin)
            if args.soak and clients is not None:
                run_soak(bench, clients, have)
        if args.amqp or (args.only and wants(args.only, "amqp")):
            run_amqp(args, pg, dsn)
    finally:
        if clients is not None:
            clients.close()
        pg.stop()
        if args.keep:
            print(f"server folder kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
