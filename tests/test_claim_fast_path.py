"""The claims' fast path: pg_mq_get_msg_text, pg_mq_pop and pg_mq_read run the queue's
claiming statement from a generated dispatcher, never PL/Python; a call that fails a
check, a queue with max_deliveries, and a dispatcher that does not know the queue
(after an upgrade or a restore) take the Python path, with the same results and errors.
Every change to a queue's settings regenerates the statements."""

import threading

import psycopg
import pytest
from helpers import fails

INSTALLED = {  # the dispatchers as sql/incremental/041-claim-dispatch.sql creates them
    "_pg_mq_get_dispatch": (
        "(integer, timestamptz, text) RETURNS SETOF pg_mq_msg_text",
        "RETURN QUERY EXECUTE {s}._pg_mq_get_sql($3, $1, true, false) USING $1, $2;"
        " GET DIAGNOSTICS got = ROW_COUNT; IF got < $1 THEN"
        " RETURN QUERY EXECUTE {s}._pg_mq_get_sql($3, $1 - got::integer, true, true) USING $1 - got::integer, $2;"
        " END IF;",
    ),
    "_pg_mq_pop_dispatch": (
        "(integer, timestamptz, text) RETURNS SETOF pg_mq_leased",
        "RETURN QUERY EXECUTE {s}._pg_mq_pop_sql($3, $1, true, false) USING $1, $2;"
        " GET DIAGNOSTICS got = ROW_COUNT; IF got < $1 THEN"
        " RETURN QUERY EXECUTE {s}._pg_mq_pop_sql($3, $1 - got::integer, true, true) USING $1 - got::integer, $2;"
        " END IF;",
    ),
    "_pg_mq_read_dispatch": (
        "(integer, interval, timestamptz, text, interval) RETURNS SETOF pg_mq_leased",
        "RETURN QUERY EXECUTE {s}._pg_mq_read_sql($4, $1, $2, $5, true, false) USING $1, $2, $3;"
        " GET DIAGNOSTICS got = ROW_COUNT; IF got < $1 THEN RETURN QUERY EXECUTE"
        " {s}._pg_mq_read_sql($4, $1 - got::integer, $2, $5, true, true) USING $1 - got::integer, $2, $3;"
        " END IF;",
    ),
}


# The settings 041-claim-dispatch.sql gives them (and queues.CLAIM_SETTINGS the generated ones).
SHIPPED_SETTINGS = (
    "SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan"
    " SET enable_seqscan = off SET enable_bitmapscan = off SET jit = off"
)


HALVES = "funcname IN ('_pg_mq_get_sql', '_pg_mq_pop_sql', '_pg_mq_read_sql')"
# Every PL/Python function (pg_mq_ack itself was one before 2026-11-27).
ANY_PYTHON = (
    "funcid IN (SELECT p.oid FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang WHERE l.lanname = 'plpython3u')"
)


def python_calls(conn: psycopg.Connection, sql: str, params: object = None, which: str = HALVES) -> tuple[int, list]:
    """Run ``sql`` in a transaction of its own; return how often it entered ``which``
    (by default the claims' PL/Python halves), and its rows."""
    if conn.execute("SHOW track_functions").fetchone()[0] != "all":
        conn.execute("SET track_functions = 'all'")
    count = f"SELECT COALESCE(sum(calls), 0) FROM pg_stat_xact_user_functions WHERE {which}"
    with conn.transaction():
        before = conn.execute(count).fetchone()[0]
        rows = conn.execute(sql, params).fetchall()
        calls = conn.execute(count).fetchone()[0] - before
    return int(calls), rows


def install_as_shipped(db: psycopg.Connection) -> None:
    schema = db.execute(
        "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_message_queue'"
    ).fetchone()[0]
    for name, (signature, body) in INSTALLED.items():
        db.execute(
            f"CREATE OR REPLACE FUNCTION {name}{signature} LANGUAGE plpgsql {SHIPPED_SETTINGS}"
            f" AS $$DECLARE got bigint; BEGIN {body.format(s=schema)} END$$"
        )


def fill(db: psycopg.Connection, channel: str = "q") -> None:
    """Six messages: priorities 0, 5, 0, 5, 9, 0 (payloads p1..p6)."""
    db.execute("SELECT pg_mq_create_queue(%s, 'text')", (channel,))
    for i, prio in enumerate((0, 5, 0, 5, 9, 0), start=1):
        db.execute("SELECT pg_mq_send_message(%s, %s::text, priority => %s)", (channel, f"p{i}", prio))


