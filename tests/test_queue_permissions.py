"""Who may do what, with real non-superuser roles."""

import psycopg
import pytest
from helpers import as_role, fails


@pytest.fixture
def roles(db):
    for role in ("sender", "receiver", "nobody", "queue_admin"):
        db.execute(f"DROP ROLE IF EXISTS {role}")
        db.execute(f"CREATE ROLE {role} LOGIN")
    yield
    db.execute("DROP OWNED BY sender, receiver, nobody, queue_admin")
    for role in ("sender", "receiver", "nobody", "queue_admin"):
        db.execute(f"DROP ROLE {role}")


@pytest.fixture
def as_(dsn, roles):
    opened = []

    def _as(role):
        conn = psycopg.connect(as_role(dsn, role), autocommit=True)
        opened.append(conn)
        return conn

    yield _as
    for conn in opened:
        conn.close()


def test_sender_can_send_but_not_read(db, as_):
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("SELECT pg_mq_grant('q', 'sender', 'send')")
    sender = as_("sender")
    row = sender.execute("SELECT msg_id, sent_by FROM pg_mq_send_message('q', 'secret'::text)").fetchone()
    assert row[1] == "sender"
    fails(sender, "SELECT * FROM pg_mq_get_msg_text('q', 1)", sqlstate="42501", match="permission denied")
    fails(sender, "SELECT payload FROM pg_mq_queue_q", sqlstate="42501", match="permission denied")
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q WHERE delivered_at IS NULL").fetchone()[0] == 1


def test_receiver_can_read_but_not_send(db, as_):
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("SELECT pg_mq_send_message('q', 'for you'::text)")
    db.execute("SELECT pg_mq_grant('q', 'receiver', 'receive')")
    receiver = as_("receiver")
    assert receiver.execute("SELECT payload FROM pg_mq_get_msg_text('q', 5)").fetchall() == [("for you",)]
    fails(receiver, "SELECT pg_mq_send_message('q', 'x'::text)", sqlstate="42501", match="permission denied")


def test_a_role_without_grants_can_do_nothing(db, as_):
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("SELECT pg_mq_send_message('q', 'x'::text)")
    nobody = as_("nobody")
    fails(nobody, "SELECT pg_mq_send_message('q', 'x'::text)", sqlstate="42501", match="permission denied")
    fails(nobody, "SELECT * FROM pg_mq_get_msg_text('q', 1)", sqlstate="42501", match="permission denied")
    fails(nobody, "SELECT pg_mq_create_queue('mine', 'text')", sqlstate="42501", match="permission denied")
    fails(nobody, "SELECT pg_mq_purge_queue('q')", sqlstate="42501", match="permission denied")
    fails(nobody, "SELECT pg_mq_drop_queue('q', force => true)", sqlstate="42501", match="permission denied")
    fails(nobody, "SELECT pg_mq_grant('q', 'nobody', 'all')", sqlstate="42501", match="permission denied")
    assert db.execute("SELECT count(*) FROM pg_mq_queue_q").fetchone()[0] == 1


def test_revoke_takes_back_each_privilege_separately(db, as_):
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("SELECT pg_mq_grant('q', 'sender', 'all')")
    both = as_("sender")
    both.execute("SELECT pg_mq_send_message('q', 'one'::text)")
    assert both.execute("SELECT payload FROM pg_mq_get_msg_text('q', 1)").fetchall() == [("one",)]
    db.execute("SELECT pg_mq_revoke('q', 'sender', 'receive')")
    both.execute("SELECT pg_mq_send_message('q', 'two'::text)")  # still a sender
    fails(both, "SELECT * FROM pg_mq_get_msg_text('q', 1)", sqlstate="42501", match="permission denied")
    db.execute("SELECT pg_mq_revoke('q', 'sender', 'send')")
    fails(both, "SELECT pg_mq_send_message('q', 'x'::text)", sqlstate="42501", match="permission denied")


def test_a_granted_queue_admin_manages_queues_without_superuser(db, as_):
    for fn in (
        "pg_mq_create_queue(text, text)",
        "pg_mq_drop_queue(text, boolean)",
        "pg_mq_purge_queue(text)",
        "pg_mq_grant(text, name, text)",
    ):
        db.execute(f"GRANT EXECUTE ON FUNCTION {fn} TO queue_admin")
    admin = as_("queue_admin")
    admin.execute("SELECT pg_mq_create_queue('managed', 'text')")
    admin.execute("SELECT pg_mq_grant('managed', 'sender', 'send')")
    as_("sender").execute("SELECT pg_mq_send_message('managed', 'x'::text)")
    assert admin.execute("SELECT pg_mq_purge_queue('managed')").fetchone()[0] == 1
    assert admin.execute("SELECT pg_mq_drop_queue('managed')").fetchone()[0] is True
    # The admin gained no direct rights on queue tables by doing so.
    db.execute("SELECT pg_mq_create_queue('other', 'text')")
    fails(admin, "SELECT * FROM pg_mq_get_msg_text('other', 1)", sqlstate="42501", match="permission denied")


def test_grant_bad_input(db, roles):
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    fails(db, "SELECT pg_mq_grant('q', 'ghost', 'send')", sqlstate="42704", match='role "ghost" does not exist')
    fails(db, "SELECT pg_mq_grant('q', 'sender', 'write')", sqlstate="22023", match='privilege "write"')
    fails(db, "SELECT pg_mq_grant('q', NULL, 'send')", sqlstate="22004", match="role must not be NULL")
    fails(db, "SELECT pg_mq_grant('zz', 'sender', 'send')", sqlstate="42704", match='queue "zz"')


def test_revoking_one_queue_leaves_the_role_working_on_others(db, as_):
    for q in ("qa", "qb"):
        db.execute("SELECT pg_mq_create_queue(%s, 'text')", (q,))
        db.execute("SELECT pg_mq_grant(%s, 'sender', 'send')", (q,))
    sender = as_("sender")
    db.execute("SELECT pg_mq_revoke('qa', 'sender', 'send')")
    fails(sender, "SELECT pg_mq_send_message('qa', 'x'::text)", sqlstate="42501", match="permission denied")
    sender.execute("SELECT pg_mq_send_message('qb', 'still fine'::text)")
    assert db.execute("SELECT payload FROM pg_mq_queue_qb").fetchall() == [("still fine",)]


def test_a_sender_cannot_forge_message_metadata(db, as_):
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("SELECT pg_mq_grant('q', 'sender', 'send')")
    sender = as_("sender")
    for column, value in [
        ("sent_by", "'postgres'"),
        ("msg_id", "1000000"),
        ("sent_at", "'2000-01-01'"),
        ("read_count", "5"),
        ("delivered_at", "now()"),
    ]:
        fails(
            sender,
            f"INSERT INTO pg_mq_queue_q ({column}, payload) VALUES ({value}, 'forged')",
            sqlstate="42501",
            match="permission denied",
        )
    sender.execute("INSERT INTO pg_mq_queue_q (payload, priority) VALUES ('direct', 3)")
    assert db.execute("SELECT sent_by, priority FROM pg_mq_queue_q").fetchall() == [("sender", 3)]
