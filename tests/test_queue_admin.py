"""Creating, dropping, purging queues; payload types; bad input leaves nothing behind."""

import psycopg
import pytest
from helpers import fails, wait_notifies

HOSTILE = ['x"; DROP TABLE victim; --', "With Space", "Capital", "semi;colon", "it's", "ünïcødé ✉"]


def state(db):
    """What a failed call must not change: catalog rows, queue tables, triggers."""
    return (
        db.execute("SELECT count(*) FROM pg_mq_config_catalog").fetchone()[0],
        db.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'pg_mq_queue_%' AND relkind = 'r'").fetchone()[0],
        db.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'pg_mq_notify'").fetchone()[0],
    )


def test_create_queue_returns_catalog_row_and_builds_table_with_trigger(db):
    row = db.execute("SELECT channel, table_name, payload_type::text FROM pg_mq_create_queue('q', 'jsonb')")
    assert row.fetchone() == ("q", "pg_mq_queue_q", "jsonb")
    assert state(db) == (1, 1, 1)
    kind = db.execute(
        "SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attname = 'payload'"
        " AND attrelid = 'pg_mq_queue_q'::regclass"
    ).fetchone()[0]
    assert kind == "jsonb"


@pytest.mark.parametrize(
    ("type_name", "value", "text_form"),
    [
        ("text", "'héllo'::text", "héllo"),
        ("bytea", "'\\x00ff10'::bytea", "\\x00ff10"),
        ("xml", "'<a>1</a>'::xml", "<a>1</a>"),
        ("json", """'{"a": [1, 2]}'::json""", '{"a": [1, 2]}'),
        ("jsonb", """'{"b": 2, "a": 1}'::jsonb""", '{"a": 1, "b": 2}'),
        ("inet", "'192.168.0.1/24'::inet", "192.168.0.1/24"),
        ("date", "'2026-11-21'::date", "2026-11-21"),
        ("integer[]", "ARRAY[1, 2, 3]", "{1,2,3}"),
        ("numeric", "12.50::numeric", "12.50"),
        ("public.point3", "ROW(1, 2, 'z y')::public.point3", '(1,2,"z y")'),
    ],
)
def test_any_payload_type_round_trips(db, type_name, value, text_form):
    db.execute("CREATE TYPE public.point3 AS (x int, y int, label text)")
    db.execute("SELECT pg_mq_create_queue('q', %s)", (type_name,))
    db.execute(f"SELECT pg_mq_send_message('q', {value})")
    db.execute(f"SELECT pg_mq_send_message('q', {value})")
    expected_bin = db.execute(
        f"SELECT CASE WHEN pg_typeof({value}) = 'bytea'::regtype THEN ({value})::text::bytea"
        f" ELSE convert_to(({value})::text, 'UTF8') END"
    ).fetchone()[0]
    # Text reads give the text form of every type, bytea's "\\x..." included (as the original).
    got = db.execute("SELECT payload FROM pg_mq_get_msg_text('q', 1)").fetchone()[0]
    assert got == text_form
    got_bin = db.execute("SELECT payload FROM pg_mq_get_msg_bin('q', 1)").fetchone()[0]
    assert bytes(got_bin) == bytes(expected_bin)
    # And the stored value is of the queue's own type, equal to what was sent.
    same = db.execute(f"SELECT payload::text = ({value})::text FROM pg_mq_queue_q").fetchall()
    assert same == [(True,), (True,)]


def test_text_payload_is_parsed_as_the_queue_type(db):
    db.execute("SELECT pg_mq_create_queue('n', 'integer')")
    db.execute("SELECT pg_mq_send_message('n', '42'::text)")
    assert db.execute("SELECT payload FROM pg_mq_queue_n").fetchone()[0] == 42
    fails(db, "SELECT pg_mq_send_message('n', 'forty'::text)", sqlstate="22P02", match="integer")


def test_wrong_payload_type_is_refused_naming_both_types(db):
    db.execute("SELECT pg_mq_create_queue('t', 'text')")
    fails(db, "SELECT pg_mq_send_message('t', 5)", sqlstate="42804", match='queue "t" holds text, not integer')
    db.execute("SELECT pg_mq_create_queue('j', 'jsonb')")
    fails(db, "SELECT pg_mq_send_message('j', 1.5)", sqlstate="42804", match="holds jsonb, not numeric")
    assert db.execute("SELECT count(*) FROM pg_mq_queue_t").fetchone()[0] == 0