@pytest.mark.parametrize("shipped", [False, True], ids=["generated", "installed (Python path)"])
def test_claims_return_the_same_whichever_path_runs_them(db, shipped):
    """The generated statements and the Python path give the same rows, in the same
    order (priority, then age), with the same effects; only the generated ones skip
    PL/Python."""
    fill(db)
    if shipped:
        install_as_shipped(db)
    expected_calls = 1 if shipped else 0
    calls, rows = python_calls(db, "SELECT payload, delivered_at IS NOT NULL FROM pg_mq_get_msg_text('q', 2)")
    assert (calls, rows) == (expected_calls, [("p5", True), ("p2", True)])
    calls, rows = python_calls(db, "SELECT payload, read_count FROM pg_mq_pop('q', 1)")
    assert (calls, rows) == (expected_calls, [("p4", 1)])
    calls, rows = python_calls(
        db, "SELECT payload, read_count, visible_at > now() + '50 s' FROM pg_mq_read('q', 2, '60 s')"
    )
    assert (calls, rows) == (expected_calls, [("p1", 1, True), ("p3", 1, True)])
    # What is left: the delivered two (kept, as the original does), the leased two, p6.
    left = db.execute("SELECT payload, delivered_at IS NOT NULL FROM pg_mq_queue_q ORDER BY msg_id").fetchall()
    assert left == [("p1", False), ("p2", True), ("p3", False), ("p5", True), ("p6", False)]
    # A short claim (one of five) runs its second statement for the rest: on the
    # Python path that is a second call of the Python half.
    calls, rows = python_calls(db, "SELECT payload FROM pg_mq_read('q', 5, wait => '0.05 s')")
    assert (calls, rows) == (2 * expected_calls, [("p6",)])
    # An empty queue long-polls through the same path (one call per poll on the Python path).
    calls, rows = python_calls(db, "SELECT payload FROM pg_mq_read('q', 5, wait => '0.05 s')")
    assert rows == [] and (calls == 0) == (not shipped)


@pytest.mark.parametrize(
    ("call", "sqlstate", "match"),
    [
        ("pg_mq_get_msg_text('q', 0)", "22023", "must be positive"),
        ("pg_mq_get_msg_text('q', NULL)", "22004", "must not be NULL"),
        ("pg_mq_get_msg_text('nope', 1)", "42704", 'queue "nope" does not exist'),
        ("pg_mq_pop('q', -1)", "22023", "must be positive"),
        ("pg_mq_pop('q', NULL)", "22004", "must not be NULL"),
        ("pg_mq_pop('nope', 1)", "42704", 'queue "nope" does not exist'),
        ("pg_mq_read('q', 0)", "22023", "must be positive"),
        ("pg_mq_read('q', 1, '0 s')", "22023", "visibility_timeout must be positive"),
        ("pg_mq_read('q', 1, NULL)", "22004", "visibility_timeout must not be NULL"),
        ("pg_mq_read('q', 1, '1 s', '-1 s')", "22023", "wait must not be negative"),
        ("pg_mq_read(NULL, 1)", "22004", "channel must not be NULL"),
    ],
)
def test_what_the_python_path_refuses_is_refused_the_same_way(db, call, sqlstate, match):
    fill(db)
    fails(db, f"SELECT * FROM {call}", sqlstate=sqlstate, match=match)
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q WHERE delivered_at IS NULL").fetchone()[0] == 6


def test_settings_changes_regenerate_the_statements(connect):
    """Another session's claims follow a settings change from its next transaction,
    without Python: priorities ignored, then kept rows for pop (retention)."""
    consumer, admin = connect(), connect()
    fill(admin)
    admin.execute("SELECT pg_mq_set_queue_config('q', 'priority_ordering', 'off')")
    calls, rows = python_calls(consumer, "SELECT payload FROM pg_mq_get_msg_text('q', 2)")
    assert (calls, rows) == (0, [("p1",), ("p2",)])
    admin.execute("SELECT pg_mq_set_queue_config('q', 'retention', '1 hour')")
    calls, rows = python_calls(consumer, "SELECT payload FROM pg_mq_pop('q', 1)")
    assert (calls, rows) == (0, [("p3",)])
    kept = admin.execute("SELECT delivered_at IS NOT NULL FROM pg_mq_queue_q WHERE payload = 'p3'").fetchall()
    assert kept == [(True,)]  # retained, not deleted
    # By hand, behind pg_mq_set_queue_config: the catalog's trigger regenerates them too.
    admin.execute("UPDATE pg_mq_config_catalog SET settings = '{}' WHERE channel = 'q'")
    admin.execute("SELECT pg_mq_send_message('q', 'p7'::text, priority => 9)")
    calls, rows = python_calls(consumer, "SELECT payload FROM pg_mq_pop('q', 1)")
    assert (calls, rows) == (0, [("p7",)])
    assert admin.execute("SELECT count(*) FROM pg_mq_queue_q WHERE payload = 'p7'").fetchone()[0] == 0


