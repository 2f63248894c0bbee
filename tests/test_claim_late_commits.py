"""Messages that commit out of msg_id order: a claim hands out every committed ready
message, whatever msg_ids it has handed out or seen purged before. Sequences give ids in
the order senders ask, not the order they commit; a reader must never step past a message
that is still to commit, however many higher ids it consumed meanwhile."""

import random
import threading

import psycopg
import pytest

CLAIMS = {
    "get_msg_text": "SELECT payload FROM pg_mq_get_msg_text('q', %s)",
    "pop": "SELECT payload FROM pg_mq_pop('q', %s)",
    "read": "SELECT payload FROM pg_mq_read('q', %s)",
}


def consume_all(conn: psycopg.Connection, claim: str, batch: int = 50) -> list[str]:
    got: list[str] = []
    while True:
        rows = [r[0] for r in conn.execute(claim, (batch,))]
        if not rows:
            return got
        got += rows


def late_sender(connect, send: str) -> psycopg.Connection:
    """A connection holding an uncommitted send with a msg_id below everything sent after it."""
    conn = connect(autocommit=False)
    conn.execute(send)
    return conn


SENDS = {
    "send_message": "SELECT pg_mq_send_message('q', 'late'::text)",
    "send_batch": "SELECT pg_mq_send_batch('q', ARRAY['late'])",
    "direct insert": "INSERT INTO pg_mq_queue_q (payload) VALUES ('late')",
}


@pytest.mark.parametrize("claim", CLAIMS)
@pytest.mark.parametrize("send", ["send_message", "send_batch", "direct insert"])
def test_a_late_commit_below_consumed_ids_is_claimed_at_once(db, connect, claim, send):
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    late = late_sender(connect, SENDS[send])
    consumer = connect()
    for _ in range(4):  # several bursts sent and consumed past the late message's id
        db.execute("SELECT pg_mq_send_batch('q', array_agg('m' || i)) FROM generate_series(1, 300) i")
        assert len(consume_all(consumer, CLAIMS[claim])) == 300
    late.commit()
    assert [r[0] for r in consumer.execute(CLAIMS[claim], (10,))] == ["late"]


@pytest.mark.parametrize("claim", CLAIMS)
@pytest.mark.parametrize("purge", ["SELECT pg_mq_purge_queue('q')", "DELETE FROM pg_mq_queue_q"])
def test_a_late_commit_after_a_purge_is_claimed_at_once(db, connect, claim, purge):
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    consumer = connect()
    late = late_sender(connect, SENDS["send_message"])
    db.execute("SELECT pg_mq_send_batch('q', array_agg('m' || i)) FROM generate_series(1, 2000) i")
    consume_all(consumer, CLAIMS[claim], 500)
    db.execute(purge)
    db.execute("SELECT pg_mq_send_batch('q', array_agg('n' || i)) FROM generate_series(1, 10) i")
    assert len(consume_all(consumer, CLAIMS[claim])) == 10
    late.commit()
    assert [r[0] for r in consumer.execute(CLAIMS[claim], (10,))] == ["late"]


@pytest.mark.parametrize("claim", CLAIMS)
def test_an_id_taken_from_the_sequence_before_the_insert_is_claimed_at_once(db, connect, claim):
    """A writer may take msg_id from the queue's sequence first (no xid yet) and insert
    later: the row still has to be found by the very next claim after it commits."""
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    late = connect(autocommit=False)
    msg_id = late.execute("SELECT nextval('pg_mq_msg_id_seq')").fetchone()[0]
    consumer = connect()
    for _ in range(3):
        db.execute("SELECT pg_mq_send_batch('q', array_agg('m' || i)) FROM generate_series(1, 300) i")
        assert len(consume_all(consumer, CLAIMS[claim])) == 300
    late.execute("INSERT INTO pg_mq_queue_q (msg_id, payload) VALUES (%s, 'late')", (msg_id,))
    late.commit()
    assert [r[0] for r in consumer.execute(CLAIMS[claim], (10,))] == ["late"]


def test_concurrent_senders_committing_out_of_order_lose_no_message_to_a_busy_consumer(db, connect):
    """Eight senders whose transactions stay open for random short times; one consumer
    claiming all along. When the senders are done, one claim returns everything left."""
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    stop = threading.Event()
    sent: list[str] = []
    lock = threading.Lock()

    def sender(k: int) -> None:
        rnd = random.Random(k)
        conn = connect(autocommit=False)
        for i in range(40):
            body = f"s{k}-{i}"
            conn.execute("SELECT pg_mq_send_message('q', %s::text)", (body,))
            conn.execute("SELECT pg_sleep(%s)", (rnd.random() * 0.02,))
            conn.commit()
            with lock:
                sent.append(body)
        conn.close()

    got: list[str] = []
    consumer = connect()

    def consume() -> None:
        while not stop.is_set():
            got.extend(r[0] for r in consumer.execute("SELECT payload FROM pg_mq_get_msg_text('q', 20)"))

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(8)]
    reader = threading.Thread(target=consume)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    reader.join()
    rest = [r[0] for r in consumer.execute("SELECT payload FROM pg_mq_get_msg_text('q', 100000)")]
    assert sorted(got + rest) == sorted(sent)
    assert len(got) + len(rest) == 320
