"""Hostile input to schema amqp: what a publisher (or a bad row) can do to the others.

Each test does what an attacker would: headers the encoder cannot carry, SET
CONSTRAINTS to fire the commit hook early, settings that the extension reads,
the relay's lock, the status view. Outcomes are read back from RabbitMQ.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

import psycopg
import pytest
from helpers import as_role, fails

if TYPE_CHECKING:
    from conftest import Rabbit


def depth(db: psycopg.Connection) -> int:
    return db.execute("SELECT count(*) FROM amqp.outbox").fetchone()[0]


def nested(levels: int) -> str:
    return '{"k": ' + '{"k": ' * (levels - 1) + "1" + "}" * levels


def clean(text: str | None) -> None:
    """What a user reads carries no Python internals."""
    for bad in ("spiexceptions", "None", "Error(", "Exception", "Traceback"):
        assert bad not in (text or ""), text


# ---- headers the encoder cannot carry -------------------------------------------------

BAD_HEADERS = {
    "integer of 2**64": ('{"big": 18446744073709551616}', r"header 'big': integer 18446744073709551616 does not fit"),
    "integer below -2**63": ('{"neg": -9223372036854775809}', r"header 'neg': integer .* does not fit"),
    "key of 300 bytes": (json.dumps({"k" * 300: 1}), r"header key 'k+'\.\.\. is longer than 255 bytes"),
    "1200 levels": (nested(1200), r"nest deeper than 100 levels"),
    "101 levels": (nested(101), r"nests deeper than 100 levels"),
    "101 levels of arrays": ('{"list": ' + "[" * 101 + "]" * 101 + "}", r"header 'list' nests deeper than 100"),
    "15 digits": ('{"pi": 3.14159265358979}', r"header 'pi': 3.14159265358979 has too many digits"),
    "70 kB": (json.dumps({"blob": "x" * 70000}), r"headers take \d+ bytes encoded, more than"),
}


@pytest.mark.parametrize(("headers", "match"), BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_headers_amqp_cannot_carry_are_refused_by_publish(
    publisher: psycopg.Connection, broker: int, headers: str, match: str
) -> None:
    message = fails(
        publisher,
        "SELECT amqp.publish(1, '', 'q', 'm', headers => %s)",
        (headers,),
        sqlstate="22023",
        match="^pg_message_queue: amqp: .*" + match,
    )
    clean(message)


def test_numbers_with_a_fraction_arrive_as_amqp_decimals(db: psycopg.Connection, rabbit: Rabbit, broker: int) -> None:
    queue = rabbit.queue()
    db.execute(
        "SELECT amqp.publish(1, '', %s, 'm', headers => %s)",
        (queue, '{"ratio": 1.5, "two": 2.0, "list": [0.25, -7.125], "n": 2}'),
    )
    [(props, body)] = rabbit.drain(queue, 1)
    assert body == "m"
    assert props.headers["ratio"] == Decimal("1.5") and props.headers["two"] == 2
    assert props.headers["list"] == [Decimal("0.25"), Decimal("-7.125")] and props.headers["n"] == 2
    assert depth(db) == 0


BAD_ROWS = [
    ('{"ratio": 1.5e-300}', "has too many digits"),
    ('{"big": 18446744073709551616}', "does not fit"),
    (json.dumps({"k" * 300: 1}), "longer than 255 bytes"),
    (nested(1500), "nest"),
]


def insert_raw(conn: psycopg.Connection, queue: str, body: str, headers: str | None = None) -> None:
    """A row written straight into the outbox (as by an older version): publish()'s checks skipped."""
    conn.execute(
        "INSERT INTO amqp.outbox (broker_id, exchange, routing_key, message, headers, message_id)"
        " VALUES (1, '', %s, %s, %s, gen_random_uuid()::text)",
        (queue, body, headers),
    )