def test_a_queue_with_max_deliveries_claims_through_python_and_dead_letters(db):
    """Its claims first move what used up max_deliveries to the dead-letter queue, which
    only the Python path does: it never gets a generated statement."""
    fill(db)
    db.execute("SELECT pg_mq_set_queue_config('q', 'max_deliveries', '1')")
    calls, rows = python_calls(db, "SELECT payload FROM pg_mq_read('q', 1, '0.001 s')")
    assert (calls, rows) == (1, [("p5",)])
    db.execute("SELECT pg_sleep(0.01)")
    calls, rows = python_calls(db, "SELECT payload FROM pg_mq_get_msg_text('q', 1)")
    assert (calls, rows) == (1, [("p2",)])
    assert db.execute("SELECT payload FROM pg_mq_queue_q_dlq").fetchall() == [("p5",)]
    # Reset: the generated statement again.
    db.execute("SELECT pg_mq_set_queue_config('q', 'max_deliveries', NULL)")
    assert python_calls(db, "SELECT payload FROM pg_mq_get_msg_text('q', 1)") == (0, [("p4",)])


def test_hostile_channel_names_get_their_own_statements(db):
    """More queues than the dispatchers compare one by one, names with quotes, spaces,
    ';', unicode and the longest allowed (51 bytes): each claim reaches its own queue only."""
    channels = [f"c{i:02}" for i in range(9)] + ["it's; x", "Ünï cödé", "Z" * 51]
    for channel in channels:
        db.execute("SELECT pg_mq_create_queue(%s, 'text')", (channel,))
        db.execute(
            "SELECT pg_mq_send_batch(%s, ARRAY[%s, %s, %s])", (channel, channel + "1", channel + "2", channel + "3")
        )
    for channel in channels:
        assert python_calls(db, "SELECT payload FROM pg_mq_get_msg_text(%s, 1)", (channel,)) == (0, [(channel + "1",)])
        assert python_calls(db, "SELECT payload FROM pg_mq_pop(%s, 1)", (channel,)) == (0, [(channel + "2",)])
        assert python_calls(db, "SELECT payload FROM pg_mq_read(%s, 1)", (channel,)) == (0, [(channel + "3",)])
    db.execute("SELECT pg_mq_drop_queue('c04', force => true)")
    fails(db, "SELECT * FROM pg_mq_pop('c04', 1)", sqlstate="42704", match='queue "c04" does not exist')


def test_an_installed_dispatcher_takes_the_python_path_until_rebuilt(db):
    """After an upgrade or a restore the dispatchers are the shipped ones: claims work
    through Python; pg_mq_rebuild_triggers() brings the generated statements back."""
    fill(db)
    install_as_shipped(db)
    assert python_calls(db, "SELECT payload FROM pg_mq_get_msg_text('q', 1)") == (1, [("p5",)])
    assert db.execute("SELECT pg_mq_rebuild_triggers()").fetchone()[0] == 1
    assert python_calls(db, "SELECT payload FROM pg_mq_get_msg_text('q', 1)") == (0, [("p2",)])


