"""Send options and per-queue settings: delay, priority, dedup, FIFO groups, DLQ, retention, stats."""

import threading
import time

import psycopg
import pytest
from helpers import as_role, fails, wait_notifies


def make(db, channel="q"):
    db.execute("SELECT pg_mq_create_queue(%s, 'text')", (channel,))


def send(db, payload, channel="q", **kw):
    extra = "".join(f", {k} => %({k})s" for k in kw)
    return db.execute(
        f"SELECT msg_id, deduplicated FROM pg_mq_send_message(%(c)s, %(p)s::text{extra})",
        {"c": channel, "p": payload, **kw},
    ).fetchone()


def payloads(db, sql):
    return [r[0] for r in db.execute(sql)]


def config(db, key, value, channel="q"):
    return db.execute("SELECT pg_mq_set_queue_config(%s, %s, %s)", (channel, key, value)).fetchone()[0]


def test_delayed_messages_are_invisible_until_due(db):
    make(db)
    send(db, "later", delay="400 milliseconds")
    send(db, "now")
    assert payloads(db, "SELECT payload FROM pg_mq_read('q', 5)") == ["now"]
    assert payloads(db, "SELECT payload FROM pg_mq_get_msg_text('q', 5)") == []
    time.sleep(0.5)
    assert payloads(db, "SELECT payload FROM pg_mq_read('q', 5)") == ["later"]


@pytest.mark.parametrize("delay", [None, "0", "90 seconds", "2 days 3 hours"])
@pytest.mark.parametrize("dedup_key", [None, "k"])
def test_send_returns_the_row_it_stored(db, delay, dedup_key):
    """What pg_mq_send_message returns (its times filled in by the wrapper for a new
    message) is what the queue table holds, for the text and the polymorphic form,
    in a transaction whose now() is long past and for a live duplicate."""
    make(db)
    db.execute("CREATE TYPE mood AS ENUM ('ok')")
    db.execute("SELECT pg_mq_create_queue('moods', 'public.mood')")
    columns = "msg_id, channel, sent_at, sent_by, visible_at, deduplicated"
    with db.transaction():
        time.sleep(0.05)  # now() (transaction start) is no longer clock_timestamp()
        for i, (channel, payload) in enumerate([("q", "'x'"), ("q", "'y'::text"), ("moods", "'ok'::public.mood")]):
            key = None if dedup_key is None else f"{dedup_key}{i}"
            for attempt in range(2):
                sent = db.execute(
                    f"SELECT {columns} FROM pg_mq_send_message(%s, {payload}, delay => %s, dedup_key => %s)",
                    (channel, delay, key),
                ).fetchone()
                stored = db.execute(
                    f"SELECT msg_id, %s, sent_at, sent_by, visible_at FROM pg_mq_queue_{channel} WHERE msg_id = %s",
                    (channel, sent[0]),
                ).fetchone()
                assert sent[:5] == stored
                assert sent[5] is (attempt == 1 and dedup_key is not None)
                assert sent[3] == db.execute("SELECT session_user::text").fetchone()[0]
                if dedup_key is None:
                    break


def test_negative_delay_and_non_object_headers_are_refused(db):
    make(db)
    fails(db, "SELECT pg_mq_send_message('q', 'x'::text, delay => '-1 s')", sqlstate="22023", match="delay")
    fails(db, "SELECT pg_mq_send_message('q', 'x'::text, headers => '[1]')", sqlstate="22023", match="JSON object")
    fails(db, "SELECT pg_mq_send_message('q', 'x'::text, priority => NULL)", sqlstate="22004", match="priority")
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q").fetchone()[0] == 0


def test_higher_priority_first_then_oldest(db):
    make(db)
    for payload, prio in [("low1", 0), ("high1", 9), ("mid", 5), ("high2", 9), ("low2", 0)]:
        send(db, payload, priority=prio)
    assert payloads(db, "SELECT payload FROM pg_mq_read('q', 10)") == ["high1", "high2", "mid", "low1", "low2"]


