"""pg_mq_send_message's fast path: a send without dedup_key runs the queue's generated
PL/pgSQL send function, never PL/Python; anything else takes the Python path. A change
to a queue's catalog row rebuilds (or drops) its functions in the same transaction."""

import threading

import psycopg
import pytest
from helpers import as_role, fails


def python_calls(
    conn: psycopg.Connection, sql: str, params: object = None, python: str = "_pg_mq_send"
) -> tuple[int, object]:
    """Run ``sql`` in a transaction of its own; return how often it entered the PL/Python
    function ``python`` and its first row. The transaction is committed."""
    if conn.execute("SHOW track_functions").fetchone()[0] != "all":
        conn.execute("SET track_functions = 'all'")
    # The xact view also holds counts of earlier transactions not yet flushed: take the difference.
    count = "SELECT COALESCE(sum(calls), 0) FROM pg_stat_xact_user_functions WHERE funcname = %s"
    with conn.transaction():
        before = conn.execute(count, (python,)).fetchone()[0]
        row = conn.execute(sql, params).fetchone()
        calls = conn.execute(count, (python,)).fetchone()[0] - before
    return int(calls), row


def batch_python_calls(conn: psycopg.Connection, sql: str, params: object = None) -> tuple[int, object]:
    return python_calls(conn, sql, params, python="_pg_mq_send_batch_sql")


def generated(db: psycopg.Connection, channel: str = "q") -> str:
    call = db.execute("SELECT send_call FROM pg_mq_config_catalog WHERE channel = %s", (channel,)).fetchone()[0]
    assert call is not None
    return call[len("SELECT ") : call.index("(")]


INSTALLED_DISPATCH = (
    "CREATE OR REPLACE FUNCTION _pg_mq_send_dispatch(in_channel text, in_payload text, in_type oid,"
    " delay interval, priority integer, headers jsonb)"
    " RETURNS bigint LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'"
)


def test_a_plain_send_never_enters_python_and_returns_what_the_row_holds(db):
    db.execute("SELECT pg_mq_create_queue('q', 'integer')")
    calls, row = python_calls(
        db,
        "SELECT msg_id, channel, sent_at, sent_by, visible_at, deduplicated"
        " FROM pg_mq_send_message('q', 42, delay => '1 hour', priority => 3, headers => '{\"k\": \"v\"}')",
    )
    assert calls == 0
    stored = db.execute(
        "SELECT msg_id, 'q', sent_at, sent_by, visible_at, false, payload, priority, headers"
        " FROM pg_mq_queue_q WHERE msg_id = %s",
        (row[0],),
    ).fetchone()
    assert tuple(row) == stored[:6]
    assert stored[6:] == (42, 3, {"k": "v"})
    # Text (and untyped literals) are parsed by the queue type's input, as before.
    calls, row = python_calls(db, "SELECT msg_id FROM pg_mq_send_message('q', '7')")
    assert calls == 0
    assert db.execute("SELECT payload FROM pg_mq_queue_q WHERE msg_id = %s", row).fetchone()[0] == 7


@pytest.mark.parametrize(
    ("call", "sqlstate", "match"),
    [
        ("pg_mq_send_message('q', NULL::integer)", "22004", 'payload for queue "q" must not be NULL'),
        ("pg_mq_send_message('q', 1, priority => NULL)", "22004", "priority must not be NULL"),
        ("pg_mq_send_message('q', 1, delay => '-1 second')", "22023", "delay must not be negative"),
        ("pg_mq_send_message('q', 1, delay => '1 day -25 hours')", "22023", "delay must not be negative"),
        ("pg_mq_send_message('q', 1, headers => '[1]')", "22023", "headers must be a JSON object"),
        ("pg_mq_send_message('q', 1.5)", "42804", 'queue "q" holds integer, not numeric'),
        ("pg_mq_send_message('q', 'x'::text)", "22P02", "integer"),
        ("pg_mq_send_message('nope', 1)", "42704", 'queue "nope" does not exist'),
        ("pg_mq_send_message(NULL, 1)", "22004", "channel must not be NULL"),
    ],
)
def test_what_the_python_path_refuses_is_refused_the_same_way(db, call, sqlstate, match):
    db.execute("SELECT pg_mq_create_queue('q', 'integer')")
    fails(db, f"SELECT * FROM {call}", sqlstate=sqlstate, match=match)
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q").fetchone()[0] == 0