@pytest.mark.parametrize("channel", HOSTILE)
def test_hostile_channel_names_work_and_inject_nothing(connect, channel):
    db = connect()
    listener = connect()
    db.execute("CREATE TABLE victim (x int)")
    row = db.execute("SELECT table_name FROM pg_mq_create_queue(%s, 'text')", (channel,)).fetchone()
    assert row[0] == "pg_mq_queue_" + channel
    listener.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
    sent = db.execute("SELECT msg_id FROM pg_mq_send_message(%s, 'hi'::text)", (channel,)).fetchone()[0]
    assert [(n.channel, n.payload) for n in wait_notifies(listener, 1)] == [(channel, str(sent))]
    got = db.execute("SELECT msg_id, payload FROM pg_mq_get_msg_text(%s, 5)", (channel,)).fetchall()
    assert got == [(sent, "hi")]
    assert db.execute("SELECT pg_mq_purge_queue(%s)", (channel,)).fetchone()[0] == 1
    assert db.execute("SELECT pg_mq_drop_queue(%s)", (channel,)).fetchone()[0] is True
    assert db.execute("SELECT to_regclass('victim') IS NOT NULL").fetchone()[0]
    assert state(db) == (0, 0, 0)


BAD_CREATES = [
    (None, "text", "22004", "channel must not be NULL"),
    ("", "text", "22023", "channel must not be empty"),
    ("a\tb", "text", "22023", "control character"),
    ("x" * 52, "text", "42622", "is too long: 52 bytes, at most 51"),
    ("é" * 26, "text", "42622", "is too long: 52 bytes"),
    ("q", None, "22004", "payload type must not be NULL"),
    ("q", "no_such_type", "42704", 'payload type "no_such_type" does not exist'),
    ("q", "int[", "42704", 'payload type "int\\[" does not exist'),
    ("q", "text; DROP TABLE victim", "42704", "does not exist"),
    ("q", "anyelement", "42P16", "pseudo-type"),
]


@pytest.mark.parametrize(("channel", "type_name", "sqlstate", "match"), BAD_CREATES)
def test_bad_create_is_refused_and_leaves_nothing(db, channel, type_name, sqlstate, match):
    db.execute("CREATE TABLE victim (x int)")
    before = state(db)
    fails(db, "SELECT pg_mq_create_queue(%s, %s)", (channel, type_name), sqlstate, match)
    assert state(db) == before
    assert db.execute("SELECT to_regclass('victim') IS NOT NULL").fetchone()[0]


def test_creating_an_existing_queue_fails_and_keeps_the_first(db):
    db.execute("SELECT pg_mq_create_queue('dup', 'text')")
    db.execute("SELECT pg_mq_send_message('dup', 'keep me'::text)")
    fails(db, "SELECT pg_mq_create_queue('dup', 'bytea')", sqlstate="42710", match='queue "dup" already exists')
    assert state(db) == (1, 1, 1)
    assert db.execute("SELECT payload FROM pg_mq_get_msg_text('dup', 1)").fetchone()[0] == "keep me"


def test_a_foreign_table_with_the_queue_table_name_is_not_taken_over(db):
    db.execute("CREATE TABLE public.pg_mq_queue_mine (x int)")
    fails(db, "SELECT pg_mq_create_queue('mine', 'text')", sqlstate="42P07", match="already exists")
    assert db.execute("SELECT count(*) FROM pg_mq_config_catalog").fetchone()[0] == 0


def test_unknown_channel_is_an_error_for_every_function(db):
    for sql in [
        "SELECT pg_mq_send_message('nope', 'x'::text)",
        "SELECT pg_mq_send_batch('nope', ARRAY['x'])",
        "SELECT * FROM pg_mq_get_msg_text('nope', 1)",
        "SELECT * FROM pg_mq_get_msg_bin('nope', 1)",
        "SELECT * FROM pg_mq_get_msg_id_text('nope', 1)",
        "SELECT * FROM pg_mq_get_msg_id_bin('nope', 1)",
        "SELECT pg_mq_drop_queue('nope')",
        "SELECT pg_mq_purge_queue('nope')",
    ]:
        fails(db, sql, sqlstate="42704", match='queue "nope" does not exist')


