"""Small helpers shared by the integration tests."""

from __future__ import annotations

import re
import time
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