def test_priority_ordering_off_means_plain_fifo(db):
    make(db)
    config(db, "priority_ordering", "off")
    send(db, "first", priority=0)
    send(db, "second", priority=9)
    assert payloads(db, "SELECT payload FROM pg_mq_read('q', 10)") == ["first", "second"]


def test_send_batch_returns_ids_in_input_order_with_options(db):
    make(db)
    ids = payloads(db, "SELECT pg_mq_send_batch('q', ARRAY['a', 'b', 'c'], priority => 3, headers => '{\"h\": 1}')")
    assert ids == sorted(ids) and len(ids) == 3
    rows = db.execute("SELECT msg_id, payload, priority, headers FROM pg_mq_read('q', 5)").fetchall()
    assert rows == [(ids[0], "a", 3, {"h": 1}), (ids[1], "b", 3, {"h": 1}), (ids[2], "c", 3, {"h": 1})]
    assert db.execute("SELECT count(*) FROM pg_mq_send_batch('q', '{}'::text[])").fetchone()[0] == 0


def test_dedup_key_returns_the_live_message_instead_of_a_copy(db):
    make(db)
    first = send(db, "once", dedup_key="order-1")
    assert first[1] is False
    assert send(db, "again", dedup_key="order-1") == (first[0], True)
    other = send(db, "other", dedup_key="order-2")
    assert other[0] != first[0]
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q").fetchone()[0] == 2
    # Once acknowledged, the key is free again.
    db.execute("SELECT pg_mq_ack('q', %s)", ([first[0]],))
    assert send(db, "new", dedup_key="order-1")[1] is False


def test_dedup_window_expires(db):
    make(db)
    config(db, "dedup_window", "300 milliseconds")
    first = send(db, "x", dedup_key="k")
    time.sleep(0.4)
    assert send(db, "x", dedup_key="k")[0] != first[0]


def test_concurrent_senders_of_one_dedup_key_store_one_message(connect):
    db = connect()
    make(db)
    a = connect(autocommit=False)
    b = connect()
    first = send(a, "from a", dedup_key="same")
    result = {}
    thread = threading.Thread(target=lambda: result.update(row=send(b, "from b", dedup_key="same")))
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive()  # b waits for a's transaction
    a.commit()
    thread.join(5)
    assert result["row"] == (first[0], True)
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q").fetchone()[0] == 1


def test_fifo_groups_allow_one_message_in_flight_per_group(db):
    make(db)
    config(db, "fifo_group_header", "customer")
    for customer, n in [("a", 1), ("a", 2), ("b", 1), ("a", 3), ("b", 2)]:
        send(db, f"{customer}{n}", headers=f'{{"customer": "{customer}"}}')
    send(db, "loose")  # no group: no constraint
    first = db.execute("SELECT msg_id, payload FROM pg_mq_read('q', 10)").fetchall()
    assert [p for _, p in first] == ["a1", "b1", "loose"]
    assert payloads(db, "SELECT payload FROM pg_mq_read('q', 10)") == []
    db.execute("SELECT pg_mq_ack('q', %s)", ([first[0][0]],))  # finish a1
    assert payloads(db, "SELECT payload FROM pg_mq_read('q', 10)") == ["a2"]


def test_fifo_groups_with_competing_consumers(connect):
    db = connect()
    make(db)
    config(db, "fifo_group_header", "g")
    db.execute(
        "SELECT pg_mq_send_message('q', i::text, headers => jsonb_build_object('g', i % 3))"
        " FROM generate_series(1, 30) i"
    )
    a = connect(autocommit=False)
    b = connect(autocommit=False)
    got_a = a.execute("SELECT headers->>'g' FROM pg_mq_read('q', 10)").fetchall()
    got_b = b.execute("SELECT headers->>'g' FROM pg_mq_read('q', 10)").fetchall()
    groups = [g for (g,) in got_a + got_b]
    assert sorted(groups) == ["0", "1", "2"]  # never two of one group at once
    a.commit()
    b.commit()