def test_unsendable_rows_at_commit_fail_alone(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int
) -> None:
    queue = rabbit.queue()
    conn = connect(autocommit=False)
    seen: list[str] = []
    conn.add_notice_handler(lambda d: seen.append(d.message_primary or ""))
    conn.execute("SELECT amqp.publish(1, '', %s, 'before')", (queue,))
    for i, (headers, _) in enumerate(BAD_ROWS):
        insert_raw(conn, queue, f"bad{i}", headers)
    conn.execute("SELECT amqp.publish(1, '', %s, 'after')", (queue,))
    conn.commit()
    assert [b for _, b in rabbit.drain(queue, 2)] == ["before", "after"]
    rows = connect().execute("SELECT message, failed, last_error FROM amqp.outbox ORDER BY id").fetchall()
    assert [(m, f) for m, f, _ in rows] == [(f"bad{i}", True) for i in range(len(BAD_ROWS))]
    for (_, _, error), (_, match) in zip(rows, BAD_ROWS, strict=True):
        assert error.startswith("cannot be encoded: ") and match in error, error
        clean(error)
    assert any("not confirmed at commit" in w for w in seen), seen


def test_unsendable_rows_kept_in_the_outbox_do_not_block_the_relay(
    db: psycopg.Connection, rabbit: Rabbit, broker: int
) -> None:
    queue = rabbit.queue()
    db.execute("UPDATE amqp.broker SET strict = true")  # everything waits for the relay
    db.execute("SELECT amqp.publish(1, '', %s, 'first')", (queue,))
    for i, (headers, _) in enumerate(BAD_ROWS):
        insert_raw(db, queue, f"bad{i}", headers)
    db.execute("UPDATE amqp.outbox SET strict = true")
    db.execute("SELECT amqp.publish(1, '', %s, 'last')", (queue,))
    assert depth(db) == 2 + len(BAD_ROWS)
    db.execute("CALL amqp.relay(run_for => '30 seconds', exit_when_empty => true)")
    assert [b for _, b in rabbit.drain(queue, 2)] == ["first", "last"]
    assert db.execute("SELECT count(*) FILTER (WHERE failed), count(*) FROM amqp.outbox").fetchone() == (
        len(BAD_ROWS),
        len(BAD_ROWS),
    )
    # and flush goes past them too
    db.execute("SELECT amqp.publish(1, '', %s, 'later')", (queue,))
    assert db.execute("SELECT amqp.flush()").fetchone() == (1,)
    assert [b for _, b in rabbit.drain(queue, 1)] == ["later"]


# ---- SET CONSTRAINTS: nothing leaves before the commit --------------------------------

EARLY = {
    "all immediate after publish": ["PUBLISH a", "SET CONSTRAINTS ALL IMMEDIATE"],
    "named immediate after publish": ["PUBLISH a", "SET CONSTRAINTS amqp.outbox_on_commit IMMEDIATE"],
    "publish after all immediate": ["SET CONSTRAINTS ALL IMMEDIATE", "PUBLISH a", "PUBLISH b"],
    "immediate, deferred, immediate": [
        "PUBLISH a",
        "SET CONSTRAINTS ALL IMMEDIATE",
        "SET CONSTRAINTS ALL DEFERRED",
        "PUBLISH b",
        "SET CONSTRAINTS amqp.outbox_on_commit IMMEDIATE",
    ],
    "inside a savepoint": ["SAVEPOINT s", "PUBLISH a", "SET CONSTRAINTS ALL IMMEDIATE", "RELEASE SAVEPOINT s"],
    "savepoint rolled back after immediate": [
        "PUBLISH a",
        "SAVEPOINT s",
        "SET CONSTRAINTS ALL IMMEDIATE",
        "PUBLISH b",
        "ROLLBACK TO SAVEPOINT s",
        "SET CONSTRAINTS ALL IMMEDIATE",
    ],
}