def test_null_arguments_are_refused(db):
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    fails(db, "SELECT pg_mq_send_message(NULL, 'x'::text)", sqlstate="22004", match="channel must not be NULL")
    fails(db, "SELECT pg_mq_send_message('q', NULL::text)", sqlstate="22004", match="must not be NULL")
    fails(db, "SELECT pg_mq_send_batch('q', ARRAY['a', NULL])", sqlstate="22004", match=r"payloads\[2\]")
    fails(db, "SELECT * FROM pg_mq_get_msg_text('q', NULL)", sqlstate="22004", match="must not be NULL")
    fails(db, "SELECT * FROM pg_mq_get_msg_text('q', 0)", sqlstate="22023", match="must be positive")
    fails(db, "SELECT * FROM pg_mq_get_msg_bin('q', -3)", sqlstate="22023", match=r"got -3")
    fails(db, "SELECT * FROM pg_mq_get_msg_id_text('q', NULL)", sqlstate="22004", match="msg_id")
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q").fetchone()[0] == 0


def test_drop_refuses_undelivered_messages_unless_forced(db):
    db.execute("SELECT pg_mq_create_queue('d', 'text')")
    db.execute("SELECT pg_mq_send_message('d', 'pending'::text)")
    fails(db, "SELECT pg_mq_drop_queue('d')", sqlstate="55006", match="1 undelivered")
    assert state(db) == (1, 1, 1)
    assert db.execute("SELECT pg_mq_drop_queue('d', force => true)").fetchone()[0] is True
    assert state(db) == (0, 0, 0)


def test_drop_of_a_queue_with_only_delivered_messages_needs_no_force(db):
    db.execute("SELECT pg_mq_create_queue('d', 'text')")
    db.execute("SELECT pg_mq_send_message('d', 'done'::text)")
    db.execute("SELECT * FROM pg_mq_get_msg_text('d', 1)")
    assert db.execute("SELECT pg_mq_drop_queue('d')").fetchone()[0] is True


def test_purge_deletes_everything_and_counts(db):
    db.execute("SELECT pg_mq_create_queue('p', 'text')")
    db.execute("SELECT pg_mq_send_batch('p', ARRAY['a', 'b', 'c'])")
    db.execute("SELECT * FROM pg_mq_get_msg_text('p', 1)")
    assert db.execute("SELECT pg_mq_purge_queue('p')").fetchone()[0] == 3
    assert db.execute("SELECT count(*) FROM pg_mq_queue_p").fetchone()[0] == 0


def relfilenode(db, table: str) -> int:
    return db.execute("SELECT pg_relation_filenode(%s::regclass)", (table,)).fetchone()[0]


def test_purge_of_an_idle_queue_truncates_and_leaves_no_dead_entries(db):
    """Nobody inside a transaction on the queue: TRUNCATE (a new, empty file), so no dead
    rows or index entries are left for claims to step over until a vacuum."""
    db.execute("SELECT pg_mq_create_queue('p', 'text')")
    db.execute("SELECT pg_mq_send_batch('p', array_agg('m' || g)) FROM generate_series(1, 5000) g")
    db.execute("SELECT count(*) FROM pg_mq_get_msg_text('p', 10)")
    before = relfilenode(db, "pg_mq_queue_p")
    assert db.execute("SELECT pg_mq_purge_queue('p')").fetchone()[0] == 5000
    assert relfilenode(db, "pg_mq_queue_p") != before
    assert db.execute("SELECT pg_relation_size('pg_mq_queue_p')").fetchone()[0] == 0
    # The ids go on from the sequence; the queue works as before.
    db.execute("SELECT pg_mq_send_message('p', 'after'::text)")
    assert db.execute("SELECT payload FROM pg_mq_get_msg_text('p', 5)").fetchall() == [("after",)]
    # A rolled-back purge gives everything back.
    db.execute("SELECT pg_mq_send_batch('p', ARRAY['x', 'y'])")
    with db.transaction():
        assert db.execute("SELECT pg_mq_purge_queue('p')").fetchone()[0] == 3
        raise psycopg.Rollback()
    assert db.execute("SELECT count(*) FROM pg_mq_queue_p").fetchone()[0] == 3


