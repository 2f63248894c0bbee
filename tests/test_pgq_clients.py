"""Real PgQ clients that no one here wrote, against real PgQ 3 and against ours.

- Debian's ``pgqd`` (package pgqd), the ticker daemon: run as a subprocess with
  its ini in a temp folder, limited to the test's database. It must tick the
  queue (no ticks of our own here), and move retried events back (its retry loop
  calls pgq.maint_retry_events()), and log no errors.
- PgQ's own Python consumer library (PyPI ``pgq`` 3.8, on skytools): a
  ``pgq.Consumer`` subclass (tests/clients/pgq_recorder.py) run by the library's
  main loop, registered with its own ``--register``; it must receive every event,
  once, in both of the library's fetch modes (a cursor over pgq.get_batch_cursor,
  or pgq.get_batch_events), and its retry tagging (pgq.event_retry) must work.

Parametrised over both backends through the ``pgq_backend`` fixture (tests/conftest.py):
``ours`` skips only when pg_message_queue_pgq is not installed.
"""

from __future__ import annotations

import datetime
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

PGQD = shutil.which("pgqd") or "/usr/bin/pgqd"
RECORDER = Path(__file__).resolve().parent / "clients" / "pgq_recorder.py"
TIMEOUT = 60.0


def one(conn: psycopg.Connection, sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def wait_for(what: str, check: Callable[[], bool], timeout: float = TIMEOUT, logs: tuple[Path, ...] = ()) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p}\n{p.read_text()[-3000:] if p.exists() else '(none)'}" for p in logs)
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    """Ask the client to stop as its docs say (SIGINT), kill it if it does not."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- pgqd


@pytest.fixture
def pgqd(pgq_backend, tmp_path: Path) -> Iterator[Callable[[], Path]]:
    """Start Debian's pgqd for the test's database; returns its log file's path."""
    params = conninfo_to_dict(pgq_backend.dsn)
    log = tmp_path / "pgqd.log"
    started: list[subprocess.Popen] = []

    def start() -> Path:
        ini = tmp_path / "pgqd.ini"
        ini.write_text(
            "[pgqd]\n"
            f"base_connstr = host={params['host']} port={params['port']} user={params['user']}\n"
            f"initial_database = {params['dbname']}\n"
            f"database_list = {params['dbname']}\n"
            f"logfile = {log}\n"
            f"pidfile = {tmp_path / 'pgqd.pid'}\n"
            "check_period = 1\n"
            "ticker_period = 0.2\n"
            "retry_period = 0.5\n"
            "maint_period = 1\n"
        )
        out = open(tmp_path / "pgqd.out", "w")  # noqa: SIM115 (lives as long as the process)
        started.append(subprocess.Popen([PGQD, "-v", str(ini)], stdout=out, stderr=subprocess.STDOUT))
        return log

    yield start
    for proc in started:
        stop(proc)


def _take_all(db: psycopg.Connection, queue: str, consumer: str) -> list[tuple]:
    got = []
    while (batch := one(db, "SELECT pgq.next_batch(%s, %s)", (queue, consumer))) is not None:
        got.extend(db.execute("SELECT ev_id, ev_retry, ev_data FROM pgq.get_batch_events(%s)", (batch,)).fetchall())
        assert one(db, "SELECT pgq.finish_batch(%s)", (batch,)) == 1
    return got


