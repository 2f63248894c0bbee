"""The guarantees under faults: a PostgreSQL crash, broker kills, killed backends, timeouts.

Everything here runs on a PRIVATE PostgreSQL (fsync on) and a PRIVATE RabbitMQ
node, started once for this module, so crashing or pausing them never disturbs
the servers the other tests share. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import Rabbit
from servers import PG_BIN, Postgres, RabbitMQ, _as_owner

_dbs = iter(range(10**6))


@pytest.fixture(scope="module")
def private_pg() -> Iterator[Postgres]:
    root = Path(tempfile.mkdtemp(prefix="pgmq-faults-pg-"))
    root.chmod(0o755)
    pg = Postgres(root / "pg", fsync=True)
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
        subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture(scope="module")
def private_rabbit() -> Iterator[Rabbit]:
    root = Path(tempfile.mkdtemp(prefix="pgmq-faults-rabbit-"))
    node = RabbitMQ(root)
    node.start(timeout=120)
    try:
        yield Rabbit(node)
    finally:
        node.stop()
        subprocess.run(["rm", "-rf", str(root)], check=False)


def _rabbit_pid(rabbit: Rabbit) -> int:
    return int((rabbit.node.root / "rabbit.pid").read_text().strip())  # type: ignore[attr-defined]


@pytest.fixture
def rmq(private_rabbit: Rabbit) -> Iterator[Rabbit]:
    """The private node, resumed and running again after the test, whatever it did to it."""
    yield private_rabbit
    with contextlib.suppress(OSError, ValueError):
        os.kill(_rabbit_pid(private_rabbit), signal.SIGCONT)
    if not private_rabbit.node.running():  # type: ignore[attr-defined]
        _restart(private_rabbit)


def _restart(rabbit: Rabbit) -> None:
    """Start the node again after a kill; a start right after ``kill -9`` occasionally
    exits at once (the old node's name is still registered), so try up to 5 times,
    stopping the node's epmd in between."""
    for attempt in range(5):
        try:
            rabbit.node.restart()  # type: ignore[attr-defined]
            return
        except RuntimeError:
            if attempt == 4:
                raise
            # Forget the dead node everywhere (its epmd too) before the next try.
            rabbit.node.stop(epmd=True)  # type: ignore[attr-defined]
            time.sleep(2 + 2 * attempt)


def _reconnect(dsn: str, timeout: float = 60.0) -> psycopg.Connection:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return psycopg.connect(dsn, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def fresh_dsn(private_pg: Postgres, rmq: Rabbit) -> Iterator[str]:
    """A new database with the extension on the private server; broker_id 1 = the private node."""
    name = f"f{next(_dbs)}"
    with _reconnect(private_pg.dsn()) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    dsn = private_pg.dsn(name)
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("CREATE EXTENSION pg_message_queue CASCADE")
        db.execute(
            "INSERT INTO amqp.broker (host, port, vhost, username, password, connect_timeout, confirm_timeout)"
            " VALUES ('127.0.0.1', %s, '/', 'guest', 'guest', 1, 2)",
            (rmq.port,),
        )
    yield dsn
    if not private_pg.running():
        private_pg.start()
    with _reconnect(private_pg.dsn()) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _arrived(rmq: Rabbit, queue: str, count: int, timeout: float = 30, settle: float = 1.0) -> Counter[str]:
    """message_id -> copies that arrived; asserts each body is its message_id (so that a
    duplicate is exactly a second copy under the same id)."""
    got = rmq.drain(queue, count, timeout=timeout, settle=settle)
    assert all(props.message_id == body for props, body in got), "a resend changed its message_id"
    return Counter(props.message_id for props, _ in got)


# ---- 1. PostgreSQL stopped with -m immediate in the middle of everything ----


class Ledger:
    """What the clients saw commit, and what was in doubt (no answer to the commit)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: dict[str, int] = {}  # payload -> msg_id
        self.sent_in_doubt: set[str] = set()
        self.acked: set[int] = set()
        self.ack_in_doubt: set[int] = set()
        self.leased: set[int] = set()  # read (committed) and never acked
        self.published: set[str] = set()
        self.publish_in_doubt: set[str] = set()
        self.unexpected: list[BaseException] = []


def _sender(dsn: str, n: int, ledger: Ledger) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(10**9):
            payload = f"s{n}-{i}"
            try:
                (msg_id,) = conn.execute(
                    "SELECT msg_id FROM pg_mq_send_message('crash', %s::text)", (payload,)
                ).fetchone()
            except psycopg.OperationalError:
                with ledger.lock:
                    ledger.sent_in_doubt.add(payload)
                return
            with ledger.lock:
                ledger.sent[payload] = msg_id


def _consumer(dsn: str, ledger: Ledger) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            try:
                rows = conn.execute("SELECT msg_id FROM pg_mq_read('crash', 5, '4 seconds')").fetchall()
            except psycopg.OperationalError:
                return  # a lease in doubt: its message is either leased or ready, both fine
            ack = [r[0] for r in rows if r[0] % 2 == 0]
            with ledger.lock:
                ledger.leased.update(r[0] for r in rows if r[0] % 2)
            if not ack:
                time.sleep(0.01)
                continue
            try:
                done = [r[0] for r in conn.execute("SELECT * FROM pg_mq_ack('crash', %s)", (ack,))]
            except psycopg.OperationalError:
                with ledger.lock:
                    ledger.ack_in_doubt.update(ack)
                return
            with ledger.lock:
                ledger.acked.update(done)
                ledger.leased.update(set(ack) - set(done))  # not ours to ack any more: still leased


def _publisher(dsn: str, n: int, queue: str, ledger: Ledger) -> None:
    with psycopg.connect(dsn) as conn:
        for i in range(10**9):
            ids = [f"a{n}-{i}-{k}" for k in range(3)]
            try:
                for m in ids:
                    conn.execute("SELECT amqp.publish(1, '', %s, %s, message_id => %s)", (queue, m, m))
                conn.commit()
            except psycopg.OperationalError:
                with ledger.lock:
                    ledger.publish_in_doubt.update(ids)
                return
            with ledger.lock:
                ledger.published.update(ids)


def _run_workers(workers: list[Callable[[], None]], ledger: Ledger) -> list[threading.Thread]:
    def guarded(work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:
            with ledger.lock:
                ledger.unexpected.append(exc)

    threads = [threading.Thread(target=guarded, args=(w,), daemon=True) for w in workers]
    for t in threads:
        t.start()
    return threads


def test_immediate_shutdown_keeps_every_committed_send_ack_lease_and_publish(
    private_pg: Postgres, fresh_dsn: str, rmq: Rabbit
) -> None:
    """3 senders, 2 consumers (lease, ack the even ids, keep the odd ones leased) and 2
    publishers run until ``pg_ctl stop -m immediate``. After the restart: each committed
    send is there exactly once (an in-doubt one at most once), every committed ack is
    gone, every committed lease comes back after its timeout, and the relay delivers
    every committed publish (an in-doubt one may arrive too, under its message_id)."""
    with psycopg.connect(fresh_dsn, autocommit=True) as db:
        db.execute("SELECT pg_mq_create_queue('crash', 'text')")
    queue = rmq.queue()
    ledger = Ledger()
    workers: list[Callable[[], None]] = [lambda n=n: _sender(fresh_dsn, n, ledger) for n in range(3)]
    workers += [lambda: _consumer(fresh_dsn, ledger) for _ in range(2)]
    workers += [lambda n=n: _publisher(fresh_dsn, n, queue, ledger) for n in range(2)]
    threads = _run_workers(workers, ledger)

    deadline = time.monotonic() + 60
    while not (len(ledger.sent) >= 300 and len(ledger.acked) >= 30 and len(ledger.published) >= 60):
        assert time.monotonic() < deadline, "the workload made no progress"
        assert not ledger.unexpected, ledger.unexpected
        time.sleep(0.1)
    subprocess.run(
        _as_owner([str(PG_BIN / "pg_ctl"), "-D", str(private_pg.data), "-m", "immediate", "-w", "stop"]),
        check=True,
        capture_output=True,
    )
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a client did not notice the server stopped"
    assert not ledger.unexpected, ledger.unexpected
    private_pg.start()  # crash recovery

    with _reconnect(fresh_dsn) as db:
        copies = dict(db.execute("SELECT payload, count(*) FROM pg_mq_queue_crash GROUP BY payload").fetchall())
        by_id = dict(db.execute("SELECT msg_id, payload FROM pg_mq_queue_crash").fetchall())
        for payload, msg_id in ledger.sent.items():
            if msg_id in ledger.acked:
                assert payload not in copies, f"acknowledged message {msg_id} came back"
            elif msg_id in ledger.ack_in_doubt:
                assert copies.get(payload, 0) <= 1
            else:
                assert copies.get(payload) == 1, f"committed message {payload} ({msg_id}): {copies.get(payload)}"
        assert all(copies.get(p, 0) <= 1 for p in ledger.sent_in_doubt)
        assert set(copies) <= set(ledger.sent) | ledger.sent_in_doubt
        leased = ledger.leased - ledger.acked - ledger.ack_in_doubt
        assert leased, "no lease was open at the crash"
        assert leased <= set(by_id), "a leased message was lost"

        # leases survive the crash and expire as usual: the messages come back
        (left,) = db.execute(
            "SELECT greatest(0, extract(epoch FROM max(visible_at) - now())) FROM pg_mq_queue_crash"
            " WHERE msg_id = ANY(%s)",
            (sorted(leased),),
        ).fetchone()
        assert left < 10
        time.sleep(float(left) + 0.2)
        again = dict(db.execute("SELECT msg_id, read_count FROM pg_mq_read('crash', 100000, '1 hour')").fetchall())
        assert leased <= set(again)
        assert all(again[i] >= 2 for i in leased)

        db.execute("CALL amqp.relay(run_for => '60 seconds', exit_when_empty => true)")
        assert db.execute("SELECT count(*) FROM amqp.outbox").fetchone() == (0,)
    arrived = _arrived(rmq, queue, len(ledger.published))
    assert ledger.published <= set(arrived), "a committed publish never arrived"
    assert set(arrived) <= ledger.published | ledger.publish_in_doubt, "a message arrived that was never committed"
    print(
        f"\nimmediate stop: {len(ledger.sent)} sends, {len(ledger.acked)} acks, {len(ledger.leased)} leases,"
        f" {len(ledger.published)} publishes committed; in doubt: {len(ledger.sent_in_doubt)} sends,"
        f" {len(ledger.ack_in_doubt)} acks, {len(ledger.publish_in_doubt)} publishes;"
        f" AMQP duplicates {sum(arrived.values()) - len(arrived)},"
        f" in-doubt publishes that arrived {len(set(arrived) & ledger.publish_in_doubt)}"
    )


# ---- 2. RabbitMQ killed (-9) and restarted during a publish stream ----


def test_broker_killed_repeatedly_during_publish_stream_loses_no_committed_message(
    fresh_dsn: str, rmq: Rabbit, record_property: Callable[[str, Any], None]
) -> None:
    """2 publishers commit 5 persistent messages per transaction non-stop while a flush
    loop runs; the broker is killed with -9 and restarted twice. Every commit succeeds,
    every committed message_id arrives; duplicates are extra copies under the same id."""
    queue = rmq.queue(durable=True)
    committed: set[str] = set()
    errors: list[BaseException] = []
    lock = threading.Lock()
    stop = threading.Event()
    kept_max = [0]

    def publisher(n: int) -> None:
        try:
            with psycopg.connect(fresh_dsn) as conn:
                for i in range(10**9):
                    if stop.is_set():
                        return
                    ids = [f"k{n}-{i}-{k}" for k in range(5)]
                    for m in ids:
                        conn.execute(
                            "SELECT amqp.publish(1, '', %s, %s, delivery_mode => 2, message_id => %s)", (queue, m, m)
                        )
                    conn.commit()
                    with lock:
                        committed.update(ids)
                    time.sleep(0.005)  # a steady stream, not a flood to drain afterwards
        except BaseException as exc:
            errors.append(exc)

    def flusher() -> None:
        try:
            with psycopg.connect(fresh_dsn, autocommit=True) as conn:
                while not stop.is_set():
                    conn.execute("SELECT amqp.flush(quiet => true)")
                    (kept,) = conn.execute("SELECT count(*) FROM amqp.outbox").fetchone()
                    kept_max[0] = max(kept_max[0], kept)
                    time.sleep(0.3)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publisher, args=(n,), daemon=True) for n in range(2)]
    threads.append(threading.Thread(target=flusher, daemon=True))
    for t in threads:
        t.start()
    try:
        for _ in range(2):
            time.sleep(3)
            rmq.node.kill()  # type: ignore[attr-defined]
            time.sleep(1.5)
            _restart(rmq)
        time.sleep(2)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert kept_max[0] > 0, "the kills never hit a commit"

    with psycopg.connect(fresh_dsn, autocommit=True) as db:
        db.execute("CALL amqp.relay(run_for => '60 seconds', exit_when_empty => true)")
        assert db.execute("SELECT count(*) FROM amqp.outbox").fetchone() == (0,)
    arrived = _arrived(rmq, queue, len(committed), timeout=60, settle=2)
    assert set(arrived) == committed  # nothing lost, nothing uncommitted
    duplicates = sum(arrived.values()) - len(arrived)
    record_property("amqp_duplicates", duplicates)
    print(f"\nbroker kill -9 x2: {len(committed)} messages committed, all arrived; {duplicates} duplicates")


# ---- 3. A backend killed while its commit waits for the broker's confirms ----


# The kill and signal tests act on a COMMIT that is waiting for confirms: with the
# fixture's 2 s confirm_timeout, a loaded machine could see the wait end before the
# watcher ever saw the COMMIT running. The broker resumes only after the test has acted.
LONG_CONFIRM_WAIT = "UPDATE amqp.broker SET confirm_timeout = 60"


def _commit_while_broker_paused(
    dsn: str, rmq: Rabbit, queue: str, message_id: str, during: Callable[[int], None], pause: float
) -> tuple[BaseException | None, bool]:
    """Open a transaction (an application row + one publish), pause the broker
    (SIGSTOP), COMMIT in a thread, call ``during(backend_pid)`` a second later, resume
    the broker after ``pause`` seconds. Returns (the commit's error, whether the commit
    was still running when the broker resumed)."""
    victim = psycopg.connect(dsn)
    pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]
    victim.execute("SELECT amqp.publish(1, '', %s, 'warm-up', message_id => 'warm-up')", (queue,))  # cached link
    victim.commit()
    victim.execute("INSERT INTO app VALUES (1)")
    victim.execute("SELECT amqp.publish(1, '', %s, %s, message_id => %s)", (queue, message_id, message_id))
    result: list[BaseException | None] = []

    def commit() -> None:
        try:
            victim.commit()
            result.append(None)
        except psycopg.Error as exc:
            result.append(exc)

    broker = _rabbit_pid(rmq)
    os.kill(broker, signal.SIGSTOP)
    try:
        thread = threading.Thread(target=commit, daemon=True)
        thread.start()
        _wait_committing(dsn, pid)  # a signal sent before the COMMIT arrives would find nothing to act on
        time.sleep(0.5)
        during(pid)
        thread.join(pause)
        still_running = thread.is_alive()
    finally:
        os.kill(broker, signal.SIGCONT)
    thread.join(60)
    assert not thread.is_alive(), "COMMIT never returned"
    with contextlib.suppress(psycopg.Error):
        victim.close()
    return result[0], still_running


def _wait_committing(dsn: str, pid: int, timeout: float = 20.0) -> None:
    """Until backend ``pid`` is running its COMMIT (under load the thread may start late)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            row = watcher.execute("SELECT state, query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            if row is not None and row[0] == "active" and row[1].strip().upper().startswith("COMMIT"):
                return
            time.sleep(0.05)
    raise AssertionError(f"backend {pid} never started its COMMIT")


def _nothing_committed(dsn: str, timeout: float = 60.0) -> None:
    """After a kill -9 the postmaster resets every backend: a connection made while it
    does so is cut, so ask again until the server has come back."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with _reconnect(dsn) as db:
                counts = (
                    db.execute("SELECT count(*) FROM app").fetchone(),
                    db.execute("SELECT count(*) FROM amqp.outbox").fetchone(),
                )
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert counts == ((0,), (0,))


def test_backend_killed_9_while_commit_waits_for_confirms_commits_nothing(
    fresh_dsn: str, rmq: Rabbit, record_property: Callable[[str, Any], None]
) -> None:
    """kill -9 of the backend (PostgreSQL then resets every backend): the transaction did
    not commit, neither its row nor its outbox row exists. Its message was already written
    to the broker, so it may still arrive: the README's documented exception for a
    transaction that fails after the commit-time trigger (strict mode rules it out)."""
    with psycopg.connect(fresh_dsn, autocommit=True) as db:
        db.execute("CREATE TABLE app (id int)")
        db.execute(LONG_CONFIRM_WAIT)
    queue = rmq.queue()
    error, _ = _commit_while_broker_paused(
        fresh_dsn, rmq, queue, "killed-9", lambda pid: os.kill(pid, signal.SIGKILL), pause=5
    )
    assert isinstance(error, psycopg.OperationalError)
    _nothing_committed(fresh_dsn)
    arrived = _arrived(rmq, queue, 2, timeout=5)
    assert arrived["warm-up"] == 1
    assert set(arrived) <= {"warm-up", "killed-9"}
    record_property("uncommitted_copies_arrived", arrived["killed-9"])
    print(f"\nkill -9 during the confirm wait: {arrived['killed-9']} copies of the uncommitted message arrived")
    # the server is usable again and a new transaction publishes normally
    with _reconnect(fresh_dsn) as db:
        db.execute("SELECT amqp.publish(1, '', %s, 'after', message_id => 'after')", (queue,))
    assert _arrived(rmq, queue, 1) == Counter({"after": 1})


@pytest.mark.parametrize(
    ("how", "expected"),
    [("pg_terminate_backend", psycopg.errors.AdminShutdown), ("pg_cancel_backend", psycopg.errors.QueryCanceled)],
)
def test_backend_terminated_or_cancelled_while_commit_waits_for_confirms_commits_nothing(
    fresh_dsn: str, rmq: Rabbit, record_property: Callable[[str, Any], None], how: str, expected: type
) -> None:
    """pg_terminate_backend (57P01) or pg_cancel_backend (57014) during the confirm wait:
    the wait is not interruptible (README, "Limits"), so the signal acts when it is over,
    and nothing commits; the message may have reached the broker (the documented
    exception), under its message_id."""
    with psycopg.connect(fresh_dsn, autocommit=True) as db:
        db.execute("CREATE TABLE app (id int)")
        db.execute(LONG_CONFIRM_WAIT)
        queue = rmq.queue()

        def signal_backend(pid: int) -> None:
            assert db.execute(f"SELECT {how}(%s)", (pid,)).fetchone() == (True,)

        error, _ = _commit_while_broker_paused(fresh_dsn, rmq, queue, "signalled", signal_backend, pause=3)
    assert isinstance(error, expected), repr(error)
    _nothing_committed(fresh_dsn)
    arrived = _arrived(rmq, queue, 2, timeout=5)
    assert arrived["warm-up"] == 1
    assert set(arrived) <= {"warm-up", "signalled"}
    record_property("uncommitted_copies_arrived", arrived["signalled"])
    print(f"\n{how} during the confirm wait: {arrived['signalled']} copies of the uncommitted message arrived")


def test_commit_returns_within_confirm_timeout_when_the_broker_stops_answering(fresh_dsn: str, rmq: Rabbit) -> None:
    """README: a confirm wait is bounded by confirm_timeout (2 s here), after which the
    commit succeeds with a WARNING and keeps the message in amqp.outbox. We give it 10 s."""
    with psycopg.connect(fresh_dsn, autocommit=True) as db:
        db.execute("CREATE TABLE app (id int)")
    queue = rmq.queue()
    error, still_running = _commit_while_broker_paused(fresh_dsn, rmq, queue, "paused", lambda pid: None, pause=10)
    assert not still_running, "COMMIT was still waiting 10 s after the broker stopped answering"
    assert error is None
    with psycopg.connect(fresh_dsn, autocommit=True) as db:
        assert db.execute("SELECT count(*) FROM app").fetchone() == (1,)


# ---- 4. statement_timeout inside a send, a publish, a commit ----


def _times_out(conn: psycopg.Connection, sql: str, params: Any = None) -> None:
    with pytest.raises(psycopg.errors.QueryCanceled) as info:
        conn.execute(sql, params)
    assert info.value.sqlstate == "57014"
    assert "statement timeout" in str(info.value)
    conn.rollback()


def test_statement_timeout_inside_send_batch_leaves_no_message(fresh_dsn: str) -> None:
    with psycopg.connect(fresh_dsn) as conn:
        conn.execute("SELECT pg_mq_create_queue('st', 'text')")
        conn.commit()
        conn.execute("CREATE TEMP TABLE big AS SELECT array_agg(g::text) AS a FROM generate_series(1, 2000000) g")
        conn.execute("SET statement_timeout = '300ms'")
        _times_out(conn, "SELECT pg_mq_send_batch('st', a) FROM big")
        conn.execute("SET statement_timeout = 0")
        assert conn.execute("SELECT count(*) FROM pg_mq_queue_st").fetchone() == (0,)


def test_statement_timeout_inside_send_message_leaves_no_message(fresh_dsn: str) -> None:
    """Two ways: one send waiting for a lock, and a statement of many sends."""
    with psycopg.connect(fresh_dsn) as conn, psycopg.connect(fresh_dsn) as locker:
        conn.execute("SELECT pg_mq_create_queue('st', 'text')")
        conn.commit()
        locker.execute("LOCK TABLE pg_mq_queue_st IN ACCESS EXCLUSIVE MODE")
        conn.execute("SET statement_timeout = '300ms'")
        _times_out(conn, "SELECT * FROM pg_mq_send_message('st', 'blocked'::text)")
        locker.rollback()
        conn.execute("SET statement_timeout = '200ms'")
        _times_out(conn, "SELECT pg_mq_send_message('st', g::text) FROM generate_series(1, 1000000) g")
        conn.execute("SET statement_timeout = 0")
        assert conn.execute("SELECT count(*) FROM pg_mq_queue_st").fetchone() == (0,)


def test_statement_timeout_inside_publish_leaves_no_outbox_row_and_sends_nothing(fresh_dsn: str, rmq: Rabbit) -> None:
    queue = rmq.queue()
    with psycopg.connect(fresh_dsn) as conn:
        conn.execute("SET statement_timeout = '200ms'")
        _times_out(conn, "SELECT amqp.publish(1, '', %s, g::text) FROM generate_series(1, 1000000) g", (queue,))
        conn.execute("SET statement_timeout = 0")
        assert conn.execute("SELECT count(*) FROM amqp.outbox").fetchone() == (0,)
        conn.commit()
    assert _arrived(rmq, queue, 0, timeout=0, settle=1) == Counter()


def test_statement_timeout_does_not_cut_a_commit_short(fresh_dsn: str, rmq: Rabbit) -> None:
    """PostgreSQL disarms statement_timeout before COMMIT runs the deferred triggers, so
    a commit-time publish is never half done by it: a commit whose deferred work outlasts
    the timeout commits whole, and its message is delivered once."""
    queue = rmq.queue()
    with psycopg.connect(fresh_dsn) as conn:
        conn.execute("CREATE TABLE app (id int)")
        conn.execute(
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN PERFORM pg_sleep(1); RETURN NULL; END$$"
        )
        conn.execute(
            "CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON app DEFERRABLE INITIALLY DEFERRED"
            " FOR EACH ROW EXECUTE FUNCTION slow()"
        )
        conn.commit()
        conn.execute("SET statement_timeout = '300ms'")
        conn.execute("INSERT INTO app VALUES (1)")
        conn.execute("SELECT amqp.publish(1, '', %s, 'slow-commit', message_id => 'slow-commit')", (queue,))
        conn.commit()
        assert conn.execute("SELECT count(*) FROM app").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM amqp.outbox").fetchone() == (0,)
    assert _arrived(rmq, queue, 1) == Counter({"slow-commit": 1})