def test_concurrent_settings_changes_take_turns(connect):
    """Each regenerates the dispatchers; the second waits for the first's catalog lock
    instead of deadlocking on the other's catalog row."""
    first, second = connect(autocommit=False), connect()
    for channel in ("a", "b"):
        second.execute("SELECT pg_mq_create_queue(%s, 'text')", (channel,))
    first.execute("SELECT pg_mq_set_queue_config('a', 'priority_ordering', 'off')")
    done: list[object] = []
    worker = threading.Thread(
        target=lambda: done.append(
            second.execute("SELECT pg_mq_set_queue_config('b', 'retention', '1 hour')").fetchone()
        )
    )
    worker.start()
    worker.join(1.0)
    assert worker.is_alive()  # waiting for the first transaction's catalog lock
    first.commit()
    worker.join(30)
    assert len(done) == 1
    second.execute("SELECT pg_mq_send_batch('b', ARRAY['x', 'y'])")
    assert python_calls(second, "SELECT payload FROM pg_mq_pop('b', 1)") == (0, [("x",)])
    assert second.execute("SELECT count(*) FROM pg_mq_queue_b").fetchone()[0] == 2  # retained


def ack_calls(conn: psycopg.Connection, sql: str, params: object = None) -> tuple[int, list]:
    return python_calls(conn, sql, params, ANY_PYTHON)


def test_ack_runs_the_queues_statement_and_refuses_as_the_python_half(db):
    """pg_mq_ack of a one-dimensional array without NULLs never enters PL/Python and
    returns the acknowledged ids in order; a retaining queue keeps them as delivered;
    anything else goes to the Python half, with its result or its error."""
    fill(db)
    leased = [r[0] for r in db.execute("SELECT msg_id FROM pg_mq_read('q', 3, '1 hour')")]
    unknown = max(leased) + 1000
    calls, rows = ack_calls(db, "SELECT * FROM pg_mq_ack('q', %s)", ([leased[2], unknown, leased[0]],))
    assert (calls, rows) == (0, [(i,) for i in sorted([leased[0], leased[2]])])  # in id order
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q WHERE msg_id = ANY(%s)", (leased,)).fetchone()[0] == 1
    assert ack_calls(db, "SELECT * FROM pg_mq_ack('q', %s)", ([leased[0]],)) == (0, [])  # acked already
    db.execute("SELECT pg_mq_set_queue_config('q', 'retention', '1 hour')")
    calls, rows = ack_calls(db, "SELECT * FROM pg_mq_ack('q', %s)", ([leased[1]],))
    assert (calls, rows) == (0, [(leased[1],)])
    kept = db.execute("SELECT delivered_at IS NOT NULL FROM pg_mq_queue_q WHERE msg_id = %s", (leased[1],))
    assert kept.fetchall() == [(True,)]
    # The Python half: an empty or two-dimensional array, and every refusal.
    assert ack_calls(db, "SELECT * FROM pg_mq_ack('q', '{}')") == (1, [])
    two_d = [r[0] for r in db.execute("SELECT msg_id FROM pg_mq_read('q', 2, '1 hour')")]
    calls, rows = ack_calls(db, "SELECT * FROM pg_mq_ack('q', %s::bigint[])", (f"{{{{{two_d[0]}}},{{{two_d[1]}}}}}",))
    assert (calls, sorted(rows)) == (1, [(two_d[0],), (two_d[1],)])
    fails(db, "SELECT * FROM pg_mq_ack('q', NULL)", sqlstate="22004", match="msg_ids must not be NULL")
    fails(db, "SELECT * FROM pg_mq_ack('q', ARRAY[1, NULL])", sqlstate="22004", match="must not contain NULL")
    fails(db, "SELECT * FROM pg_mq_ack('nope', ARRAY[1])", sqlstate="42704", match='queue "nope" does not exist')
    fails(db, "SELECT * FROM pg_mq_ack(NULL, ARRAY[1])", sqlstate="22004", match="channel must not be NULL")


@pytest.mark.parametrize("header", ['it\'s $1 "x"; --', "$2", "found", "ünï"])
def test_a_hostile_fifo_group_header_is_a_value_in_the_generated_statement(db, header):
    """The header key is written into the generated claim as a literal: quotes, `$n`
    and PL/pgSQL's own names stay data, and FIFO groups still hold one message each."""
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("SELECT pg_mq_set_queue_config('q', 'fifo_group_header', %s)", (header,))
    for payload, group in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        db.execute(
            "SELECT pg_mq_send_message('q', %s::text, headers => jsonb_build_object(%s::text, %s::text))",
            (payload, header, group),
        )
    calls, rows = python_calls(db, "SELECT payload FROM pg_mq_read('q', 10, '1 hour')")
    assert (calls, sorted(rows)) == (0, [("a1",), ("b1",)])
    assert db.execute("SELECT count(*) FROM pg_mq_config_catalog").fetchone()[0] == 1


