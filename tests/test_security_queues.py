"""Attacks on the queue side, written as a hostile role would try them: each must fail."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
from helpers import as_role, fails


@pytest.fixture
def make_role(db):
    """Create LOGIN roles with unique names (roles are cluster-wide); dropped afterwards."""
    made: list[str] = []

    def _make(*grants: str) -> str:
        name = f"r_{uuid.uuid4().hex[:10]}"
        db.execute(f"CREATE ROLE {name} LOGIN")
        made.append(name)
        for fn in grants:
            db.execute(f"GRANT EXECUTE ON FUNCTION {fn} TO {name}")
        return name

    yield _make
    for name in made:
        db.execute(f"DROP OWNED BY {name}")
        db.execute(f"DROP ROLE {name}")


@pytest.fixture
def login(dsn):
    opened: list[psycopg.Connection] = []

    def _login(role: str) -> psycopg.Connection:
        conn = psycopg.connect(as_role(dsn, role), autocommit=True)
        opened.append(conn)
        return conn

    yield _login
    for conn in opened:
        conn.close()


QUEUE_ADMIN = ("pg_mq_create_queue(text, text)", "pg_mq_grant(text, name, text)")


def _is_superuser(db, role: str) -> bool:
    return db.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)).fetchone()[0]


def test_queue_admin_cannot_become_superuser_through_a_range_type_in_pg_temp(db, make_role, login):
    mallory = make_role(*QUEUE_ADMIN)
    conn = login(mallory)
    conn.execute(
        f"CREATE FUNCTION pg_temp.boom() RETURNS void LANGUAGE plpgsql AS $$"
        f" BEGIN EXECUTE 'ALTER ROLE {mallory} SUPERUSER'; END $$"
    )
    conn.execute(
        "CREATE FUNCTION pg_temp.evil_diff(float8, float8) RETURNS float8 LANGUAGE plpgsql IMMUTABLE AS $$"
        " BEGIN PERFORM pg_temp.boom(); RETURN $1 - $2; END $$"
    )
    conn.execute("CREATE TYPE pg_temp.evr AS RANGE (subtype = float8, subtype_diff = pg_temp.evil_diff)")
    fails(conn, "SELECT pg_mq_create_queue('ev3', 'pg_temp.evr')", sqlstate="42P16", match="temporary type")
    assert db.execute("SELECT count(*) FROM pg_mq_config_catalog WHERE channel = 'ev3'").fetchone()[0] == 0
    assert db.execute("SELECT to_regclass('pg_mq_queue_ev3')").fetchone()[0] is None
    db.execute("ANALYZE")
    assert not _is_superuser(db, mallory)


def test_queue_admin_cannot_use_a_type_whose_functions_it_owns(db, make_role, login):
    mallory = make_role(*QUEUE_ADMIN)
    db.execute(f"CREATE SCHEMA {mallory} AUTHORIZATION {mallory}")
    conn = login(mallory)
    conn.execute(
        f"CREATE FUNCTION {mallory}.evil_diff(float8, float8) RETURNS float8 LANGUAGE plpgsql IMMUTABLE AS $$"
        f" BEGIN EXECUTE 'ALTER ROLE {mallory} SUPERUSER'; RETURN $1 - $2; END $$"
    )
    conn.execute(f"CREATE TYPE {mallory}.evr AS RANGE (subtype = float8, subtype_diff = {mallory}.evil_diff)")
    conn.execute(f"CREATE TYPE {mallory}.wrapper AS (id int, r {mallory}.evr)")
    conn.execute(f"CREATE DOMAIN {mallory}.evd AS {mallory}.evr")
    conn.execute(f"CREATE TYPE {mallory}.colour AS ENUM ('red', 'green')")
    conn.execute(f"CREATE TABLE {mallory}.orders (id int)")
    conn.execute(f"CREATE FUNCTION {mallory}.ok(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true'")
    conn.execute(f"CREATE DOMAIN {mallory}.checked AS int CHECK ({mallory}.ok(VALUE))")
    for type_name in ("evr", "wrapper", "evd", "colour", "orders", "checked", "evr[]", "wrapper[]"):
        fails(
            conn,
            "SELECT pg_mq_create_queue('ev', %s)",
            (f"{mallory}.{type_name}",),
            sqlstate="42501",
            match=f'belongs to role "{mallory}"|owned by role "{mallory}"',
        )
    # A superuser cannot be tricked into it either: the rule is about the type, not the caller.
    fails(db, "SELECT pg_mq_create_queue('ev', %s)", (f"{mallory}.wrapper",), sqlstate="42501", match="superuser")
    assert db.execute("SELECT count(*) FROM pg_mq_config_catalog").fetchone()[0] == 0
    db.execute(f"INSERT INTO {mallory}.orders VALUES (1)")
    db.execute("ANALYZE")
    assert not _is_superuser(db, mallory)


def test_a_superuser_owned_type_with_a_hostile_function_inside_is_refused(db, make_role):
    mallory = make_role()
    db.execute(f"CREATE SCHEMA {mallory} AUTHORIZATION {mallory}")
    db.execute(
        f"CREATE FUNCTION {mallory}.diff(float8, float8) RETURNS float8 LANGUAGE sql IMMUTABLE AS 'SELECT $1 - $2'"
    )
    db.execute(f"ALTER FUNCTION {mallory}.diff(float8, float8) OWNER TO {mallory}")  # mallory can replace it
    db.execute(f"CREATE TYPE public.fr AS RANGE (subtype = float8, subtype_diff = {mallory}.diff)")
    fails(db, "SELECT pg_mq_create_queue('fr', 'public.fr')", sqlstate="42501", match="subtype_diff function")
    db.execute("DROP TYPE public.fr")


def test_temporary_types_are_refused_even_for_superusers(db):
    db.execute("CREATE TYPE pg_temp.mood AS ENUM ('ok')")
    fails(db, "SELECT pg_mq_create_queue('m', 'pg_temp.mood')", sqlstate="42P16", match="temporary type")


@pytest.mark.parametrize("type_name", ["text", "bytea", "jsonb", "int[]", "numeric", "tstzrange", "public.mood"])
def test_trusted_types_are_accepted(db, type_name):
    db.execute("CREATE TYPE public.mood AS ENUM ('ok', 'sad')")  # owned by the superuser
    db.execute("CREATE TYPE public.pair AS (a int, m public.mood)")
    db.execute("SELECT pg_mq_create_queue('t', %s)", (type_name,))
    db.execute("SELECT pg_mq_create_queue('p', 'public.pair')")


def test_revoke_leaves_no_rights_on_dead_letter_queues(db, make_role, login):
    worker = make_role()
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("SELECT pg_mq_create_queue('other_tenant', 'text')")
    db.execute("SELECT pg_mq_set_queue_config('q', 'max_deliveries', '2')")
    db.execute("SELECT pg_mq_grant('q', %s, 'receive')", (worker,))
    db.execute("SELECT pg_mq_set_queue_config('q', 'dead_letter_queue', 'other_tenant')")
    db.execute("SELECT pg_mq_set_queue_config('q', 'max_deliveries', NULL)")
    db.execute("SELECT pg_mq_revoke('q', %s, 'all')", (worker,))
    conn = login(worker)
    for table in ("pg_mq_queue_q", "pg_mq_queue_q_dlq", "pg_mq_queue_other_tenant"):
        fails(
            conn,
            f"INSERT INTO {table} (msg_id, sent_by, payload) VALUES (424242, 'postgres', 'forged')",
            sqlstate="42501",
            match="permission denied",
        )
        privileges = db.execute(
            "SELECT has_table_privilege(%s, %s, 'INSERT'), has_any_column_privilege(%s, %s, 'INSERT,UPDATE,SELECT')",
            (worker, table, worker, table),
        ).fetchone()
        assert privileges == (False, False), table


def test_receivers_never_get_rights_on_the_dead_letter_queue_yet_messages_still_move(db, make_role, login):
    worker = make_role()
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("SELECT pg_mq_set_queue_config('q', 'max_deliveries', '1')")
    db.execute("SELECT pg_mq_grant('q', %s, 'receive')", (worker,))
    msg_id = db.execute("SELECT msg_id FROM pg_mq_send_message('q', 'poison'::text)").fetchone()[0]
    conn = login(worker)
    assert conn.execute("SELECT msg_id FROM pg_mq_read('q', 1)").fetchone() == (msg_id,)
    assert conn.execute("SELECT * FROM pg_mq_nack('q', %s)", ([msg_id],)).fetchall() == []
    assert db.execute("SELECT msg_id, payload FROM pg_mq_queue_q_dlq").fetchall() == [(msg_id, "poison")]
    fails(conn, "INSERT INTO pg_mq_queue_q_dlq (payload) VALUES ('forged')", sqlstate="42501", match="permission")


@pytest.mark.parametrize(
    ("column", "value"),
    [("payload", "'forged'"), ("sent_by", "'postgres'"), ("sent_at", "now()"), ("msg_id", "999999"),
     ("headers", "'{}'"), ("priority", "9"), ("dedup_key", "'k'")],
)  # fmt: skip
def test_receivers_cannot_rewrite_messages(db, make_role, login, column, value):
    worker = make_role()
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("SELECT pg_mq_grant('q', %s, 'receive')", (worker,))
    db.execute("SELECT pg_mq_send_message('q', 'genuine'::text)")
    conn = login(worker)
    fails(conn, f"UPDATE pg_mq_queue_q SET {column} = {value}", sqlstate="42501", match="permission denied")
    assert db.execute("SELECT payload, sent_by FROM pg_mq_queue_q").fetchone() == ("genuine", "postgres")
    # ...while everything consuming needs still works.
    assert [r[0] for r in conn.execute("SELECT payload FROM pg_mq_read('q', 1, '1 hour')")] == ["genuine"]
    msg_id = db.execute("SELECT msg_id FROM pg_mq_queue_q").fetchone()[0]
    assert conn.execute("SELECT * FROM pg_mq_extend('q', %s, '2 hours')", ([msg_id],)).fetchall() == [(msg_id,)]
    assert conn.execute("SELECT * FROM pg_mq_nack('q', %s)", ([msg_id],)).fetchall() == [(msg_id,)]
    assert conn.execute("SELECT payload FROM pg_mq_get_msg_text('q', 1)").fetchall() == [("genuine",)]


def test_recreating_the_extension_in_another_schema_keeps_open_sessions_working(db):
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("SELECT pg_mq_send_message('q', 'before'::text)")
    assert db.execute("SELECT payload FROM pg_mq_get_msg_text('q', 1)").fetchall() == [("before",)]
    db.execute("SELECT pg_mq_drop_queue('q')")
    db.execute("DROP EXTENSION pg_message_queue")
    db.execute("CREATE SCHEMA mq2")
    db.execute("CREATE EXTENSION pg_message_queue SCHEMA mq2")
    db.execute("SELECT mq2.pg_mq_create_queue('q', 'text')")
    db.execute("SELECT mq2.pg_mq_send_message('q', 'after'::text)")
    assert db.execute("SELECT payload FROM mq2.pg_mq_get_msg_text('q', 1)").fetchall() == [("after",)]
    assert db.execute("SELECT to_regclass('mq2.pg_mq_queue_q') IS NOT NULL").fetchone()[0]


def _cached_plans(conn) -> tuple[int, int, list[str]]:
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    conn.execute(
        "DO $$ import sys; d = sys.modules['pg_message_queue']._db;"
        " plpy.notice('|'.join([str(len(d._plans)), str(d.MAX_PLANS), *(k for k in d._plans if 'churn_' in k)]))"
        " $$ LANGUAGE plpython3u"
    )
    count, limit, *keys = notices[-1].split("|")
    return int(count), int(limit), [k for k in keys if k]


def test_creating_and_dropping_queues_does_not_grow_a_backend(db):
    for i in range(150):
        q = f"churn_{i}"
        db.execute("SELECT pg_mq_create_queue(%s, 'text')", (q,))
        db.execute("SELECT pg_mq_send_message(%s, 'x'::text)", (q,))
        db.execute("SELECT * FROM pg_mq_read(%s, 1)", (q,))
        db.execute("SELECT * FROM pg_mq_get_msg_text(%s, 1)", (q,))
        db.execute("SELECT pg_mq_drop_queue(%s, force => true)", (q,))
    count, limit, leftover = _cached_plans(db)
    assert count <= limit
    assert [k for k in leftover if "pg_mq_queue_churn_" in k] == []


def test_other_roles_cannot_block_queue_creation_or_dedup_sends(db, make_role, login):
    hostile = make_role()
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    conn = login(hostile)
    # The locks older versions took, held by a role with no rights at all.
    conn.execute("SELECT pg_advisory_lock(hashtext('pg_mq_create_queue'), hashtext('new_queue'))")
    conn.execute("SELECT pg_advisory_lock(hashtext('public.pg_mq_queue_q'), hashtext('k1'))")
    conn.execute("BEGIN")
    fails(conn, "LOCK TABLE pg_mq_config_catalog IN SHARE ROW EXCLUSIVE MODE", sqlstate="42501", match="permission")
    conn.execute("ROLLBACK")
    conn.execute("BEGIN")
    conn.execute("SELECT * FROM pg_mq_config_catalog")  # a reader's lock does not get in the way
    db.execute("SET statement_timeout = '5s'")
    db.execute("SELECT pg_mq_create_queue('new_queue', 'text')")
    first = db.execute("SELECT msg_id FROM pg_mq_send_message('q', 'a'::text, dedup_key => 'k1')").fetchone()[0]
    again = db.execute("SELECT msg_id, deduplicated FROM pg_mq_send_message('q', 'b'::text, dedup_key => 'k1')")
    assert again.fetchone() == (first, True)
    conn.execute("ROLLBACK")


def test_a_second_sender_of_a_dedup_key_waits_for_the_first_and_gets_its_message(db, connect):
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    first = connect(autocommit=False)
    sent = first.execute("SELECT msg_id FROM pg_mq_send_message('q', 'a'::text, dedup_key => 'same')").fetchone()[0]
    result: list[tuple] = []

    def second_sender() -> None:
        with psycopg.connect(first.info.dsn, autocommit=True) as conn:
            result.append(
                conn.execute(
                    "SELECT msg_id, deduplicated FROM pg_mq_send_message('q', 'b'::text, dedup_key => 'same')"
                ).fetchone()
            )

    t = threading.Thread(target=second_sender)
    t.start()
    time.sleep(0.3)
    assert result == []  # waiting for the first sender's transaction
    first.commit()
    t.join(10)
    assert result == [(sent, True)]
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q").fetchone()[0] == 1


def test_a_dedup_key_outlives_its_window_only_until_the_next_send(db, make_role, login):
    sender = make_role()
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("SELECT pg_mq_set_queue_config('q', 'dedup_window', '1 second')")
    db.execute("SELECT pg_mq_grant('q', %s, 'send')", (sender,))
    conn = login(sender)
    old = conn.execute("SELECT msg_id FROM pg_mq_send_message('q', 'a'::text, dedup_key => 'k')").fetchone()[0]
    time.sleep(1.2)
    new, dedup = conn.execute(
        "SELECT msg_id, deduplicated FROM pg_mq_send_message('q', 'b'::text, dedup_key => 'k')"
    ).fetchone()
    assert dedup is False and new != old
    again = conn.execute("SELECT msg_id, deduplicated FROM pg_mq_send_message('q', 'c'::text, dedup_key => 'k')")
    assert again.fetchone() == (new, True)
    assert db.execute("SELECT msg_id, dedup_key FROM pg_mq_queue_q ORDER BY msg_id").fetchall() == [
        (old, None),
        (new, "k"),
    ]


def test_dedup_keys_have_a_documented_size_limit(db):
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("SELECT pg_mq_send_message('q', 'x'::text, dedup_key => %s)", ("k" * 1024,))
    fails(
        db,
        "SELECT pg_mq_send_message('q', 'x'::text, dedup_key => %s)",
        ("k" * 3000,),
        sqlstate="22023",
        match="dedup_key .* too long: 3000 bytes, at most 1024",
    )


def test_maintenance_loop_in_a_do_block_gives_back_the_search_path(db):
    db.execute("SET search_path = public, pg_catalog")
    db.execute("DO $$ BEGIN CALL pg_mq_maintenance_loop(pause => '0', runs => 1); END $$")
    assert db.execute("SHOW search_path").fetchone()[0] == "public, pg_catalog"


def test_a_queue_table_dropped_by_hand_breaks_only_its_own_queue(db):
    for q in ("gone", "fine"):
        db.execute("SELECT pg_mq_create_queue(%s, 'text')", (q,))
        db.execute("SELECT pg_mq_send_message(%s, 'x'::text)", (q,))
    db.execute("DROP TABLE pg_mq_queue_gone")
    assert [r[0] for r in db.execute("SELECT channel FROM pg_mq_queues")] == ["fine"]
    db.execute("SELECT pg_mq_maintain()")
    fails(db, "SELECT * FROM pg_mq_stats('gone')", sqlstate="42P01", match='queue "gone" has lost its table')
    assert db.execute("SELECT pg_mq_drop_queue('gone', force => true)").fetchone()[0] is True
    assert [r[0] for r in db.execute("SELECT channel FROM pg_mq_config_catalog")] == ["fine"]


def test_a_long_delay_does_not_hold_back_a_fifo_group(db):
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("SELECT pg_mq_set_queue_config('q', 'fifo_group_header', 'g')")
    db.execute("SELECT pg_mq_send_message('q', 'blocker'::text, delay => '100000 years', headers => '{\"g\": \"a\"}')")
    db.execute("SELECT pg_mq_send_message('q', 'next'::text, headers => '{\"g\": \"a\"}')")
    assert [r[0] for r in db.execute("SELECT payload FROM pg_mq_read('q', 5)")] == ["next"]


@pytest.mark.parametrize("name", ["a\u0085b", "a\u2028b", "x\u202eexe"])
def test_invisible_characters_in_channel_names_are_refused(db, name):
    fails(db, "SELECT pg_mq_create_queue(%s, 'text')", (name,), sqlstate="22023", match="control character")


def test_a_null_privilege_is_named_as_such(db, make_role):
    role = make_role()
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    fails(
        db,
        "SELECT pg_mq_grant('q', %s, NULL)",
        (role,),
        sqlstate="22004",
        match="^pg_message_queue: privilege must not be NULL$",
    )


def test_warnings_never_print_a_none_detail(db):
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("SELECT pg_mq_set_queue_config('q', 'max_deliveries', '1')")
    db.execute("SELECT pg_mq_send_message('q', 'x'::text)")
    db.execute("SELECT * FROM pg_mq_read('q', 1, '1 millisecond')")
    db.execute("DROP TABLE pg_mq_queue_q_dlq")
    time.sleep(0.05)
    seen: list[tuple] = []
    db.add_notice_handler(lambda d: seen.append((d.severity, d.message_primary, d.message_detail)))
    db.execute("SELECT * FROM pg_mq_read('q', 1)")
    assert seen and all(detail != "None" for _s, _m, detail in seen), seen
    assert all("spiexceptions" not in message for _s, message, _d in seen), seen


def test_move_keeps_dedup_keys_unless_the_target_already_holds_one(db):
    for q in ("a", "b"):
        db.execute("SELECT pg_mq_create_queue(%s, 'text')", (q,))
    db.execute("SELECT pg_mq_send_message('a', 'one'::text, dedup_key => 'k1')")
    db.execute("SELECT pg_mq_send_message('a', 'two'::text, dedup_key => 'k2')")
    db.execute("SELECT pg_mq_send_message('b', 'live'::text, dedup_key => 'k2')")
    assert db.execute("SELECT pg_mq_move('a', 'b')").fetchone()[0] == 2
    rows = db.execute("SELECT payload, dedup_key FROM pg_mq_queue_b ORDER BY msg_id").fetchall()
    assert rows == [("one", "k1"), ("two", None), ("live", "k2")]


def test_maintenance_loop_inside_a_transaction_block_fails_at_once_and_clearly(connect):
    conn = connect(autocommit=False)
    with pytest.raises(psycopg.Error) as info:
        conn.execute("CALL pg_mq_maintenance_loop(pause => '0', runs => 1)")
    assert info.value.sqlstate == "2D000"
    assert info.value.diag.message_primary == (
        "pg_message_queue: pg_mq_maintenance_loop cannot run inside a transaction block: it commits after every batch"
    )
    conn.rollback()