def test_pgqd_ticks_and_a_consumer_gets_batches(pgq_backend, pgqd) -> None:
    db = pgq_backend.connect()
    assert one(db, "SELECT pgq.create_queue('q')") == 1
    assert one(db, "SELECT pgq.set_queue_config('q', 'ticker_max_lag', '0.2 seconds')") == 1
    assert one(db, "SELECT pgq.register_consumer('q', 'c')") == 1
    first_tick = one(db, "SELECT last_tick_id FROM pgq.get_queue_info('q')")
    log = pgqd()
    wait_for("pgqd to check pgq's version", lambda: log.exists() and "pgq version ok" in log.read_text(), logs=(log,))

    sent = []
    for n in range(5):
        with db.transaction():
            sent += [one(db, "SELECT pgq.insert_event('q', 't', %s)", (f"{n}.{i}",)) for i in range(n * 3 + 1)]
    got: list[tuple] = []

    def drained() -> bool:
        got.extend(_take_all(db, "q", "c"))
        return len(got) >= len(sent)

    wait_for("the consumer to receive every event through pgqd's ticks", drained, logs=(log,))
    assert sorted(g[0] for g in got) == sorted(sent)
    assert len(got) == len(set(got))
    assert one(db, "SELECT last_tick_id FROM pgq.get_queue_info('q')") > first_tick

    # pgqd's retry loop moves a retried event back; its ticks hand it out again
    ev = one(db, "SELECT pgq.insert_event('q', 't', 'retry me')")
    batch_events: list[tuple] = []

    def batch_with_event() -> bool:
        batch = one(db, "SELECT pgq.next_batch('q', 'c')")
        if batch is None:
            return False
        rows = db.execute("SELECT ev_id FROM pgq.get_batch_events(%s)", (batch,)).fetchall()
        if (ev,) in rows:
            batch_events.append(batch)
            return True
        assert one(db, "SELECT pgq.finish_batch(%s)", (batch,)) == 1
        return False

    wait_for("a batch with the event to retry", batch_with_event, logs=(log,))
    (batch,) = batch_events
    assert one(db, "SELECT pgq.event_retry(%s, %s, 0)", (batch, ev)) == 1
    assert one(db, "SELECT pgq.finish_batch(%s)", (batch,)) == 1
    again: list[tuple] = []

    def retried() -> bool:
        again.extend(_take_all(db, "q", "c"))
        return any(g[0] == ev for g in again)

    wait_for("pgqd to move the retried event back", retried, logs=(log,))
    assert [g for g in again if g[0] == ev] == [(ev, 1, "retry me")]
    text = log.read_text()
    assert " ERROR " not in text and "failed" not in text, text[-3000:]


# --------------------------------------------------------------------------- Python consumer


def tick(conn: psycopg.Connection, queue: str) -> None:
    conn.execute("SELECT pgq.force_tick(%s)", (queue,))
    conn.execute("SELECT pgq.ticker()")