def plans_of(db: psycopg.Connection, sql: str) -> tuple[list[str], list]:
    """Run ``sql`` with auto_explain logging every nested statement's plan to this
    client; return the plans of the claims' statements (those WITH picked) and the rows."""
    logged: list[str] = []
    db.add_notice_handler(lambda d: logged.append(d.message_primary or ""))
    db.execute("LOAD 'auto_explain'")
    for setting, value in (("log_min_duration", "0"), ("log_nested_statements", "on"), ("log_analyze", "off")):
        db.execute(f"SET auto_explain.{setting} = {value}")
    db.execute("SET client_min_messages = log")
    try:
        rows = db.execute(sql).fetchall()
    finally:
        db.execute("RESET client_min_messages")
        db.execute("SET auto_explain.log_min_duration = -1")
    return [p for p in logged if "WITH picked AS" in p], rows


def test_a_claim_planned_on_an_empty_queue_still_walks_the_indexes_once_it_is_full(db):
    """The generated claims are planned once per backend (a generic plan), and a plan
    made while the queue was empty is kept while it fills: it must still read the ready
    messages in delivery order from the indexes, never scan or sort the whole table
    (as a plan chosen for an empty table would: a sequential scan and a sort)."""
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("VACUUM ANALYZE pg_mq_queue_q")  # statistics of an empty table
    for claim in ("pg_mq_get_msg_text('q', 5)", "pg_mq_pop('q', 5)", "pg_mq_read('q', 5)"):
        assert db.execute(f"SELECT * FROM {claim}").fetchall() == []  # planned now, on the empty table
    db.execute("INSERT INTO pg_mq_queue_q (payload, priority) SELECT 'm' || g, g % 3 FROM generate_series(1, 30000) g")
    expected = {  # priority first, then age
        "pg_mq_get_msg_text('q', 5)": ["m2", "m5", "m8", "m11", "m14"],
        "pg_mq_pop('q', 5)": ["m17", "m20", "m23", "m26", "m29"],
        "pg_mq_read('q', 5)": ["m32", "m35", "m38", "m41", "m44"],
    }
    for claim, payloads in expected.items():
        plans, rows = plans_of(db, f"SELECT payload FROM {claim}")
        assert [r[0] for r in rows] == payloads
        assert len(plans) == 1, plans
        plan = plans[0]
        assert "Index Scan using pg_mq_queue_q_priority_msg_id_idx" in plan, plan
        assert "Index Scan using pg_mq_queue_q_visible_at_idx" in plan, plan
        assert "msg_id = ANY" in plan, plan  # the change finds the picked rows by key
        assert "Seq Scan" not in plan and "Bitmap" not in plan, plan
        # The plan made on the empty table, not a new one: the claim's time is still a parameter.
        assert "visible_at <= $" in plan, plan


def test_claims_beyond_the_generic_maximum_take_the_python_path(db):
    """The generated statements take claims of up to 1,000 messages (their candidates'
    bound is a constant); larger ones run through Python, with the same results."""
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("INSERT INTO pg_mq_queue_q (payload) SELECT 'm' || g FROM generate_series(1, 2600) g")
    db.execute("INSERT INTO pg_mq_queue_q (payload) SELECT 'n' || g FROM generate_series(1, 3500) g")
    start = 1
    for claim, n, python in (
        ("pg_mq_get_msg_text('q', %s)", 1000, 0),
        ("pg_mq_get_msg_text('q', %s)", 1001, 1),
        ("pg_mq_pop('q', %s)", 1000, 0),
        ("pg_mq_pop('q', %s)", 1001, 1),
        ("pg_mq_read('q', %s)", 1000, 0),
        ("pg_mq_read('q', %s)", 1001, 1),
    ):
        calls, rows = python_calls(db, f"SELECT payload FROM {claim}", (n,))
        want = [f"m{i}" if i <= 2600 else f"n{i - 2600}" for i in range(start, start + n)]
        assert (calls, [r[0] for r in rows]) == (python, want), (claim, n)
        start += n