def test_dedup_sends_and_refused_types_take_the_python_path(db):
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    calls, first = python_calls(db, "SELECT msg_id, deduplicated FROM pg_mq_send_message('q', 'a', dedup_key => 'k')")
    assert calls == 1 and first[1] is False
    calls, again = python_calls(db, "SELECT msg_id, deduplicated FROM pg_mq_send_message('q', 'b', dedup_key => 'k')")
    assert calls == 1 and again == (first[0], True)


def test_a_settings_change_rebuilds_the_function_and_another_session_follows(connect):
    sender, admin = connect(), connect()
    admin.execute("SELECT pg_mq_create_queue('q', 'text')")
    before = admin.execute("SELECT send_call FROM pg_mq_config_catalog").fetchone()[0]
    assert python_calls(sender, "SELECT msg_id FROM pg_mq_send_message('q', 'a', priority => 5)")[0] == 0
    admin.execute("SELECT pg_mq_set_queue_config('q', 'priority_ordering', 'off')")
    calls, row = python_calls(sender, "SELECT msg_id FROM pg_mq_send_message('q', 'b', priority => 5)")
    assert calls == 0
    assert admin.execute("SELECT priority FROM pg_mq_queue_q WHERE msg_id = %s", row).fetchone()[0] == 0
    assert admin.execute("SELECT send_call FROM pg_mq_config_catalog").fetchone()[0] == before


def test_a_catalog_row_changed_by_hand_rebuilds_the_function_in_the_same_transaction(connect):
    """A row edited by hand by a superuser (not through pg_mq_set_queue_config) is never
    sent with the function's stale idea of it: the catalog's trigger rebuilds the function
    in the editing transaction, so the next send follows the row without Python."""
    sender, admin = connect(), connect(autocommit=False)
    admin.execute("SELECT pg_mq_create_queue('q', 'text')")
    admin.commit()
    fn = generated(admin)
    body = "SELECT prosrc FROM pg_proc WHERE oid = %s::regproc"
    built = admin.execute(body, (fn,)).fetchone()[0]
    admin.execute("UPDATE pg_mq_config_catalog SET settings = '{\"priority_ordering\": false}' WHERE channel = 'q'")
    assert admin.execute(body, (fn,)).fetchone()[0] != built  # rebuilt before the commit
    # Until the edit commits, other sessions send with the row as it was.
    calls, row = python_calls(sender, "SELECT msg_id FROM pg_mq_send_message('q', 'a', priority => 5)")
    assert calls == 0
    assert admin.execute("SELECT priority FROM pg_mq_queue_q WHERE msg_id = %s", row).fetchone()[0] == 5
    admin.commit()
    calls, row = python_calls(sender, "SELECT msg_id FROM pg_mq_send_message('q', 'b', priority => 5)")
    assert calls == 0
    assert admin.execute("SELECT priority FROM pg_mq_queue_q WHERE msg_id = %s", row).fetchone()[0] == 0
    admin.commit()
    # And back: priorities count again.
    admin.execute("UPDATE pg_mq_config_catalog SET settings = '{}' WHERE channel = 'q'")
    admin.commit()
    calls, row = python_calls(sender, "SELECT msg_id FROM pg_mq_send_message('q', 'c', priority => 5)")
    assert calls == 0
    assert admin.execute("SELECT priority FROM pg_mq_queue_q WHERE msg_id = %s", row).fetchone()[0] == 5
    admin.commit()