def run_recorder(ini: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RECORDER), str(ini), *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("lazy_fetch", [0, 50], ids=["get_batch_events", "get_batch_cursor"])
def test_python_pgq_consumer_receives_every_event(pgq_backend, tmp_path: Path, lazy_fetch: int) -> None:
    db = pgq_backend.connect()
    assert one(db, "SELECT pgq.create_queue('q')") == 1
    out = tmp_path / "events.jsonl"
    log = tmp_path / "recorder.log"
    ini = tmp_path / "recorder.ini"
    ini.write_text(
        "[recorder]\n"
        "job_name = recorder_test\n"
        f"db = {pgq_backend.dsn}\n"
        "queue_name = q\n"
        "consumer_name = recorder_consumer\n"
        f"pgq_lazy_fetch = {lazy_fetch}\n"
        "loop_delay = 0.1\n"
        "exception_sleep = 1\n"
        "use_skylog = 0\n"
        f"logfile = {log}\n"
        f"pidfile = {tmp_path / 'recorder.pid'}\n"
        f"out_file = {out}\n"
    )
    reg = run_recorder(ini, "--register")
    assert reg.returncode == 0, reg.stdout + reg.stderr
    assert db.execute("SELECT queue_name, consumer_name FROM pgq.get_consumer_info()").fetchall() == [
        ("q", "recorder_consumer")
    ]
    proc = subprocess.Popen(
        [sys.executable, str(RECORDER), str(ini)],
        stdout=open(tmp_path / "recorder.out", "w"),  # noqa: SIM115 (lives as long as the process)
        stderr=subprocess.STDOUT,
    )
    try:
        sent: dict[int, tuple] = {}
        for n in range(6):
            with db.transaction():
                for i in range(n * 40 + 1):
                    data = f"{n}.{i}"
                    ev = one(db, "SELECT pgq.insert_event('q', 'type', %s, %s, NULL, NULL, NULL)", (data, f"x{i}"))
                    sent[ev] = ("type", data, f"x{i}")
            tick(db, "q")
        retry_ev = one(db, "SELECT pgq.insert_event('q', 'type', 'retry-once')")
        tick(db, "q")

        def records() -> list[dict]:
            return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

        def retried_seen() -> bool:
            db.execute("SELECT pgq.maint_retry_events()")
            tick(db, "q")
            return sum(r["ev_id"] == retry_ev for r in records()) >= 2

        wait_for("the Python consumer to get every event and the retried one again", retried_seen,
                 logs=(log, tmp_path / "recorder.out"))  # fmt: skip
        time.sleep(0.5)  # let a duplicate, if any, show up
    finally:
        stop(proc)
    got = records()
    plain = [r for r in got if r["ev_id"] != retry_ev]
    assert sorted(r["ev_id"] for r in plain) == sorted(sent)  # every event, exactly once
    assert all((r["ev_type"], r["ev_data"], r["ev_extra1"]) == sent[r["ev_id"]] for r in plain)
    assert all(r["ev_retry"] is None for r in plain)
    assert [(r["ev_retry"], r.get("tagged")) for r in got if r["ev_id"] == retry_ev] == [(None, "retry"), (1, None)]
    unreg = run_recorder(ini, "--unregister")
    assert unreg.returncode == 0, unreg.stdout + unreg.stderr
    assert db.execute("SELECT * FROM pgq.get_consumer_info()").fetchall() == []


# --------------------------------------------------------------------------- Python producer


def test_python_pgq_producer_helpers(pgq_backend) -> None:
    """The library's producer side: ``pgq.insert_event`` (the 7-argument SQL function) and
    ``pgq.bulk_insert_events``, which asks ``pgq.current_event_table()`` and INSERTs the
    rows straight into that table (skytools.magic_insert), over psycopg2 as the library
    does. A consumer must see all of them, with their fields."""
    import pgq
    import psycopg2

    db = pgq_backend.connect()
    assert one(db, "SELECT pgq.create_queue('q')") == 1
    assert one(db, "SELECT pgq.register_consumer('q', 'c')") == 1
    conn = psycopg2.connect(pgq_backend.dsn)
    try:
        curs = conn.cursor()
        single = pgq.insert_event(curs, "q", "single", "data 0", "x1", None, "x3", None)
        # ev_time has no default in PgQ's event tables: the caller gives it
        rows = [["2026-01-02 03:04:05+00", "bulk", f"data {i}", f"e{i}"] for i in range(1, 251)]
        pgq.bulk_insert_events(curs, rows, ["time", "type", "data", "extra1"], "q")
        conn.commit()
    finally:
        conn.close()
    db.execute("SELECT pgq.force_tick('q')")
    assert one(db, "SELECT pgq.ticker()") >= 1
    got = []
    while (batch := one(db, "SELECT pgq.next_batch('q', 'c')")) is not None:
        got += db.execute(
            "SELECT ev_id, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_retry, ev_time"
            " FROM pgq.get_batch_events(%s)",
            (batch,),
        ).fetchall()
        assert one(db, "SELECT pgq.finish_batch(%s)", (batch,)) == 1
    assert [r[:7] for r in got if r[0] == single] == [(single, "single", "data 0", "x1", None, "x3", None)]
    bulk = sorted((r[1:4] for r in got if r[1] == "bulk"), key=lambda r: int(r[1].split()[1]))
    assert bulk == [("bulk", f"data {i}", f"e{i}") for i in range(1, 251)]
    assert {r[7] for r in got if r[1] == "bulk"} == {datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)}
    assert len(got) == 251 and len({r[0] for r in got}) == 251