@pytest.mark.parametrize(
    "claim",
    [
        "pg_mq_get_msg_text('q', 5)",
        "pg_mq_pop('q', 5)",
        "pg_mq_read('q', 5)",
        "pg_mq_get_msg_bin('q', 5)",
        "pg_mq_pop_bin('q', 5)",
        "pg_mq_read_bin('q', 5)",
        "pg_mq_get_msg_text('q', 1001)",
    ],
)
def test_a_short_claims_second_statement_walks_the_indexes_too(connect, claim):
    """When others hold all of a claim's first candidates, its second statement goes on
    past them with no bound on the candidates: it must walk the indexes in delivery
    order and stop once it has locked enough, never sort every ready message first
    (as a plan with sequential or bitmap scans does), whichever path runs it."""
    db = connect()
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("INSERT INTO pg_mq_queue_q (payload) SELECT 'm' || g FROM generate_series(1, 40000) g")
    db.execute("VACUUM ANALYZE pg_mq_queue_q")
    holder = connect(autocommit=False)
    assert len(holder.execute("SELECT * FROM pg_mq_get_msg_text('q', 1000)").fetchall()) == 1000
    assert len(holder.execute("SELECT * FROM pg_mq_get_msg_text('q', 1000)").fetchall()) == 1000
    plans, rows = plans_of(db, f"SELECT * FROM {claim}")
    n = int(claim.split(", ")[1].rstrip(")"))
    assert len(rows) == n
    second = [p for p in plans if "OFFSET 0" in p]
    assert len(second) == 1, plans
    assert "Index Scan using pg_mq_queue_q_priority_msg_id_idx" in second[0], second[0]
    assert "Seq Scan" not in second[0] and "Bitmap" not in second[0], second[0]
    holder.rollback()


FIFO_INDEX = (
    "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
    " WHERE i.indrelid = 'pg_mq_queue_q'::regclass AND c.relname LIKE 'pg_mq_fifo_%'"
)


def test_fifo_groups_get_an_index_that_follows_the_setting(db):
    """fifo_group_header gives the queue table an index of its waiting messages by group
    (claims probe it); another key replaces it, unsetting drops it, and other settings
    leave it alone (building it reads the whole table)."""
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    assert db.execute(FIFO_INDEX).fetchall() == []
    db.execute("SELECT pg_mq_set_queue_config('q', 'fifo_group_header', 'g')")
    [(name, mark)] = db.execute(FIFO_INDEX).fetchall()
    assert mark == "pg_mq fifo_group_header: g"
    db.execute("SELECT pg_mq_set_queue_config('q', 'retention', '1 hour')")
    assert db.execute(FIFO_INDEX).fetchall() == [(name, mark)]
    db.execute("SELECT pg_mq_set_queue_config('q', 'fifo_group_header', 'tenant')")
    [(other, mark)] = db.execute(FIFO_INDEX).fetchall()
    assert (other != name, mark) == (True, "pg_mq fifo_group_header: tenant")
    db.execute("UPDATE pg_mq_config_catalog SET settings = settings - 'fifo_group_header' WHERE channel = 'q'")
    assert db.execute(FIFO_INDEX).fetchall() == []  # by hand too (the catalog's trigger)


def test_a_fifo_claim_probes_the_group_index_instead_of_reading_every_waiting_message(db):
    """Whether a message heads its group is one probe of the group index per candidate:
    a claim no longer computes the heads of all groups from every waiting message
    (about 60 ms a claim with 50,000 waiting in 1,000 groups), on either path."""
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("SELECT pg_mq_set_queue_config('q', 'fifo_group_header', 'g')")
    db.execute(
        "INSERT INTO pg_mq_queue_q (payload, headers)"
        " SELECT 'm' || g, jsonb_build_object('g', 'grp' || (g % 1000)) FROM generate_series(1, 20000) g"
    )
    db.execute("VACUUM ANALYZE pg_mq_queue_q")
    for claim, payloads in (
        ("pg_mq_read('q', 3)", ["m1", "m2", "m3"]),
        ("pg_mq_get_msg_text('q', 3)", ["m4", "m5", "m6"]),
        ("pg_mq_pop_bin('q', 3)", [b"m7", b"m8", b"m9"]),
    ):
        plans, rows = plans_of(db, f"SELECT payload FROM {claim}")
        assert [r[0] for r in rows] == payloads
        assert plans and all("pg_mq_fifo_" in p and "Seq Scan" not in p for p in plans), plans
    # The heads are the heads. m1001..m1003 wait for m1..m3 (leased); m1004..m1009 are
    # their groups' heads now (m4..m9 delivered or popped); m1010 on wait for m10..,
    # taken in the same claim.
    rows = db.execute("SELECT payload FROM pg_mq_get_msg_text('q', 1000)").fetchall()
    want = [f"m{i}" for i in range(10, 1001)] + [f"m{i}" for i in range(1004, 1010)]
    assert [r[0] for r in rows] == want


