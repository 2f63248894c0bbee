"""Every function that changes something leaves nothing behind when its transaction rolls back."""

import pytest

SNAPSHOT = (
    "SELECT (SELECT json_agg(c ORDER BY channel) FROM pg_mq_config_catalog c)::text,"
    " (SELECT json_agg(q ORDER BY msg_id) FROM pg_mq_queue_q q)::text,"
    " (SELECT count(*) FROM pg_class WHERE relname LIKE 'pg_mq_queue_%' AND relkind = 'r'),"
    # what Python generates: the queues' send functions and every dispatcher
    " (SELECT json_agg(p.proname || ' ' || md5(p.prosrc) ORDER BY p.proname) FROM pg_proc p"
    "  WHERE p.proname ~ '^_pg_mq_(send_(batch_)?[0-9a-f]{32}|[a-z_]+_dispatch)$')"
)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT pg_mq_create_queue('other', 'text')",
        "SELECT pg_mq_drop_queue('q', force => true)",
        "SELECT pg_mq_purge_queue('q')",
        "SELECT pg_mq_send_message('q', 'x'::text)",
        "SELECT pg_mq_send_batch('q', ARRAY['x', 'y'])",
        "SELECT * FROM pg_mq_get_msg_text('q', 1)",
        "SELECT * FROM pg_mq_get_msg_id_bin('q', (SELECT min(msg_id) FROM pg_mq_queue_q))",
        "SELECT * FROM pg_mq_read('q', 2)",
        "SELECT * FROM pg_mq_pop('q', 2)",
        "SELECT * FROM pg_mq_ack('q', (SELECT array_agg(msg_id) FROM pg_mq_queue_q))",
        "SELECT * FROM pg_mq_nack('q', (SELECT array_agg(msg_id) FROM pg_mq_queue_q), '1 hour')",
        "SELECT * FROM pg_mq_extend('q', (SELECT array_agg(msg_id) FROM pg_mq_queue_q), '2 hours')",
        "SELECT pg_mq_move('q', 'q2')",
        "SELECT pg_mq_set_queue_config('q', 'max_deliveries', '3')",
        "SELECT pg_mq_set_queue_config('q', 'notify', 'off')",
        "SELECT pg_mq_maintain()",
        "SELECT pg_mq_rebuild_triggers()",
    ],
)
def test_rollback_undoes_every_change(connect, sql):
    db = connect()
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("SELECT pg_mq_create_queue('q2', 'text')")
    db.execute("SELECT pg_mq_send_batch('q', ARRAY['a', 'b', 'c'])")
    db.execute("SELECT pg_mq_read('q', 1, '1 hour')")  # one in flight
    db.execute("SELECT pg_mq_get_msg_text('q', 1)")  # one delivered (and kept until maintenance)
    before = db.execute(SNAPSHOT).fetchone()
    generated = [name_and_hash.split()[0] for name_and_hash in before[3]]
    assert len(generated) == 10  # 6 dispatchers, 2 send functions for each of the 2 queues
    tx = connect(autocommit=False)
    tx.execute(sql).fetchall()
    tx.rollback()
    assert db.execute(SNAPSHOT).fetchone() == before
    triggers = db.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'pg_mq_notify' ORDER BY tgrelid").fetchall()
    assert triggers == [("O",), ("O",)]
