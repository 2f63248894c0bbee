"""Our schema ``pgq`` (pg_message_queue_pgq) has real PgQ 3's public SQL API.

The reference is tests/fixtures/pgq3_api.json, extracted from Debian's
postgresql-15-pgq3 by tools/pgq_api.py. Each of PgQ's functions is one test: it
must exist in ours with the same argument names, modes and types, the same
defaults, the same return type (set-returning or not) and the same OUT column
names, so a call written for PgQ, positional or named, binds the same way and
reads the same columns. The roles pgq_reader/pgq_writer/pgq_admin must exist
with PgQ's memberships, and may call at least what PgQ lets them call.

Skips only when pg_message_queue_pgq is not installed (the extension is built
on another branch); real PgQ itself is not needed here, only the fixture.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgq_api import extract

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "pgq3_api.json"
REFERENCE = json.loads(FIXTURE.read_text())
FUNCTIONS = REFERENCE["functions"]
EXTENSION = "pg_message_queue_pgq"


@pytest.fixture(scope="module")
def ours(pg_server) -> Iterator[dict[str, Any]]:
    with psycopg.connect(pg_server.dsn_for("postgres"), autocommit=True) as conn:
        available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", (EXTENSION,)).fetchone()
    if available is None:
        pytest.skip(f"the companion extension {EXTENSION} is not installed (make install of the pgq branch)")
    pg_server.admin("DROP DATABASE IF EXISTS pgq_api_ours")
    pg_server.admin("CREATE DATABASE pgq_api_ours")
    try:
        with psycopg.connect(pg_server.dsn_for("pgq_api_ours"), autocommit=True) as conn:
            conn.execute(f"CREATE EXTENSION {EXTENSION} CASCADE")
            yield extract(conn)
    finally:
        pg_server.admin("DROP DATABASE pgq_api_ours WITH (FORCE)")


def _key(f: dict[str, Any]) -> str:
    return f"{f['name']}({f['identity_arguments']})"


def _signature(f: dict[str, Any]) -> dict[str, Any]:
    """What a caller of the function can see of it."""
    return {
        "kind": f["kind"],
        "args": f["args"],  # names, modes, types, defaults, in order
        "result": f["result"],
        "return_type": f["return_type"],
        "returns_set": f["returns_set"],
        "out_columns": f["out_columns"],
    }


def test_fixture_is_real_pgq() -> None:
    assert REFERENCE["pgq_version"] == "3.5"
    assert len(FUNCTIONS) == 51
    assert {"next_batch", "get_batch_events", "finish_batch", "ticker", "insert_event"} <= {
        f["name"] for f in FUNCTIONS
    }


@pytest.mark.parametrize("reference", FUNCTIONS, ids=[_key(f) for f in FUNCTIONS])
def test_function_matches_pgq(ours: dict[str, Any], reference: dict[str, Any]) -> None:
    mine = {_key(f): f for f in ours["functions"]}
    key = _key(reference)
    assert key in mine, f"pgq.{key} is missing"
    assert _signature(mine[key]) == _signature(reference)


def test_no_overload_that_pgq_lacks_makes_calls_ambiguous(ours: dict[str, Any]) -> None:
    """Extra functions are allowed, but an extra overload of one of PgQ's names could
    make a call that resolves in PgQ ambiguous or bind differently in ours."""
    names = {f["name"] for f in FUNCTIONS}
    theirs = {_key(f) for f in FUNCTIONS}
    extra = sorted(_key(f) for f in ours["functions"] if f["name"] in names and _key(f) not in theirs)
    assert extra == []


def test_roles_match_pgq(ours: dict[str, Any]) -> None:
    assert [(r["name"], r["login"], r["member_of"]) for r in ours["roles"]] == [
        (r["name"], r["login"], r["member_of"]) for r in REFERENCE["roles"]
    ]


def test_roles_may_call_what_pgq_lets_them(ours: dict[str, Any]) -> None:
    """A role granted pgq_reader (pgq_writer, pgq_admin) in PgQ can call these functions:
    ours must let it call them too (it may grant less to PUBLIC)."""
    mine = {_key(f): set(f["execute_granted_to"]) for f in ours["functions"]}
    missing = []
    for f in FUNCTIONS:
        for role in f["execute_granted_to"]:
            if role == "PUBLIC" or _key(f) not in mine:
                continue
            if role not in mine[_key(f)] and "PUBLIC" not in mine[_key(f)]:
                missing.append(f"{role}: pgq.{_key(f)}")
    assert missing == []