def run_steps(conn: psycopg.Connection, queue: str, steps: list[str]) -> list[str]:
    """Execute ``steps`` (PUBLISH x = amqp.publish of body x); returns the bodies that must arrive on commit."""
    kept: list[str] = []
    marks: dict[str, int] = {}
    for step in steps:
        if step.startswith("PUBLISH "):
            body = step.split()[1]
            conn.execute("SELECT amqp.publish(1, '', %s, %s)", (queue, body))
            kept.append(body)
        else:
            conn.execute(step)
            if step.startswith("SAVEPOINT "):
                marks[step.split()[1]] = len(kept)
            elif step.startswith("ROLLBACK TO SAVEPOINT "):
                del kept[marks[step.split()[-1]] :]
    return kept


@pytest.mark.parametrize("steps", EARLY.values(), ids=EARLY.keys())
def test_set_constraints_then_rollback_sends_nothing(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int, steps: list[str]
) -> None:
    queue = rabbit.queue()
    conn = connect(autocommit=False)
    run_steps(conn, queue, steps)
    conn.rollback()
    conn.execute("SELECT amqp.publish(1, '', %s, 'marker')", (queue,))
    conn.commit()
    assert [b for _, b in rabbit.drain(queue, 1)] == ["marker"]
    assert depth(conn) == 0


@pytest.mark.parametrize("steps", EARLY.values(), ids=EARLY.keys())
def test_set_constraints_then_commit_sends_once_at_commit(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int, steps: list[str]
) -> None:
    queue = rabbit.queue()
    conn = connect(autocommit=False)
    expected = run_steps(conn, queue, steps)
    # The marker is sent by another session after all of the steps: were anything
    # sent before our commit, it would arrive ahead of the marker.
    connect().execute("SELECT amqp.publish(1, '', %s, 'marker')", (queue,))
    assert [b for _, b in rabbit.drain(queue, 1)] == ["marker"]
    conn.commit()
    assert [b for _, b in rabbit.drain(queue, len(expected))] == expected
    assert depth(conn) == 0  # sent at commit, not left for the relay
    # the rows that re-deferred the commit hook are gone with it
    assert conn.execute("SELECT count(*) FROM amqp._commit_probe").fetchone() == (0,)


def test_do_block_raising_after_set_constraints_sends_nothing(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int
) -> None:
    queue = rabbit.queue()
    conn = connect()
    fails(
        conn,
        "DO $$ BEGIN PERFORM amqp.publish(1, '', %s, 'x'); SET CONSTRAINTS ALL IMMEDIATE;"
        " RAISE EXCEPTION 'boom'; END $$".replace("%s", f"'{queue}'"),
        sqlstate="P0001",
        match="boom",
    )
    conn.execute("SELECT amqp.publish(1, '', %s, 'marker')", (queue,))
    assert [b for _, b in rabbit.drain(queue, 1)] == ["marker"]


@pytest.mark.parametrize(
    "prepare", ["PREPARE TRANSACTION 'p1'", "prepare /* a /* nested */ comment */ transaction 'p1'"]
)
def test_prepare_transaction_sends_nothing_until_commit_prepared(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int, prepare: str
) -> None:
    """PREPARE TRANSACTION fires deferred triggers, but the transaction can still roll
    back (here at once when prepared transactions are disabled, else ROLLBACK PREPARED)."""
    queue = rabbit.queue()
    conn = connect()
    conn.execute("BEGIN")
    conn.execute("SELECT amqp.publish(1, '', %s, 'x')", (queue,))
    try:
        conn.execute(prepare)
        conn.execute("ROLLBACK PREPARED 'p1'")
    except psycopg.errors.ObjectNotInPrerequisiteState:
        pass  # max_prepared_transactions = 0: PREPARE fails after the deferred triggers ran
    conn.execute("SELECT amqp.publish(1, '', %s, 'marker')", (queue,))
    assert [b for _, b in rabbit.drain(queue, 1)] == ["marker"]
    assert depth(conn) == 0


# ---- settings a publisher can set -----------------------------------------------------