def test_message_nacked_max_deliveries_times_lands_in_dlq_exactly_once(db):
    make(db)
    settings = config(db, "max_deliveries", "2")
    assert settings == {"max_deliveries": 2}
    assert db.execute("SELECT payload_type::text FROM pg_mq_config_catalog WHERE channel = 'q_dlq'").fetchone() == (
        "text",
    )
    msg_id = send(db, "poison", headers='{"trace": "t1"}')[0]
    for expected_count in (1, 2):
        row = db.execute("SELECT msg_id, read_count FROM pg_mq_read('q', 1)").fetchone()
        assert row == (msg_id, expected_count)
        db.execute("SELECT pg_mq_nack('q', %s)", ([msg_id],))
    assert db.execute("SELECT * FROM pg_mq_read('q', 1)").fetchall() == []
    dead = db.execute("SELECT msg_id, payload, headers FROM pg_mq_read('q_dlq', 5)").fetchall()
    assert len(dead) == 1
    dead_id, payload, headers = dead[0]
    assert (dead_id, payload, headers["trace"]) == (msg_id, "poison", "t1")
    history = headers["x-dead-letter"]
    assert history["queue"] == "q" and history["read_count"] == 2 and history["reason"] == "max_deliveries"
    # Replay: back to the source queue, ready, read_count reset, history kept.
    db.execute("SELECT pg_mq_nack('q_dlq', %s)", ([dead_id],))
    assert db.execute("SELECT pg_mq_move('q_dlq', 'q')").fetchone()[0] == 1
    again = db.execute("SELECT msg_id, read_count, headers FROM pg_mq_read('q', 1)").fetchone()
    assert again[0] == msg_id and again[1] == 1 and "x-dead-letter" in again[2]


def test_expired_leases_count_towards_max_deliveries(db):
    make(db)
    config(db, "max_deliveries", "1")
    msg_id = send(db, "slow")[0]
    assert db.execute("SELECT msg_id FROM pg_mq_read('q', 1, '100 milliseconds')").fetchone() == (msg_id,)
    time.sleep(0.2)
    assert db.execute("SELECT * FROM pg_mq_read('q', 1)").fetchall() == []
    assert db.execute("SELECT msg_id FROM pg_mq_queue_q_dlq").fetchall() == [(msg_id,)]


def test_custom_dead_letter_queue_and_type_mismatch(db):
    make(db)
    db.execute("SELECT pg_mq_create_queue('graveyard', 'text')")
    db.execute("SELECT pg_mq_create_queue('ints', 'integer')")
    config(db, "dead_letter_queue", "graveyard")
    config(db, "max_deliveries", "1")
    assert db.execute("SELECT count(*) FROM pg_mq_config_catalog WHERE channel = 'q_dlq'").fetchone()[0] == 0
    config(db, "max_deliveries", None)
    fails(
        db,
        "SELECT pg_mq_set_queue_config('ints', 'dead_letter_queue', 'graveyard')",
        sqlstate="42804",
        match='dead-letter queue "graveyard" holds text',
    )
    assert db.execute("SELECT settings FROM pg_mq_config_catalog WHERE channel = 'ints'").fetchone()[0] == {}