def test_a_group_value_longer_than_an_index_entry_still_sends_and_groups(db):
    """The group index holds the md5 of a group's value: a header value of any length
    (here 6,000 bytes, more than a btree entry may hold) still sends, and its group still
    has one message in flight; setting the header on a queue already holding such a
    message builds the index."""
    big = "x" * 6000
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    for payload in ("b1", "b2"):
        db.execute(
            "SELECT pg_mq_send_message('q', %s::text, headers => jsonb_build_object('g', %s::text))", (payload, big)
        )
    db.execute("SELECT pg_mq_set_queue_config('q', 'fifo_group_header', 'g')")
    assert len(db.execute(FIFO_INDEX).fetchall()) == 1
    db.execute("SELECT pg_mq_send_batch('q', ARRAY['b3', 'b4'], headers => jsonb_build_object('g', %s::text))", (big,))
    db.execute("SELECT pg_mq_send_message('q', 'c1'::text, headers => '{\"g\": \"c\"}')")
    assert [r[0] for r in db.execute("SELECT payload FROM pg_mq_read('q', 10)")] == ["b1", "c1"]
    assert [r[0] for r in db.execute("SELECT payload FROM pg_mq_read_bin('q', 10)")] == []


def test_a_queue_renamed_by_hand_and_a_new_one_of_its_name_both_get_group_indexes(db):
    """The group index is named by the table's oid, so a table renamed by hand keeps its
    index and a new queue of the old name gets one of its own."""
    db.execute("SELECT pg_mq_create_queue('ra', 'text')")
    db.execute("SELECT pg_mq_set_queue_config('ra', 'fifo_group_header', 'g')")
    db.execute("ALTER TABLE pg_mq_queue_ra RENAME TO pg_mq_queue_rb")
    db.execute("UPDATE pg_mq_config_catalog SET channel = 'rb', table_name = 'pg_mq_queue_rb' WHERE channel = 'ra'")
    db.execute("SELECT pg_mq_create_queue('ra', 'text')")
    db.execute("SELECT pg_mq_set_queue_config('ra', 'fifo_group_header', 'g')")
    marks = db.execute(
        "SELECT i.indrelid::regclass::text, obj_description(i.indexrelid, 'pg_class') FROM pg_index i"
        " WHERE obj_description(i.indexrelid, 'pg_class') LIKE 'pg_mq fifo%' ORDER BY 1"
    ).fetchall()
    assert marks == [("pg_mq_queue_ra", "pg_mq fifo_group_header: g"), ("pg_mq_queue_rb", "pg_mq fifo_group_header: g")]


def test_a_fifo_queue_without_its_group_index_still_groups_and_rebuild_restores_it(db):
    """A fifo queue whose group index is missing (dropped by hand, or from a version that
    had none) still gives one message per group, whichever path claims; and
    pg_mq_rebuild_triggers(), the step after an upgrade or a restore, builds the index."""
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("SELECT pg_mq_set_queue_config('q', 'fifo_group_header', 'g')")
    [(name, _mark)] = db.execute(FIFO_INDEX).fetchall()
    db.execute(f'DROP INDEX "{name}"')
    for payload, group in (("a1", "a"), ("a2", "a"), ("b1", "b"), ("a3", "a"), ("b2", "b")):
        db.execute(
            "SELECT pg_mq_send_message('q', %s::text, headers => jsonb_build_object('g', %s::text))", (payload, group)
        )
    assert [r[0] for r in db.execute("SELECT payload FROM pg_mq_read('q', 10)")] == ["a1", "b1"]
    db.execute("SELECT pg_mq_ack('q', ARRAY(SELECT msg_id FROM pg_mq_queue_q WHERE payload IN ('a1', 'b1')))")
    assert [bytes(r[0]) for r in db.execute("SELECT payload FROM pg_mq_pop_bin('q', 10)")] == [b"a2", b"b2"]
    db.execute("SELECT pg_mq_rebuild_triggers()")
    assert [m for _n, m in db.execute(FIFO_INDEX).fetchall()] == ["pg_mq fifo_group_header: g"]
    assert [r[0] for r in db.execute("SELECT payload FROM pg_mq_get_msg_text('q', 10)")] == ["a3"]