def test_a_catalog_row_deleted_or_renamed_by_hand_loses_its_functions(db):
    """No generated function outlives the row it was built from: a row deleted by hand
    takes its functions and its place in the dispatcher with it; a channel renamed by
    hand gets functions under its new name, and the old name is unknown."""
    for channel in ("a", "b"):
        db.execute("SELECT pg_mq_create_queue(%s, 'text')", (channel,))
    fn_a, fn_b = generated(db, "a"), generated(db, "b")
    db.execute("DELETE FROM pg_mq_config_catalog WHERE channel = 'a'")
    assert db.execute("SELECT to_regproc(%s)", (fn_a,)).fetchone()[0] is None
    assert db.execute("SELECT _pg_mq_send_dispatch('a', 'x', 25, NULL, 0, NULL)").fetchone()[0] is None
    assert db.execute("SELECT _pg_mq_send_batch_dispatch('a', ARRAY['x'], 1009, NULL, 0, NULL)").fetchone()[0] is None
    fails(db, "SELECT pg_mq_send_message('a', 'x'::text)", sqlstate="42704", match='queue "a" does not exist')
    db.execute("UPDATE pg_mq_config_catalog SET channel = 'b2' WHERE channel = 'b'")
    assert db.execute("SELECT to_regproc(%s)", (fn_b,)).fetchone()[0] is None
    assert db.execute("SELECT _pg_mq_send_dispatch('b', 'x', 25, NULL, 0, NULL)").fetchone()[0] is None
    calls, row = python_calls(db, "SELECT msg_id FROM pg_mq_send_message('b2', 'y'::text)")
    assert calls == 0 and row[0] is not None
    assert db.execute("SELECT payload FROM pg_mq_queue_b").fetchall() == [("y",)]
    left = "SELECT count(*) FROM pg_proc WHERE proname ~ '^_pg_mq_send_(batch_)?[0-9a-f]{32}$'"
    assert db.execute(left).fetchone()[0] == 2  # b2's two


def test_a_queue_recreated_with_another_type_in_one_transaction_is_followed(connect):
    sender, admin = connect(), connect(autocommit=False)
    admin.execute("SELECT pg_mq_create_queue('q', 'text')")
    admin.commit()
    python_calls(sender, "SELECT msg_id FROM pg_mq_send_message('q', 'a')")
    admin.execute("SELECT pg_mq_drop_queue('q', force => true)")
    admin.execute("SELECT pg_mq_create_queue('q', 'integer')")
    admin.execute("SELECT pg_mq_set_queue_config('q', 'priority_ordering', 'off')")
    admin.commit()
    fails(sender, "SELECT pg_mq_send_message('q', 'x'::text)", sqlstate="22P02", match="integer")
    assert python_calls(sender, "SELECT msg_id FROM pg_mq_send_message('q', 9, priority => 4)")[0] == 0
    assert admin.execute("SELECT payload, priority FROM pg_mq_queue_q").fetchall() == [(9, 0)]


def test_dropping_a_queue_drops_its_function_and_an_upgraded_queue_without_one_still_sends(db):
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    fn = generated(db)
    db.execute("SELECT pg_mq_drop_queue('q')")
    assert db.execute("SELECT to_regproc(%s)", (fn,)).fetchone()[0] is None
    left = "SELECT count(*) FROM pg_proc WHERE proname ~ '^_pg_mq_send_(batch_)?[0-9a-f]{32}$'"
    assert db.execute(left).fetchone()[0] == 0
    # A queue from a release before send_call (no send function, the dispatcher as
    # installed): the Python path, until rebuilt.
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute(f"DROP FUNCTION {generated(db)}")
    db.execute("UPDATE pg_mq_config_catalog SET send_call = NULL")
    db.execute(INSTALLED_DISPATCH)
    calls, _ = python_calls(db, "SELECT msg_id FROM pg_mq_send_message('q', 'a')")
    assert calls == 1
    assert db.execute("SELECT pg_mq_rebuild_triggers()").fetchone()[0] == 1
    assert python_calls(db, "SELECT msg_id FROM pg_mq_send_message('q', 'b')")[0] == 0
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q").fetchone()[0] == 2