@pytest.mark.parametrize(
    ("key", "value", "sqlstate", "match"),
    [
        ("colour", "red", "22023", 'unknown queue setting "colour"'),
        ("max_deliveries", "0", "22023", "integer from 1 to 2147483647"),
        ("max_deliveries", "two", "22023", "integer from 1 to 2147483647"),
        ("max_deliveries", "99999999999999999999", "22023", "integer from 1 to 2147483647"),
        ("max_deliveries", "2147483648", "22023", "integer from 1 to 2147483647"),
        ("retention", "200000 years", "22008", "retention is out of range"),
        ("dedup_window", "178000000 years", "22008", "dedup_window is out of range"),
        ("retention", "soon", "22007", "must be an interval"),
        ("retention", "-1 day", "22023", "must not be negative"),
        ("priority_ordering", "maybe", "22023", "boolean"),
        ("dead_letter_queue", "q", "22023", "its own dead-letter queue"),
        ("fifo_group_header", " ", "22023", "header key"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(db, key, value, sqlstate, match):
    make(db)
    fails(db, "SELECT pg_mq_set_queue_config('q', %s, %s)", (key, value), sqlstate, match)
    assert db.execute("SELECT settings FROM pg_mq_config_catalog WHERE channel = 'q'").fetchone()[0] == {}


def test_dlq_name_too_long_says_what_to_do(db):
    long_name = "x" * 50
    make(db, long_name)
    fails(db, "SELECT pg_mq_set_queue_config(%s, 'max_deliveries', '3')", (long_name,), "42622", "dead-letter queue")


def test_retention_archives_acknowledged_messages_until_maintenance(db):
    make(db)
    config(db, "retention", "300 milliseconds")
    ids = [send(db, p)[0] for p in ("a", "b")]
    db.execute("SELECT pg_mq_read('q', 2)")
    db.execute("SELECT pg_mq_ack('q', %s)", (ids,))
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q WHERE delivered_at IS NOT NULL").fetchone()[0] == 2
    assert db.execute("SELECT pg_mq_maintain('q')").fetchone()[0] == 0  # still within retention
    time.sleep(0.4)
    assert db.execute("SELECT pg_mq_maintain('q', batch_size => 1)").fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q").fetchone()[0] == 0


def test_maintain_expires_rows_delivered_by_the_original_api(db):
    make(db)
    send(db, "old style")
    db.execute("SELECT * FROM pg_mq_get_msg_text('q', 1)")
    send(db, "pending")
    assert db.execute("SELECT pg_mq_maintain()").fetchone()[0] == 1  # retention 0: delivered rows go
    assert payloads(db, "SELECT payload FROM pg_mq_queue_q") == ["pending"]
    fails(db, "SELECT pg_mq_maintain('q', 0)", sqlstate="22023", match="batch_size")


def test_maintenance_loop_procedure_commits_batches(db):
    make(db)
    config(db, "retention", "0")
    db.execute("SELECT pg_mq_send_batch('q', array_agg(i::text)) FROM generate_series(1, 25) i")
    db.execute("SELECT * FROM pg_mq_get_msg_text('q', 25)")
    db.execute("CALL pg_mq_maintenance_loop('0', 1, 10)")
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q").fetchone()[0] == 0


def test_stats_and_queues_view(db):
    make(db)
    config(db, "max_deliveries", "1")
    for p in ("a", "b", "c", "d"):
        send(db, p)
    send(db, "delayed", delay="1 hour")
    db.execute("SELECT pg_mq_read('q', 1, '1 hour')")  # a in flight
    db.execute("SELECT pg_mq_read('q', 1, '1 millisecond')")  # b: lease expires, next read → DLQ
    time.sleep(0.05)
    db.execute("SELECT pg_mq_read('q', 1, '1 hour')")  # c in flight, b dead-lettered
    stats = db.execute(
        "SELECT depth, ready, in_flight, delayed, retained, dead_lettered, oldest_ready_age > '0' FROM pg_mq_stats('q')"
    ).fetchone()
    assert stats == (4, 1, 2, 1, 0, 1, True)
    view = db.execute("SELECT channel, depth FROM pg_mq_queues ORDER BY channel").fetchall()
    assert view == [("q", 4), ("q_dlq", 1)]


def test_receivers_can_dead_letter_and_admin_functions_are_not_public(db, dsn):
    make(db)
    db.execute("DROP ROLE IF EXISTS worker")
    db.execute("CREATE ROLE worker LOGIN")
    try:
        db.execute("SELECT pg_mq_grant('q', 'worker', 'receive')")
        config(db, "max_deliveries", "1")  # DLQ created after the grant: still writable by worker
        msg_id = send(db, "poison")[0]
        with psycopg.connect(as_role(dsn, "worker"), autocommit=True) as worker:
            assert worker.execute("SELECT msg_id FROM pg_mq_read('q', 1)").fetchone() == (msg_id,)
            worker.execute("SELECT pg_mq_nack('q', %s)", ([msg_id],))
            fails(worker, "SELECT * FROM pg_mq_stats('q')", sqlstate="42501", match="permission denied")
            fails(worker, "SELECT * FROM pg_mq_queues", sqlstate="42501", match="permission denied")
            fails(worker, "SELECT pg_mq_set_queue_config('q', 'retention', '1 day')", sqlstate="42501", match="")
            fails(worker, "SELECT pg_mq_maintain()", sqlstate="42501", match="permission denied")
        assert db.execute("SELECT msg_id FROM pg_mq_queue_q_dlq").fetchall() == [(msg_id,)]
    finally:
        db.execute("DROP OWNED BY worker")
        db.execute("DROP ROLE worker")


def test_move_refuses_mismatched_queues(db):
    make(db)
    db.execute("SELECT pg_mq_create_queue('ints', 'integer')")
    fails(db, "SELECT pg_mq_move('q', 'ints')", sqlstate="42804", match="holds text")
    fails(db, "SELECT pg_mq_move('q', 'q')", sqlstate="22023", match="to itself")
    fails(db, "SELECT pg_mq_move('q', 'nope')", sqlstate="42704", match='queue "nope"')


def test_notify_can_be_turned_off_for_polled_queues(connect):
    db = connect()
    listener = connect()
    make(db)
    listener.execute('LISTEN "q"')
    config(db, "notify", "off")
    send(db, "quiet")
    assert list(listener.notifies(timeout=0.3)) == []
    assert db.execute("SELECT pg_mq_rebuild_triggers()").fetchone()[0] == 1  # keeps it off
    send(db, "still quiet")
    assert list(listener.notifies(timeout=0.3)) == []
    config(db, "notify", "on")
    loud = send(db, "loud")[0]
    # The first send after a settings change may wake listeners once more (see messages.py).
    assert str(loud) in [n.payload for n in wait_notifies(listener, 2, timeout=1)]


def test_a_sending_session_sees_queue_changes_made_by_others(connect):
    sender, admin = connect(), connect()
    make(admin)
    assert send(sender, "1")[1] is False  # the sender has now cached the queue
    # Another session turns priorities off: the sender's next message obeys it.
    config(admin, "priority_ordering", "off")
    msg_id = sender.execute("SELECT msg_id FROM pg_mq_send_message('q', 'x'::text, priority => 7)").fetchone()[0]
    assert admin.execute("SELECT priority FROM pg_mq_queue_q WHERE msg_id = %s", (msg_id,)).fetchone()[0] == 0
    # Dropped and re-created with another type: the sender follows.
    admin.execute("SELECT pg_mq_drop_queue('q', force => true)")
    fails(sender, "SELECT pg_mq_send_message('q', 'x'::text)", sqlstate="42704", match='queue "q" does not exist')
    admin.execute("SELECT pg_mq_create_queue('q', 'integer')")
    fails(sender, "SELECT pg_mq_send_message('q', 1.5)", sqlstate="42804", match="holds integer, not numeric")
    sender.execute("SELECT pg_mq_send_message('q', 42)")
    assert admin.execute("SELECT payload FROM pg_mq_queue_q").fetchall() == [(42,)]


def test_a_sender_follows_a_queue_recreated_with_another_type_even_for_text(connect):
    sender, admin = connect(), connect()
    make(admin)
    send(sender, "5")
    admin.execute("SELECT pg_mq_drop_queue('q', force => true)")
    admin.execute("SELECT pg_mq_create_queue('q', 'integer')")
    send(sender, "6")  # text parsed as the new type
    fails(sender, "SELECT pg_mq_send_message('q', 'six'::text)", sqlstate="22P02", match="integer")
    assert admin.execute("SELECT payload FROM pg_mq_queue_q").fetchall() == [(6,)]


def test_queue_recreated_in_the_same_transaction_is_not_confused(connect):
    db = connect(autocommit=False)
    make(db)
    send(db, "a")
    db.execute("SELECT pg_mq_drop_queue('q', force => true)")
    db.execute("SELECT pg_mq_create_queue('q', 'jsonb')")
    fails(db, "SELECT pg_mq_send_message('q', 'not json'::text)", sqlstate="22P02", match="json")
    db.execute("SELECT pg_mq_create_queue('q', 'jsonb')")
    db.execute("""SELECT pg_mq_send_message('q', '{"ok": 1}'::text)""")
    assert db.execute("SELECT payload FROM pg_mq_queue_q").fetchall() == [({"ok": 1},)]
    db.commit()


def test_untyped_literals_and_client_parameters_are_text(db):
    make(db)
    db.execute("SELECT pg_mq_send_message('q', 'untyped literal')")
    db.execute("SELECT pg_mq_send_message('q', %s)", ("python str",))
    assert payloads(db, "SELECT payload FROM pg_mq_read('q', 5)") == ["untyped literal", "python str"]


def test_concurrent_creators_of_one_queue_get_duplicate_object(connect):
    a = connect(autocommit=False)
    b = connect()
    a.execute("SELECT pg_mq_create_queue('race', 'text')")
    outcome = {}

    def second():
        try:
            b.execute("SELECT pg_mq_create_queue('race', 'text')")
            outcome["error"] = None
        except psycopg.Error as exc:
            outcome["error"] = exc.sqlstate

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.3)
    a.commit()
    thread.join(5)
    assert outcome["error"] == "42710"


def test_a_queue_serving_as_dead_letter_queue_cannot_be_dropped(db):
    make(db)
    config(db, "max_deliveries", "2")
    fails(db, "SELECT pg_mq_drop_queue('q_dlq')", sqlstate="55006", match="dead-letter queue of 'q'")
    config(db, "max_deliveries", None)
    assert db.execute("SELECT pg_mq_drop_queue('q_dlq')").fetchone()[0] is True


def test_a_broken_dead_letter_queue_does_not_stop_reads(db, dsn):
    make(db)
    db.execute("DROP ROLE IF EXISTS worker")
    db.execute("CREATE ROLE worker LOGIN")
    try:
        config(db, "max_deliveries", "1")
        db.execute("SELECT pg_mq_grant('q', 'worker', 'receive')")
        db.execute("DROP TABLE pg_mq_queue_q_dlq")  # broken by hand
        stale = send(db, "overdue")[0]
        db.execute("SELECT pg_mq_read('q', 1, '1 millisecond')")
        time.sleep(0.05)
        fresh = send(db, "fresh")[0]
        with psycopg.connect(as_role(dsn, "worker"), autocommit=True) as worker:
            warnings = []
            worker.add_notice_handler(lambda d: warnings.append(d.message_primary))
            got = [r[0] for r in worker.execute("SELECT msg_id FROM pg_mq_read('q', 5)")]
        assert fresh in got
        assert stale not in got  # used up its one delivery: max_deliveries is a promise
        assert any("cannot dead-letter" in w for w in warnings), warnings
        # Nothing is lost: the message that could not be moved is still in its queue.
        assert db.execute("SELECT count(*) FROM pg_mq_queue_q WHERE msg_id = %s", (stale,)).fetchone()[0] == 1
    finally:
        db.execute("DROP OWNED BY worker")
        db.execute("DROP ROLE worker")


def test_get_counts_deliveries_and_respects_fifo_groups(db):
    make(db)
    config(db, "fifo_group_header", "g")
    for p in ("a1", "a2"):
        send(db, p, headers='{"g": "a"}')
    send(db, "b1", headers='{"g": "b"}')
    got = db.execute("SELECT payload FROM pg_mq_get_msg_text('q', 10)").fetchall()
    assert [p for (p,) in got] == ["a1", "b1"]
    assert db.execute("SELECT read_count FROM pg_mq_queue_q WHERE payload = 'a1'").fetchone()[0] == 1
    assert [p for (p,) in db.execute("SELECT payload FROM pg_mq_get_msg_text('q', 10)")] == ["a2"]


@pytest.mark.parametrize(
    "claim",
    [
        "SELECT payload FROM pg_mq_get_msg_text('q', 10)",
        "SELECT convert_from(payload, 'UTF8') FROM pg_mq_get_msg_bin('q', 10)",
        "SELECT payload FROM pg_mq_pop('q', 10)",
        "SELECT convert_from(payload, 'UTF8') FROM pg_mq_pop_bin('q', 10)",
        "SELECT payload FROM pg_mq_read('q', 10)",
        "SELECT convert_from(payload, 'UTF8') FROM pg_mq_read_bin('q', 10)",
    ],
)
def test_a_short_claim_still_takes_one_message_per_fifo_group(db, claim):
    """A claim that gets fewer than it asked for runs a second statement for the rest;
    on a queue with fifo groups that one would see the heads the first statement took as
    gone (delivered or deleted in this transaction) and take the next of each group: it
    has none, so one call takes at most one message of a group, whichever path runs it."""
    make(db)
    config(db, "fifo_group_header", "g")
    for p in ("a1", "a2"):
        send(db, p, headers='{"g": "a"}')
    send(db, "b1", headers='{"g": "b"}')
    assert [p for (p,) in db.execute(claim)] == ["a1", "b1"]


@pytest.mark.parametrize(
    ("sql", "sqlstate", "match"),
    [
        ("SELECT * FROM pg_mq_stats('nope')", "42704", 'queue "nope" does not exist'),
        ("SELECT * FROM pg_mq_stats(NULL)", "22004", "channel must not be NULL"),
        ("SELECT pg_mq_set_queue_config('q', NULL, '1')", "22004", "setting name must not be NULL"),
        ("SELECT pg_mq_maintain('q', NULL)", "22004", "batch_size must not be NULL"),
        ("SELECT pg_mq_maintain('nope')", "42704", 'queue "nope" does not exist'),
        ("CALL pg_mq_maintenance_loop('-1 second', 1)", "22023", "pause must not be negative"),
        ("CALL pg_mq_maintenance_loop(NULL, 1)", "22004", "pause must not be NULL"),
        ("CALL pg_mq_maintenance_loop('0', -1)", "22023", "runs must not be negative"),
        ("CALL pg_mq_maintenance_loop('0', 1, 0)", "22023", "batch_size must be a positive integer"),
    ],
)
def test_bad_upkeep_input_is_refused(db, sql, sqlstate, match):
    make(db)
    fails(db, sql, sqlstate=sqlstate, match=match)
    assert db.execute("SELECT settings FROM pg_mq_config_catalog WHERE channel = 'q'").fetchone()[0] == {}


FIFO_CLAIMS = {
    "get": "SELECT payload FROM pg_mq_get_msg_text('q', %s)",
    "get_bin": "SELECT convert_from(payload, 'UTF8') FROM pg_mq_get_msg_bin('q', %s)",
    "pop": "SELECT payload FROM pg_mq_pop('q', %s)",
    "pop_bin": "SELECT convert_from(payload, 'UTF8') FROM pg_mq_pop_bin('q', %s)",
    "read": "SELECT payload FROM pg_mq_read('q', %s)",
    "read_bin": "SELECT convert_from(payload, 'UTF8') FROM pg_mq_read_bin('q', %s)",
}


def _one_big_group_ahead(db):
    """2,500 messages of group a, then b1, b2 of group b: a claim's first n + 1,000
    candidates are all group a's."""
    make(db)
    config(db, "fifo_group_header", "g")
    db.execute(
        "SELECT pg_mq_send_batch('q', array_agg('a' || i ORDER BY i), headers => '{\"g\": \"a\"}')"
        " FROM generate_series(1, 2500) i"
    )
    for p in ("b1", "b2"):
        send(db, p, headers='{"g": "b"}')


@pytest.mark.parametrize("claim", FIFO_CLAIMS)
@pytest.mark.parametrize("n", [10, 1001])  # 1001: the Python path
def test_a_large_fifo_group_does_not_hide_the_groups_behind_it(db, claim, n):
    """A claim looks at its first n + 1,000 candidates in delivery order. When one group
    filled them, it took that group's head and came back short although group b's head
    was ready behind them: now it takes the heads of the groups past its candidates too,
    one message a group."""
    _one_big_group_ahead(db)
    assert payloads(db, FIFO_CLAIMS[claim] % n) == ["a1", "b1"]


@pytest.mark.parametrize("claim", FIFO_CLAIMS)
def test_a_fifo_group_in_flight_does_not_hold_back_the_others(connect, claim):
    """While group a's head is in flight (leased by one consumer, or taken by another in a
    transaction still open), nothing of group a may go out, and a claim found nothing:
    all its candidates were group a's. Group b's head goes out, and only it."""
    db = connect()
    _one_big_group_ahead(db)
    holder = connect(autocommit=False)
    assert payloads(holder, "SELECT payload FROM pg_mq_get_msg_text('q', 1)") == ["a1"]
    assert payloads(db, FIFO_CLAIMS[claim] % 10) == ["b1"]
    holder.rollback()
    leased = payloads(db, "SELECT payload FROM pg_mq_read('q', 1, '1 hour')")
    if claim.startswith("read"):  # b1 is leased too: a1 and b1 in flight, nothing is ready
        assert leased == ["a1"]
        assert payloads(db, FIFO_CLAIMS[claim] % 10) == []
    else:  # b1 went out: a1 leased, b2 is b's head now
        assert leased == ["a1"]
        assert payloads(db, FIFO_CLAIMS[claim] % 10) == ["b2"]


def test_group_heads_past_the_candidates_keep_priority_order(db):
    """With priority_ordering on, the candidates are in priority order: group a's 2,500
    messages at priority 5 fill them, and group b's head at priority 0 comes after them."""
    make(db)
    config(db, "fifo_group_header", "g")
    config(db, "priority_ordering", "on")
    db.execute(
        "SELECT pg_mq_send_batch('q', array_agg('a' || i ORDER BY i), priority => 5, headers => '{\"g\": \"a\"}')"
        " FROM generate_series(1, 2500) i"
    )
    send(db, "b1", headers='{"g": "b"}')
    send(db, "c1", headers='{"g": "c"}', priority=9)
    assert payloads(db, "SELECT payload FROM pg_mq_read('q', 10)") == ["c1", "a1", "b1"]


def test_group_heads_right_at_the_end_of_the_candidates(db):
    """The 1,010th candidate of a claim of 10 is b1, the last one it looks at; c1 is the
    first past them: b1 comes from the candidates, c1 from past them, each once."""
    make(db)
    config(db, "fifo_group_header", "g")
    db.execute(
        "SELECT pg_mq_send_batch('q', array_agg('a' || i ORDER BY i), headers => '{\"g\": \"a\"}')"
        " FROM generate_series(1, 1009) i"
    )
    for p, g in (("b1", "b"), ("b2", "b"), ("c1", "c"), ("d1", "d")):
        send(db, p, headers=f'{{"g": "{g}"}}')
    assert payloads(db, "SELECT payload FROM pg_mq_read('q', 3)") == ["a1", "b1", "c1"]


def test_a_second_consumer_gets_nothing_of_the_groups_a_first_one_holds(connect):
    """One consumer takes a1 and b1 (b1 from past its candidates) in a transaction still
    open: a second one must not take b2, the next of a group in flight."""
    db = connect()
    _one_big_group_ahead(db)
    holder = connect(autocommit=False)
    assert payloads(holder, "SELECT payload FROM pg_mq_get_msg_text('q', 10)") == ["a1", "b1"]
    assert payloads(db, "SELECT payload FROM pg_mq_get_msg_text('q', 10)") == []
    holder.commit()
    assert payloads(db, "SELECT payload FROM pg_mq_get_msg_text('q', 10)") == ["a2", "b2"]


def test_a_delayed_message_past_the_candidates_does_not_hold_back_its_group(db):
    """c0 was sent with a delay before c1: c1 heads group c until c0 is due, also when
    c1 lies past the candidates; once c1 is leased, nothing more of c goes out."""
    _one_big_group_ahead(db)
    send(db, "c0", headers='{"g": "c"}', delay="1 hour")
    send(db, "c1", headers='{"g": "c"}')
    assert payloads(db, "SELECT payload FROM pg_mq_read('q', 10, '1 hour')") == ["a1", "b1", "c1"]
    assert payloads(db, "SELECT payload FROM pg_mq_read('q', 10, '1 hour')") == []