@pytest.mark.parametrize(
    "busy",
    [
        "SELECT pg_mq_send_message('p', 'late'::text)",  # an uncommitted send
        "SELECT count(*) FROM pg_mq_queue_p",  # a reader
    ],
)
def test_purge_of_a_busy_queue_deletes_without_waiting(db, connect, busy):
    """Someone is inside a transaction on the queue: DELETE, as before, which does not
    wait for the table (only for rows another transaction changes, as a DELETE does), and
    an uncommitted send survives the purge."""
    db.execute("SELECT pg_mq_create_queue('p', 'text')")
    db.execute("SELECT pg_mq_send_batch('p', ARRAY['a', 'b', 'c'])")
    other = connect(autocommit=False)
    other.execute(busy)
    before = relfilenode(db, "pg_mq_queue_p")
    db.execute("SET lock_timeout = '2s'")  # a purge that waited would fail here
    assert db.execute("SELECT pg_mq_purge_queue('p')").fetchone()[0] == 3
    assert relfilenode(db, "pg_mq_queue_p") == before
    other.commit()
    left = [r[0] for r in db.execute("SELECT payload FROM pg_mq_queue_p")]
    assert left == (["late"] if "send" in busy else [])


def test_purge_in_repeatable_read_deletes_and_keeps_later_messages(db, connect):
    """A purge whose snapshot is older than its lock must not TRUNCATE: a message
    committed after the snapshot was taken would go uncounted. It DELETEs what it sees."""
    db.execute("SELECT pg_mq_create_queue('p', 'text')")
    db.execute("SELECT pg_mq_send_batch('p', ARRAY['a', 'b'])")
    purger = connect(autocommit=False)
    purger.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    purger.execute("SELECT 1")  # the snapshot
    db.execute("SELECT pg_mq_send_message('p', 'later'::text)")
    before = relfilenode(db, "pg_mq_queue_p")
    assert purger.execute("SELECT pg_mq_purge_queue('p')").fetchone()[0] == 2
    purger.commit()
    assert relfilenode(db, "pg_mq_queue_p") == before
    assert [r[0] for r in db.execute("SELECT payload FROM pg_mq_queue_p")] == ["later"]


def test_purge_of_a_queue_others_reference_deletes_through_their_keys(db):
    """A foreign key pointing at the queue table: TRUNCATE would fail; DELETE cascades."""
    db.execute("SELECT pg_mq_create_queue('p', 'text')")
    db.execute("SELECT pg_mq_send_batch('p', ARRAY['a', 'b'])")
    db.execute("CREATE TABLE results (msg_id bigint REFERENCES pg_mq_queue_p ON DELETE CASCADE)")
    db.execute("INSERT INTO results SELECT msg_id FROM pg_mq_queue_p")
    assert db.execute("SELECT pg_mq_purge_queue('p')").fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM results").fetchone()[0] == 0


def test_purge_with_a_cursor_open_on_the_queue_deletes(connect):
    """This session still reads the table (an open cursor): TRUNCATE refuses (55006),
    the purge DELETEs instead."""
    conn = connect(autocommit=False)
    conn.execute("SELECT pg_mq_create_queue('p', 'text')")
    conn.execute("SELECT pg_mq_send_batch('p', ARRAY['a', 'b', 'c'])")
    conn.commit()
    conn.execute("DECLARE c CURSOR FOR SELECT payload FROM pg_mq_queue_p ORDER BY msg_id")
    assert conn.execute("FETCH 1 FROM c").fetchone() == ("a",)
    assert conn.execute("SELECT pg_mq_purge_queue('p')").fetchone()[0] == 3
    conn.commit()
    assert conn.execute("SELECT count(*) FROM pg_mq_queue_p").fetchone()[0] == 0


