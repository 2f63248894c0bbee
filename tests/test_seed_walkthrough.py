"""The original pg_message_queue README's walkthrough, verbatim."""

from helpers import wait_notifies


def test_seed_walkthrough_create_listen_send_read(connect):
    admin = connect()
    listener = connect()
    row = admin.execute("SELECT * FROM pg_mq_create_queue('test_queue', 'text');").fetchone()
    assert row[0] == "test_queue"
    listener.execute('LISTEN "test_queue";')

    cur = admin.execute("SELECT * FROM pg_mq_send_message('test_queue', 'Read This'::text);")
    sent = cur.fetchone()
    # The original's pg_mq_base columns first, in its order; then what we add.
    assert [c.name for c in cur.description][:4] == ["msg_id", "sent_at", "sent_by", "delivered_at"]
    assert sent[2] == "postgres" and sent[3] is None
    notes = wait_notifies(listener, 1)
    assert [(n.channel, n.payload) for n in notes] == [("test_queue", str(sent[0]))]

    got = admin.execute("SELECT * FROM pg_mq_get_msg_text('test_queue', 10)").fetchall()
    assert [(r[0], r[2], r[3] is not None, r[4]) for r in got] == [(sent[0], "postgres", True, "Read This")]
    # Delivered messages are not handed out again.
    assert admin.execute("SELECT * FROM pg_mq_get_msg_bin('test_queue', 10)").fetchall() == []


def test_seed_catalog_and_table_layout(db):
    db.execute("SELECT pg_mq_create_queue('test_queue', 'text')")
    catalog = db.execute("SELECT channel, table_name, payload_type::text FROM pg_mq_config_catalog").fetchall()
    assert catalog == [("test_queue", "pg_mq_queue_test_queue", "text")]
    columns = [
        r[0]
        for r in db.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'pg_mq_queue_test_queue'::regclass"
            " AND attnum > 0 AND NOT attisdropped"
        )
    ]
    for needed in ("msg_id", "sent_at", "sent_by", "delivered_at", "payload"):
        assert needed in columns


def test_all_queues_share_one_msg_id_sequence(db):
    db.execute("SELECT pg_mq_create_queue('a', 'text')")
    db.execute("SELECT pg_mq_create_queue('b', 'text')")
    ids = [
        db.execute("SELECT msg_id FROM pg_mq_send_message(%s, 'x'::text)", (q,)).fetchone()[0]
        for q in ("a", "b", "a", "b")
    ]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert ids[1] == ids[0] + 1