def test_publisher_cannot_weaken_the_brokers_flags_or_skip_its_check(
    db: psycopg.Connection, publisher: psycopg.Connection, rabbit: Rabbit, broker: int
) -> None:
    queue = rabbit.queue()
    db.execute("UPDATE amqp.broker SET strict = true, mandatory = true")
    publisher.execute("SET pg_message_queue.amqp_broker_1 = '--'")
    publisher.execute("SET pg_message_queue.amqp_strict = off")
    publisher.execute("SELECT amqp.publish(1, '', %s, 'strict')", (queue,))
    assert db.execute("SELECT strict, mandatory FROM amqp.outbox").fetchall() == [(True, True)]
    publisher.execute("SET pg_message_queue.amqp_broker_99 = '--'")
    fails(publisher, "SELECT amqp.publish(99, '', 'q', 'm')", sqlstate="42704", match="no AMQP broker with broker_id")
    assert depth(db) == 1
    db.execute("SELECT amqp.flush()")
    assert [b for _, b in rabbit.drain(queue, 1)] == ["strict"]


def test_forged_flags_cache_marker_fails_the_forgers_publish(
    db: psycopg.Connection, publisher: psycopg.Connection, broker: int
) -> None:
    """The cache lives in a sequence publishers cannot touch; claiming it is filled only breaks one's own publish."""
    db.execute("UPDATE amqp.broker SET strict = true")
    publisher.execute("SET pg_message_queue.amqp_flags_cached = on")
    fails(publisher, "SELECT amqp.publish(1, '', 'q', 'm')", sqlstate="55000", match="currval")
    fails(publisher, "SELECT setval('amqp._broker_flags', 0)", sqlstate="42501", match="permission denied")
    publisher.execute("RESET pg_message_queue.amqp_flags_cached")
    publisher.execute("SELECT amqp.publish(1, '', 'q', 'm')")
    publisher.execute("SET pg_message_queue.amqp_flags_cached = on")  # now filled: still the broker's flags
    publisher.execute("SELECT amqp.publish(1, '', 'q', 'm', mandatory => false)")
    assert db.execute("SELECT strict FROM amqp.outbox").fetchall() == [(True,), (True,)]


def test_flags_changed_by_an_administrator_apply_to_the_next_transaction(
    db: psycopg.Connection, publisher: psycopg.Connection, broker: int
) -> None:
    publisher.execute("SELECT amqp.publish(1, '', 'nowhere', 'sent')")
    db.execute("UPDATE amqp.broker SET strict = true")
    publisher.execute("SELECT amqp.publish(1, '', 'nowhere', 'kept')")
    db.execute("UPDATE amqp.broker SET strict = false, mandatory = true")
    publisher.execute("SELECT amqp.publish(1, '', 'nowhere', 'returned')")
    rows = db.execute("SELECT message, strict, mandatory, failed FROM amqp.outbox ORDER BY id").fetchall()
    assert rows == [("kept", True, False, False), ("returned", False, True, True)]


def test_flags_cache_of_a_long_gone_transaction_is_not_used(
    db: psycopg.Connection, publisher: psycopg.Connection, rabbit: Rabbit, broker: int
) -> None:
    """Many transactions (of other sessions) between two publishes of one session."""
    queue = rabbit.queue()
    publisher.execute("SELECT amqp.publish(1, '', %s, 'first')", (queue,))
    for _ in range(600):
        db.execute("SELECT pg_current_xact_id()")
    db.execute("UPDATE amqp.broker SET strict = true")
    publisher.execute("SELECT amqp.publish(1, '', %s, 'second')", (queue,))
    assert [b for _, b in rabbit.drain(queue, 1)] == ["first"]
    assert db.execute("SELECT message, strict FROM amqp.outbox").fetchall() == [("second", True)]


