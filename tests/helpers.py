"""Small helpers shared by the integration tests."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest


def fails(conn: psycopg.Connection, sql: str, params: Any = None, sqlstate: str = "", match: str = "") -> str:
    """Run ``sql``; assert it fails with ``sqlstate`` and a message matching ``match``."""
    with pytest.raises(psycopg.Error) as info:
        conn.execute(sql, params)
    err = info.value
    assert err.sqlstate == sqlstate, f"expected {sqlstate}, got {err.sqlstate}: {err}"
    message = err.diag.message_primary or ""
    assert re.search(match, message), f"{match!r} not in {message!r}"
    if not conn.autocommit:
        conn.rollback()
    return message


def as_role(dsn: str, role: str) -> str:
    return re.sub(r"user=\S+", f"user={role}", dsn)


def wait_notifies(conn: psycopg.Connection, count: int, timeout: float = 5.0) -> list[psycopg.Notify]:
    """Collect notifications until ``count`` arrived or ``timeout`` passed."""
    got: list[psycopg.Notify] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for n in conn.notifies(timeout=left, stop_after=count - len(got)):
            got.append(n)
    return got


def drain_notifies(conn: psycopg.Connection, quiet: float = 0.3) -> list[psycopg.Notify]:
    """Everything that arrives within ``quiet`` seconds."""
    return list(conn.notifies(timeout=quiet))


def drain_concurrently(
    dsn: str, consumers: int, take: Callable[[psycopg.Connection], list[int]], timeout: float = 300
) -> list[list[int]]:
    """Run ``consumers`` threads, each on its own connection, calling ``take`` until it
    returns nothing; returns the ids each consumer took. Any consumer's error fails."""
    taken: list[list[int]] = [[] for _ in range(consumers)]
    errors: list[BaseException] = []
    start = threading.Barrier(consumers)

    def consume(slot: int) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                start.wait()
                while ids := take(conn):
                    taken[slot].extend(ids)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(consumers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert errors == []
    assert not any(t.is_alive() for t in threads), "a consumer did not finish in time"
    return taken