def test_no_sender_can_change_what_other_senders_run(db, dsn):
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    fn = generated(db)
    owner, definer, config = db.execute(
        "SELECT pg_get_userbyid(p.proowner) = (SELECT pg_get_userbyid(extowner) FROM pg_extension"
        " WHERE extname = 'pg_message_queue'), p.prosecdef, p.proconfig FROM pg_proc p WHERE p.oid = %s::regproc",
        (fn,),
    ).fetchone()
    assert owner is True and definer is False and config is None
    db.execute("CREATE ROLE fast_sender LOGIN")
    db.execute("ALTER ROLE fast_sender SET track_functions = 'all'")
    try:
        db.execute("SELECT pg_mq_grant('q', 'fast_sender', 'send')")
        with psycopg.connect(as_role(dsn, "fast_sender"), autocommit=True) as sender:
            assert python_calls(sender, "SELECT msg_id FROM pg_mq_send_message('q', 'mine')")[0] == 0
            fails(sender, "UPDATE pg_mq_config_catalog SET send_call = 'SELECT 1'", sqlstate="42501", match="denied")
            fails(
                sender,
                f"CREATE OR REPLACE FUNCTION {fn}(text, oid, interval, int4, jsonb) RETURNS int8"
                " LANGUAGE sql AS 'SELECT 1::int8'",
                sqlstate="42501",
                match="",
            )
            # Calling the function directly is only an INSERT the sender may do anyway.
            fails(sender, "DELETE FROM pg_mq_queue_q", sqlstate="42501", match="denied")
        with psycopg.connect(as_role(dsn, "fast_sender"), autocommit=True) as other:
            db.execute("SELECT pg_mq_revoke('q', 'fast_sender', 'all')")
            fails(other, "SELECT pg_mq_send_message('q', 'after revoke')", sqlstate="42501", match="denied")
    finally:
        db.execute("DROP OWNED BY fast_sender")
        db.execute("DROP ROLE fast_sender")


@pytest.mark.parametrize("channel", ["it's; DROP TABLE x; --", "q\"$body$'", "ünï cødé " * 3 + "ünï cødé", "x" * 51])
def test_hostile_channel_names_get_a_working_function(db, channel):
    db.execute("SELECT pg_mq_create_queue(%s, 'text')", (channel,))
    calls, row = python_calls(db, "SELECT msg_id FROM pg_mq_send_message(%s, 'x'::text)", (channel,))
    assert calls == 0 and row[0] is not None
    assert [r[0] for r in db.execute("SELECT payload FROM pg_mq_get_msg_text(%s, 5)", (channel,))] == ["x"]


def test_every_queue_sends_through_the_dispatcher_to_its_own_table(db):
    """More queues than the dispatcher compares one by one: every channel reaches its
    own queue's function, and a channel that sorts between two others reaches none."""
    channels = [f"d{i:02}" for i in range(11)] + ["it's; x", "ünï", "Z"]
    for channel in channels:
        db.execute("SELECT pg_mq_create_queue(%s, 'text')", (channel,))
    for channel in channels:
        calls, row = python_calls(db, "SELECT msg_id FROM pg_mq_send_message(%s, %s::text)", (channel, channel))
        assert calls == 0 and row[0] is not None
    for channel in channels:
        assert [r[0] for r in db.execute("SELECT payload FROM pg_mq_get_msg_text(%s, 5)", (channel,))] == [channel]
    assert db.execute("SELECT _pg_mq_send_dispatch('d05x', 'y', 25, NULL, 0, NULL)").fetchone()[0] is None
    db.execute("SELECT pg_mq_drop_queue('d05')")
    assert db.execute("SELECT _pg_mq_send_dispatch('d05', 'y', 25, NULL, 0, NULL)").fetchone()[0] is None
    fails(db, "SELECT pg_mq_send_message('d05', 'y'::text)", sqlstate="42704", match='queue "d05" does not exist')