@pytest.mark.parametrize("value", ["on", "yes", "banana"])
def test_session_strict_setting_only_makes_stricter(
    db: psycopg.Connection, publisher: psycopg.Connection, broker: int, value: str
) -> None:
    publisher.execute("SELECT set_config('pg_message_queue.amqp_strict', %s, false)", (value,))
    publisher.execute("SELECT amqp.publish(1, '', 'nowhere', 'm')")
    assert db.execute("SELECT strict FROM amqp.outbox").fetchall() == [(True,)]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("pg_message_queue.amqp_armed", "on"),
        ("pg_message_queue.amqp_armed", ""),
        ("pg_message_queue.amqp_sent_upto", "9223372036854775807"),
        ("pg_message_queue.amqp_sent_upto", "0"),
        ("pg_message_queue.amqp_probe", "fired"),
        ("pg_message_queue.amqp_probe", "deferred"),
    ],
)
def test_publisher_settings_neither_lose_nor_send_early(
    db: psycopg.Connection, dsn: str, publisher: psycopg.Connection, rabbit: Rabbit, broker: int, name: str, value: str
) -> None:
    queue = rabbit.queue()
    role = publisher.execute("SELECT current_user").fetchone()[0]
    conn = psycopg.connect(as_role(dsn, role), autocommit=False)
    try:
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        conn.execute("SELECT amqp.publish(1, '', %s, 'a')", (queue,))
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        conn.execute("SELECT amqp.publish(1, '', %s, 'b')", (queue,))
        db.execute("SELECT amqp.publish(1, '', %s, 'marker')", (queue,))
        assert [b for _, b in rabbit.drain(queue, 1)] == ["marker"]
        conn.commit()
    finally:
        conn.close()
    db.execute("SELECT amqp.flush()")  # what the commit left, the relay delivers
    assert [b for _, b in rabbit.drain(queue, 2)] == ["a", "b"]
    assert depth(db) == 0


# ---- the relay's lock -----------------------------------------------------------------


def test_plain_role_cannot_stop_flush(
    db: psycopg.Connection, publisher: psycopg.Connection, rabbit: Rabbit, broker: int
) -> None:
    queue = rabbit.queue()
    db.execute("UPDATE amqp.broker SET strict = true")
    db.execute("SELECT amqp.publish(1, '', %s, 'kept')", (queue,))
    publisher.execute("SELECT pg_advisory_lock(hashtext('pg_message_queue amqp relay'), 1)")
    fails(
        publisher,
        "SELECT 1 FROM amqp.broker WHERE broker_id = 1 FOR UPDATE",
        sqlstate="42501",
        match="permission denied",
    )
    fails(
        publisher,
        "DO $$ BEGIN LOCK TABLE amqp.broker IN ROW SHARE MODE; END $$",
        sqlstate="42501",
        match="permission denied",
    )
    assert db.execute("SELECT amqp.flush()").fetchone() == (1,)
    assert [b for _, b in rabbit.drain(queue, 1)] == ["kept"]


def test_a_second_flush_skips_a_broker_being_flushed(
    connect: Callable[..., psycopg.Connection], rabbit: Rabbit, broker: int
) -> None:
    queue = rabbit.queue()
    db = connect()
    db.execute("UPDATE amqp.broker SET strict = true")
    db.execute("SELECT amqp.publish(1, '', %s, 'once')", (queue,))
    first = connect(autocommit=False)
    assert first.execute("SELECT amqp.flush()").fetchone() == (1,)
    assert db.execute("SELECT amqp.flush()").fetchone() == (0,)  # skipped, not blocked, not sent twice
    first.commit()
    assert [b for _, b in rabbit.drain(queue, 1)] == ["once"]


# ---- what publishers can read -------------------------------------------------------------


def test_status_last_error_is_for_administrators(
    db: psycopg.Connection, publisher: psycopg.Connection, broker: int
) -> None:
    db.execute("SELECT amqp.publish(1, 'secret-exchange', 'secret-key', 'm')")  # refused: no such exchange
    assert "secret-exchange" in db.execute("SELECT last_error FROM amqp.status").fetchone()[0]
    fails(publisher, "SELECT last_error FROM amqp.status", sqlstate="42501", match="permission denied")
    fails(publisher, "SELECT * FROM amqp.status", sqlstate="42501", match="permission denied")
    row = publisher.execute(
        "SELECT broker_id, outbox_depth, failed, oldest_kept_age IS NOT NULL, last_attempt_at IS NOT NULL"
        " FROM amqp.status"
    ).fetchall()
    assert row == [(1, 1, 1, True, True)]


