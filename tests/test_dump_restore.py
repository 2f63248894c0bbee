"""pg_dump keeps queues: tables, messages, catalog rows, settings, the id sequence, triggers."""

import subprocess

import psycopg
from helpers import wait_notifies

PG_DUMP = "/usr/lib/postgresql/15/bin/pg_dump"


def test_dump_and_restore_keeps_queues_working(db, dsn, pg_server):
    db.execute("SELECT pg_mq_create_queue('kept', 'jsonb')")
    db.execute("""SELECT pg_mq_send_message('kept', '{"n": 1}'::jsonb, headers => '{"h": "x"}')""")
    db.execute("SELECT pg_mq_set_queue_config('kept', 'max_deliveries', '3')")
    last_id = db.execute("""SELECT msg_id FROM pg_mq_send_message('kept', '{"n": 2}'::jsonb)""").fetchone()[0]
    dump = subprocess.run([PG_DUMP, "--no-owner", dsn], check=True, capture_output=True, text=True).stdout

    pg_server.admin("DROP DATABASE IF EXISTS restored")
    pg_server.admin("CREATE DATABASE restored")
    try:
        target = pg_server.dsn_for("restored")
        subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target],
            input=dump,
            check=True,
            capture_output=True,
            text=True,
        )
        with psycopg.connect(target, autocommit=True) as conn, psycopg.connect(target, autocommit=True) as listener:
            catalog = conn.execute("SELECT channel, settings FROM pg_mq_config_catalog ORDER BY channel").fetchall()
            assert catalog == [("kept", {"max_deliveries": 3}), ("kept_dlq", {})]
            rows = conn.execute("SELECT payload, headers FROM pg_mq_read('kept', 5)").fetchall()
            assert rows == [('{"n": 1}', {"h": "x"}), ('{"n": 2}', None)]  # payload as text
            listener.execute('LISTEN "kept"')
            new_id = conn.execute("SELECT msg_id FROM pg_mq_send_message('kept', '{}'::jsonb)").fetchone()[0]
            assert new_id > last_id  # the shared sequence continued
            assert len(wait_notifies(listener, 1)) == 1
            assert conn.execute("SELECT pg_mq_rebuild_triggers()").fetchone()[0] == 2
    finally:
        pg_server.admin("DROP DATABASE restored WITH (FORCE)")