def test_purge_does_not_fire_a_truncate_trigger(db):
    """A purge deletes messages; it never fired TRUNCATE triggers and still does not:
    a queue table with one of the user's is purged by DELETE."""
    db.execute("SELECT pg_mq_create_queue('p', 'text')")
    db.execute("CREATE TABLE truncations (at timestamptz)")
    db.execute(
        "CREATE FUNCTION note_truncate() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN INSERT INTO public.truncations VALUES (now()); RETURN NULL; END$$"
    )
    db.execute("CREATE TRIGGER t AFTER TRUNCATE ON pg_mq_queue_p EXECUTE FUNCTION note_truncate()")
    db.execute("SELECT pg_mq_send_batch('p', ARRAY['a', 'b'])")
    assert db.execute("SELECT pg_mq_purge_queue('p')").fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM truncations").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM pg_mq_queue_p").fetchone()[0] == 0


def test_purge_keeps_delete_triggers_firing(db):
    """A queue table with a DELETE trigger of its own is purged by DELETE, so the trigger
    sees every message go."""
    db.execute("SELECT pg_mq_create_queue('p', 'text')")
    db.execute("CREATE TABLE purged (payload text)")
    db.execute(
        "CREATE FUNCTION keep_purged() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN INSERT INTO public.purged VALUES (OLD.payload); RETURN OLD; END$$"
    )
    db.execute("CREATE TRIGGER keep BEFORE DELETE ON pg_mq_queue_p FOR EACH ROW EXECUTE FUNCTION keep_purged()")
    db.execute("SELECT pg_mq_send_batch('p', ARRAY['a', 'b'])")
    assert db.execute("SELECT pg_mq_purge_queue('p')").fetchone()[0] == 2
    assert sorted(r[0] for r in db.execute("SELECT payload FROM purged")) == ["a", "b"]


def test_rebuild_triggers_restores_notification(connect):
    db = connect()
    listener = connect()
    db.execute("SELECT pg_mq_create_queue('r', 'text')")
    db.execute("DROP TRIGGER pg_mq_notify ON pg_mq_queue_r")
    listener.execute('LISTEN "r"')
    db.execute("SELECT pg_mq_send_message('r', 'silent'::text)")
    assert wait_notifies(listener, 1, timeout=0.5) == []
    assert db.execute("SELECT pg_mq_rebuild_triggers()").fetchone()[0] == 1
    db.execute("SELECT pg_mq_send_message('r', 'loud'::text)")
    assert len(wait_notifies(listener, 1)) == 1
    assert state(db) == (1, 1, 1)


def test_every_public_function_has_a_comment(db):
    missing = db.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p"
        " JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'"
        " JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_message_queue'"
        " WHERE obj_description(p.oid, 'pg_proc') IS NULL"
    ).fetchall()
    assert missing == []
    count = db.execute(
        "SELECT count(*) FROM pg_proc WHERE proname LIKE 'pg\\_mq\\_%' AND obj_description(oid, 'pg_proc') <> ''"
    ).fetchone()[0]
    assert count >= 12


def test_every_function_pins_its_search_path(db):
    loose = db.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p"
        " JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'"
        " JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_message_queue'"
        " WHERE NOT coalesce(p.proconfig::text[] @> ARRAY['search_path=pg_catalog, pg_temp'], false)"
        # Procedures that COMMIT cannot have a SET clause; they qualify every name.
        " AND p.prokind <> 'p'"
        # Inlined SQL wrappers (a SET clause would prevent inlining); every name qualified.
        " AND p.proname <> 'pg_mq_send_message'"
        # The notify trigger, on every send: a SET clause cost a fifth of the INSERT.
        " AND p.proname <> 'pg_mq_notify_trigger'"
        # The generated send dispatchers (queues.build_dispatch), likewise on every send.
        " AND p.proname NOT IN ('_pg_mq_send_dispatch', '_pg_mq_send_batch_dispatch')"
    ).fetchall()
    assert loose == []


def test_create_queue_is_not_executable_by_public(db):
    public_can = db.execute(
        "SELECT has_function_privilege('public', 'pg_mq_create_queue(text, text)', 'EXECUTE')"
    ).fetchone()[0]
    assert public_can is False