# ---- the relay procedure --------------------------------------------------------------


def test_relay_in_a_do_block_gives_back_the_search_path(db: psycopg.Connection, broker: int) -> None:
    seen: list[str] = []
    db.add_notice_handler(lambda d: seen.append(d.message_primary or ""))
    db.execute("SET search_path = public, amqp")
    db.execute(
        "DO $$ BEGIN CALL amqp.relay(run_for => '0 seconds', exit_when_empty => true);"
        " RAISE NOTICE 'path: %', current_setting('search_path'); END $$"
    )
    assert seen == ["path: public, amqp"]


def test_relay_role_without_flush_batch_gets_a_clear_error(db: psycopg.Connection, dsn: str, broker: int) -> None:
    db.execute("CREATE ROLE amqp_half_relay LOGIN")
    db.execute("GRANT USAGE ON SCHEMA amqp TO amqp_half_relay")
    db.execute(
        "GRANT EXECUTE ON PROCEDURE amqp.relay(integer, integer, double precision, interval, boolean)"
        " TO amqp_half_relay"
    )
    try:
        with (
            psycopg.connect(as_role(dsn, "amqp_half_relay"), autocommit=True) as conn,
            pytest.raises(psycopg.Error) as info,
        ):
            conn.execute("CALL amqp.relay(run_for => '1 second')")
        diag = info.value.diag
        assert info.value.sqlstate == "42501"
        assert (diag.message_primary or "").startswith("pg_message_queue: permission denied"), diag.message_primary
        assert "amqp._flush_batch" in (diag.message_hint or "")
        clean(diag.message_primary)
    finally:
        db.execute("DROP OWNED BY amqp_half_relay")
        db.execute("DROP ROLE amqp_half_relay")


# ---- error texts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "sqlstate"),
    [
        ("SELECT amqp.autonomous_publish(1, NULL, 'q', 'm')", "22004"),
        ("SELECT amqp.autonomous_publish(1, '', 'q', 'm', delivery_mode => 7)", "22023"),
        ("SELECT amqp.autonomous_publish(1, '', 'q', 'm', headers => '{\"big\": 18446744073709551616}')", "22023"),
        ("SELECT amqp.autonomous_publish(1, '', 'q', 'm', correlation_id => repeat('c', 300))", "22023"),
        ("SELECT amqp.autonomous_publish(NULL, '', 'q', 'm')", "22004"),
        ("SELECT amqp.autonomous_publish(42, '', 'q', 'm')", "42704"),
        ("SELECT amqp.publish(1, '', 'q', 'm', headers => '[1]')", "22023"),
        ("SELECT amqp.publish(1, '', 'q', 'm', expiration => 'soon')", "22023"),
        ("SELECT amqp.publish(42, '', 'q', 'm')", "42704"),
        ("SELECT amqp.exchange_declare(1, NULL, 'direct', false, false)", "22004"),
        ("BEGIN; CALL amqp.relay(run_for => '1 second')", "2D000"),
        ("SELECT amqp.exchange_declare(1, 'x', 'no-such-type', false, false)", "08006"),
    ],
)
def test_errors_read_as_pg_message_queue_without_python_internals(
    publisher: psycopg.Connection, db: psycopg.Connection, broker: int, sql: str, sqlstate: str
) -> None:
    conn = db if "exchange_declare" in sql or "relay" in sql else publisher
    with pytest.raises(psycopg.Error) as info:
        conn.execute(sql)
    if sql.startswith("BEGIN"):
        conn.execute("ROLLBACK")
    diag = info.value.diag
    assert info.value.sqlstate == sqlstate, info.value
    assert (diag.message_primary or "").startswith("pg_message_queue:"), diag.message_primary
    for text in (diag.message_primary, diag.message_detail, diag.message_hint):
        clean(text)
