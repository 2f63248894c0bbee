"""A backend killed with SIGKILL makes PostgreSQL crash-restart every backend.

Committed messages and committed leases survive; claims of transactions that
were running are gone, so those messages are ready again.
"""

import contextlib
import os
import signal
import time

import psycopg


def reconnect(dsn, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return psycopg.connect(dsn, autocommit=True)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_crash_restart_keeps_committed_messages_and_releases_open_claims(dsn):
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("SELECT pg_mq_create_queue('c', 'text')")
        db.execute("SELECT pg_mq_send_batch('c', ARRAY['leased', 'claimed', 'untouched'])")
        leased = db.execute("SELECT msg_id FROM pg_mq_read('c', 1, '1 hour')").fetchone()[0]
    victim = psycopg.connect(dsn)
    pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]
    claimed = [r[0] for r in victim.execute("SELECT msg_id FROM pg_mq_get_msg_text('c', 1)")]
    assert len(claimed) == 1
    os.kill(pid, signal.SIGKILL)  # the postmaster now resets every backend
    with contextlib.suppress(psycopg.Error):
        victim.close()
    time.sleep(1)
    with reconnect(dsn) as db:
        rows = db.execute(
            "SELECT payload, delivered_at IS NULL, visible_at > now(), read_count FROM pg_mq_queue_c ORDER BY msg_id"
        ).fetchall()
        assert rows == [("leased", True, True, 1), ("claimed", True, False, 0), ("untouched", True, False, 0)]
        ready = [r[0] for r in db.execute("SELECT payload FROM pg_mq_get_msg_text('c', 10)")]
        assert ready == ["claimed", "untouched"]
        assert db.execute("SELECT count(*) FROM pg_mq_queue_c WHERE msg_id = %s", (leased,)).fetchone()[0] == 1