def test_a_dispatcher_that_does_not_know_the_queue_falls_back_to_the_catalog_call(db):
    """After a restore or an upgrade the dispatcher is the installed one until
    pg_mq_rebuild_triggers(): sends still skip Python, through send_call."""
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute(INSTALLED_DISPATCH)
    assert python_calls(db, "SELECT msg_id FROM pg_mq_send_message('q', 'a')")[0] == 0
    db.execute("SELECT pg_mq_rebuild_triggers()")
    assert db.execute("SELECT _pg_mq_send_dispatch('q', 'b', 25, NULL, 0, NULL)").fetchone()[0] is not None
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q").fetchone()[0] == 2


def test_concurrent_drops_take_turns(connect):
    """Each regenerates the dispatcher; a second one waits for the first instead of
    failing with 'tuple concurrently updated'. (The interleaving in which two drops
    would deadlock without drop_queue taking the catalog lock first cannot be forced
    from a test; this one passes with or without that lock.)"""
    first, second = connect(autocommit=False), connect()
    for channel in ("a", "b", "c"):
        second.execute("SELECT pg_mq_create_queue(%s, 'text')", (channel,))
    first.execute("SELECT pg_mq_drop_queue('c')")
    done: list[object] = []
    worker = threading.Thread(target=lambda: done.append(second.execute("SELECT pg_mq_drop_queue('b')").fetchone()))
    worker.start()
    worker.join(1.0)
    assert worker.is_alive()  # waiting for the first transaction's catalog lock
    first.commit()
    worker.join(30)
    assert done == [(True,)]
    assert python_calls(second, "SELECT msg_id FROM pg_mq_send_message('a', 'x')")[0] == 0


@pytest.mark.parametrize(
    ("qtype", "payloads", "stored"),
    [
        ("text", "ARRAY['a', 'b', 'c']", ["a", "b", "c"]),
        ("integer", "ARRAY[3, 1, 2]", [3, 1, 2]),
        ("integer", "ARRAY['3', '1', '2']::text[]", [3, 1, 2]),
        ("jsonb", "ARRAY['{\"a\": 1}', '[2]']::varchar[]", [{"a": 1}, [2]]),
        ("bytea", "ARRAY['\\x0001ff'::bytea]", [b"\x00\x01\xff"]),
    ],
)
def test_a_batch_never_enters_python_and_returns_ids_in_input_order(db, qtype, payloads, stored):
    db.execute("SELECT pg_mq_create_queue('q', %s)", (qtype,))
    calls, row = batch_python_calls(
        db,
        f"SELECT array_agg(id) FROM pg_mq_send_batch('q', {payloads}, delay => '1 hour', priority => 3,"
        " headers => '{\"k\": 1}') AS id",
    )
    assert calls == 0
    ids = row[0]
    assert ids == sorted(ids) and len(ids) == len(stored)
    rows = db.execute(
        "SELECT msg_id, payload, priority, headers, visible_at - sent_at FROM pg_mq_queue_q ORDER BY msg_id"
    ).fetchall()
    assert [r[0] for r in rows] == ids
    assert [r[1] for r in rows] == stored
    assert {(r[2], str(r[3]), str(r[4])) for r in rows} == {(3, "{'k': 1}", "1:00:00")}


@pytest.mark.parametrize(
    ("call", "sqlstate", "match"),
    [
        ("pg_mq_send_batch('q', ARRAY[1, NULL])", "22004", r'payloads\[2\] for queue "q" is NULL'),
        ("pg_mq_send_batch('q', NULL::int[])", "22004", 'payloads for queue "q" must not be NULL'),
        ("pg_mq_send_batch('q', ARRAY[1], priority => NULL)", "22004", "priority must not be NULL"),
        ("pg_mq_send_batch('q', ARRAY[1], delay => '-1 s')", "22023", "delay must not be negative"),
        ("pg_mq_send_batch('q', ARRAY[1], headers => '[1]')", "22023", "headers must be a JSON object"),
        ("pg_mq_send_batch('q', ARRAY[1.5])", "42804", 'queue "q" holds integer, not numeric'),
        ("pg_mq_send_batch('q', ARRAY['x']::text[])", "22P02", "integer"),
        ("pg_mq_send_batch('q', ARRAY[[1, 2], [3, NULL]])", "23502", "payload"),
        ("pg_mq_send_batch('nope', ARRAY[1])", "42704", 'queue "nope" does not exist'),
        ("pg_mq_send_batch(NULL, ARRAY[1])", "22004", "channel must not be NULL"),
    ],
)
def test_what_a_batch_refuses_is_refused_as_before(db, call, sqlstate, match):
    db.execute("SELECT pg_mq_create_queue('q', 'integer')")
    fails(db, f"SELECT * FROM {call}", sqlstate=sqlstate, match=match)
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q").fetchone()[0] == 0


def test_a_batch_follows_settings_changes_and_never_uses_a_stale_row(connect):
    sender, admin = connect(), connect()
    admin.execute("SELECT pg_mq_create_queue('q', 'text')")
    assert batch_python_calls(sender, "SELECT pg_mq_send_batch('q', ARRAY['a'], priority => 5)")[0] == 0
    admin.execute("SELECT pg_mq_set_queue_config('q', 'priority_ordering', 'off')")
    assert batch_python_calls(sender, "SELECT pg_mq_send_batch('q', ARRAY['b'], priority => 5)")[0] == 0
    # A row changed by hand: the function is rebuilt from the row as it is.
    admin.execute("UPDATE pg_mq_config_catalog SET settings = '{}' WHERE channel = 'q'")
    assert batch_python_calls(sender, "SELECT pg_mq_send_batch('q', ARRAY['c'], priority => 5)")[0] == 0
    assert admin.execute("SELECT payload, priority FROM pg_mq_queue_q ORDER BY msg_id").fetchall() == [
        ("a", 0),  # turning priority_ordering off reset the waiting ones
        ("b", 0),
        ("c", 5),
    ]
    # Multidimensional and empty arrays take the Python path, as before.
    calls, row = batch_python_calls(sender, "SELECT count(*) FROM pg_mq_send_batch('q', ARRAY[['d'], ['e']])")
    assert (calls, row[0]) == (1, 2)
    calls, row = batch_python_calls(sender, "SELECT count(*) FROM pg_mq_send_batch('q', '{}'::text[])")
    assert (calls, row[0]) == (1, 0)


def test_a_rolled_back_settings_change_leaves_the_functions_as_they_were(connect):
    """The rebuild is part of the changing transaction: a rollback takes it back too."""
    sender, admin = connect(), connect(autocommit=False)
    admin.execute("SELECT pg_mq_create_queue('q', 'text')")
    admin.commit()
    body = "SELECT prosrc FROM pg_proc WHERE oid = %s::regproc"
    fn = generated(admin)
    built = admin.execute(body, (fn,)).fetchone()[0]
    claim = admin.execute("SELECT prosrc FROM pg_proc WHERE proname = '_pg_mq_get_dispatch'").fetchone()[0]
    admin.execute("SELECT pg_mq_set_queue_config('q', 'priority_ordering', 'off')")
    assert admin.execute(body, (fn,)).fetchone()[0] != built
    admin.rollback()
    assert admin.execute(body, (fn,)).fetchone()[0] == built
    assert admin.execute("SELECT prosrc FROM pg_proc WHERE proname = '_pg_mq_get_dispatch'").fetchone()[0] == claim
    admin.commit()
    calls, row = python_calls(sender, "SELECT msg_id FROM pg_mq_send_message('q', 'a', priority => 5)")
    assert calls == 0
    assert admin.execute("SELECT priority FROM pg_mq_queue_q WHERE msg_id = %s", row).fetchone()[0] == 5
