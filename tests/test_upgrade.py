"""Upgrades: every earlier release updates to the current one, to the same schema as a
fresh install, and keeps what it held (queues, messages, leases, grants, outbox rows).

The earlier releases' scripts and Python packages come from git history
(`make install-prior`, run by `make test`).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pytest
from helpers import as_role, fails

ROOT = Path(__file__).resolve().parent.parent
_REGISTRY = json.loads((ROOT / "sql/releases.json").read_text())["pg_message_queue"]
RELEASES = sorted(_REGISTRY)
OURS = sorted(v for v, info in _REGISTRY.items() if "commit" in info)  # not the original's
CURRENT = next(
    line.split("'")[1]
    for line in (ROOT / "pg_message_queue.control").read_text().splitlines()
    if line.startswith("default_version")
)

# Everything that makes up the extension's schema, as comparable text.
SNAPSHOT = {
    "members": """
        SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
        FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
        WHERE d.deptype = 'e' AND e.extname = 'pg_message_queue' ORDER BY 1""",
    "functions": """
        SELECT p.oid::regprocedure::text, pg_catalog.pg_get_function_arguments(p.oid),
            pg_catalog.pg_get_function_result(p.oid), p.prokind, p.prosecdef, p.proconfig::text,
            p.provolatile, p.proisstrict, pg_catalog.md5(p.prosrc), p.proacl::text,
            pg_catalog.obj_description(p.oid, 'pg_proc')
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_depend d
            ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_message_queue' ORDER BY 1""",
    "columns": """
        SELECT c.oid::regclass::text, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
            pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), a.attacl::text, a.attnum
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
        WHERE n.nspname IN ('public', 'amqp') ORDER BY 1, a.attnum""",
    "relations": """
        SELECT c.oid::regclass::text, c.relkind, c.relacl::text, c.reloptions::text,
            pg_catalog.obj_description(c.oid, 'pg_class'),
            CASE WHEN c.relkind = 'v' THEN pg_catalog.pg_get_viewdef(c.oid) END
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('public', 'amqp') AND c.relkind <> 'i' ORDER BY 1""",
    "indexes": """
        SELECT pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_class c ON c.oid = i.indrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('public', 'amqp') ORDER BY 1""",
    "constraints": """
        SELECT co.conrelid::regclass::text, co.contypid::regtype::text, pg_catalog.pg_get_constraintdef(co.oid)
        FROM pg_catalog.pg_constraint co JOIN pg_catalog.pg_namespace n ON n.oid = co.connamespace
        WHERE n.nspname IN ('public', 'amqp') ORDER BY 1, 2, 3""",
    "triggers": """
        SELECT pg_catalog.pg_get_triggerdef(t.oid) FROM pg_catalog.pg_trigger t
        JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('public', 'amqp') AND NOT t.tgisinternal ORDER BY 1""",
    "types": """
        SELECT t.oid::regtype::text, t.typtype, pg_catalog.obj_description(t.oid, 'pg_type')
        FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname IN ('public', 'amqp') AND t.typtype IN ('c', 'd', 'e', 'r')
            AND NOT EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c')
        ORDER BY 1""",
    "schemas": """
        SELECT n.nspname, n.nspacl::text, pg_catalog.obj_description(n.oid, 'pg_namespace')
        FROM pg_catalog.pg_namespace n WHERE n.nspname IN ('public', 'amqp') ORDER BY 1""",
    "event_triggers": "SELECT evtname, evtevent, evttags::text, evtfoid::regproc::text FROM pg_event_trigger ORDER BY 1",  # noqa: E501
    "migrations": "SELECT name FROM pg_mq_migration ORDER BY 1",
}


def snapshot(dsn: str) -> dict[str, list[tuple]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {key: conn.execute(sql).fetchall() for key, sql in SNAPSHOT.items()}


class Scratch:
    """Databases with no extension and LOGIN roles, made for one test; the databases
    are dropped first, then the roles (which own objects in them)."""

    def __init__(self, pg_server) -> None:
        self.pg_server = pg_server
        self.databases: list[str] = []
        self.roles: list[str] = []

    def database(self) -> str:
        name = f"u_{uuid.uuid4().hex[:10]}"
        self.pg_server.admin(f"CREATE DATABASE {name}")
        self.databases.append(name)
        return self.pg_server.dsn_for(name)

    def role(self) -> str:
        name = f"r_{uuid.uuid4().hex[:10]}"
        self.pg_server.admin(f"CREATE ROLE {name} LOGIN")
        self.roles.append(name)
        return name

    def close(self) -> None:
        for name in self.databases:
            self.pg_server.admin(f"DROP DATABASE {name} WITH (FORCE)")
        for name in self.roles:
            self.pg_server.admin(f"DROP ROLE {name}")


@pytest.fixture
def scratch(pg_server):
    made = Scratch(pg_server)
    yield made
    made.close()


def test_the_current_version_has_no_upgrade_script_from_itself():
    assert CURRENT not in RELEASES
    assert RELEASES, "sql/releases.json lists no earlier release"


@pytest.mark.parametrize("prior", RELEASES)
def test_upgrading_a_release_gives_the_schema_of_a_fresh_install(scratch, prior):
    fresh, upgraded = scratch.database(), scratch.database()
    with psycopg.connect(fresh, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_message_queue CASCADE")
    with psycopg.connect(upgraded, autocommit=True) as conn:
        conn.execute(f"CREATE EXTENSION pg_message_queue VERSION '{prior}' CASCADE")
        conn.execute("CREATE EXTENSION IF NOT EXISTS plpython3u")  # the original did not need it
        conn.execute("ALTER EXTENSION pg_message_queue UPDATE")
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_message_queue'").fetchone() == (
            CURRENT,
        )
    want, got = snapshot(fresh), snapshot(upgraded)
    for key in SNAPSHOT:
        assert got[key] == want[key], key


@pytest.mark.parametrize("prior", OURS)
def test_an_upgrade_keeps_queues_messages_leases_grants_and_kept_amqp_messages(scratch, rabbit, prior):
    dsn = scratch.database()
    sender, receiver = scratch.role(), scratch.role()
    with psycopg.connect(dsn, autocommit=True) as old:
        old.execute(f"CREATE EXTENSION pg_message_queue VERSION '{prior}' CASCADE")
        old.execute("SELECT pg_mq_create_queue('jobs', 'jsonb')")
        old.execute("SELECT pg_mq_set_queue_config('jobs', 'max_deliveries', '3')")
        old.execute("SELECT pg_mq_grant('jobs', %s, 'send')", (sender,))
        old.execute("SELECT pg_mq_grant('jobs', %s, 'receive')", (receiver,))
        ids = [
            old.execute("SELECT msg_id FROM pg_mq_send_message('jobs', %s::jsonb, dedup_key => %s)", (p, k)).fetchone()[
                0
            ]
            for p, k in (('{"n": 1}', "k1"), ('{"n": 2}', None), ('{"n": 3}', None))
        ]
        leased = old.execute("SELECT msg_id FROM pg_mq_read('jobs', 1, '1 hour')").fetchone()[0]
        # A broker nobody listens on: the message stays in the outbox, committed.
        broker = old.execute(
            "INSERT INTO amqp.broker (host, port, connect_timeout) VALUES ('127.0.0.1', 9, 0.5) RETURNING broker_id"
        ).fetchone()[0]
        old.execute("SELECT amqp.publish(%s, '', 'upgrade-q', 'kept across the upgrade')", (broker,))
        assert old.execute("SELECT count(*) FROM amqp.outbox").fetchone()[0] == 1
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER EXTENSION pg_message_queue UPDATE")
    with psycopg.connect(dsn, autocommit=True) as new:  # a new backend loads the new package
        assert leased == ids[0]
        got = new.execute("SELECT msg_id, payload FROM pg_mq_read('jobs', 10)").fetchall()
        assert [r[0] for r in got] == ids[1:]  # the lease taken before the upgrade still holds
        assert new.execute("SELECT * FROM pg_mq_ack('jobs', %s)", ([leased],)).fetchall() == [(leased,)]
        again = new.execute(
            "SELECT msg_id, deduplicated FROM pg_mq_send_message('jobs', '{}'::jsonb, dedup_key => 'k1')"
        )
        assert again.fetchone()[1] is False  # k1's message was acknowledged: the key is free
        dup = new.execute("SELECT msg_id, deduplicated FROM pg_mq_send_message('jobs', '{}'::jsonb, dedup_key => 'k1')")
        assert dup.fetchone()[1] is True
        q = rabbit.queue()
        new.execute("UPDATE amqp.broker SET port = %s, connect_timeout = 3 WHERE broker_id = %s", (rabbit.port, broker))
        new.execute("UPDATE amqp.outbox SET routing_key = %s", (q,))
        assert new.execute("SELECT amqp.flush()").fetchone()[0] == 1
        assert [body for _props, body in rabbit.drain(q, 1)] == ["kept across the upgrade"]
    with psycopg.connect(as_role(dsn, sender), autocommit=True) as conn:
        conn.execute("SELECT pg_mq_send_message('jobs', '{\"from\": \"sender\"}'::jsonb)")
    with psycopg.connect(as_role(dsn, receiver), autocommit=True) as conn:
        assert len(conn.execute("SELECT * FROM pg_mq_read('jobs', 10)").fetchall()) >= 1
        fails(conn, "UPDATE pg_mq_queue_jobs SET payload = '{}'", sqlstate="42501", match="permission denied")
        fails(conn, "INSERT INTO pg_mq_queue_jobs_dlq (payload) VALUES ('{}')", sqlstate="42501", match="permission")


def test_drop_extension_is_refused_while_queues_exist_and_removes_everything_otherwise(scratch):
    dsn = scratch.database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_message_queue CASCADE")
        conn.execute("SELECT pg_mq_create_queue('q', 'text')")
        message = fails(conn, "DROP EXTENSION pg_message_queue CASCADE", sqlstate="2BP01", match="queue")
        assert "1 queue(s) exist: 'q'" in message
        assert conn.execute("SELECT to_regclass('pg_mq_queue_q') IS NOT NULL").fetchone()[0]
        conn.execute("SELECT pg_mq_drop_queue('q')")
        conn.execute("DROP EXTENSION pg_message_queue")
        left = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname IN ('public', 'amqp') AND c.relname LIKE 'pg_mq%'"
        ).fetchone()[0]
        assert left == 0
        assert conn.execute("SELECT count(*) FROM pg_event_trigger").fetchone()[0] == 0
        assert conn.execute("SELECT to_regnamespace('amqp')").fetchone()[0] is None


def test_the_original_0_2_1_upgrades_in_place_with_its_queues_messages_and_channels(scratch):
    dsn = scratch.database()
    reader = scratch.role()
    with psycopg.connect(dsn, autocommit=True) as old:
        old.execute("CREATE EXTENSION pg_message_queue VERSION '0.2.1'")
        old.execute("SELECT pg_mq_create_queue('orders', 'text')")
        old.execute("SELECT pg_mq_create_queue('blobs', 'bytea')")
        sent = [
            old.execute("SELECT msg_id FROM pg_mq_send_message('orders', %s::text)", (p,)).fetchone()[0]
            for p in ("first", "second", "third")
        ]
        old.execute("SELECT msg_id FROM pg_mq_send_message('blobs', '\\x0102'::bytea)")
        assert [r[0] for r in old.execute("SELECT msg_id FROM pg_mq_get_msg_text('orders', 1)")] == sent[:1]
        old.execute(f"GRANT SELECT, UPDATE ON pg_mq_queue_orders TO {reader}")  # as its README says to
        message = fails(old, "ALTER EXTENSION pg_message_queue UPDATE", sqlstate="42704", match="plpython3u")
        assert "not installed" in message
        old.execute("CREATE EXTENSION plpython3u")
        old.execute("ALTER EXTENSION pg_message_queue UPDATE")
    with psycopg.connect(dsn, autocommit=True) as listener, psycopg.connect(dsn, autocommit=True) as new:
        listener.execute('LISTEN "orders"')
        assert new.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_message_queue'").fetchone() == (
            CURRENT,
        )
        # Undelivered messages are still there, in order; delivered ones stay delivered.
        rows = new.execute("SELECT msg_id, payload FROM pg_mq_get_msg_text('orders', 5)").fetchall()
        assert rows == [(sent[1], "second"), (sent[2], "third")]
        assert new.execute("SELECT payload FROM pg_mq_get_msg_id_text('orders', %s)", (sent[0],)).fetchone() == (
            "first",
        )
        # Ids continue from the original's sequence, and the channel still wakes listeners.
        later = new.execute("SELECT msg_id FROM pg_mq_send_message('orders', 'fourth')").fetchone()[0]
        assert later > max(sent)
        assert [n.channel for n in listener.notifies(timeout=5, stop_after=1)] == ["orders"]
        # The new features work on the old queues.
        new.execute("SELECT pg_mq_set_queue_config('orders', 'max_deliveries', '2')")
        leased = new.execute("SELECT msg_id FROM pg_mq_read('orders', 1, '1 hour')").fetchone()[0]
        assert leased == later
        assert new.execute("SELECT * FROM pg_mq_ack('orders', %s)", ([leased],)).fetchall() == [(leased,)]
        dup = "SELECT deduplicated FROM pg_mq_send_message('orders', 'x', dedup_key => 'k')"
        assert [new.execute(dup).fetchone()[0] for _ in range(2)] == [False, True]
        assert new.execute("SELECT payload FROM pg_mq_get_msg_bin('blobs', 1)").fetchone() == (b"\x01\x02",)
        names = {r[0] for r in new.execute("SELECT proname FROM pg_proc WHERE proname LIKE 'pg_mq_%'")}
        assert "pg_mq_trigger_notify" not in names and "pg_mq_get_msg_raw" not in names
        assert new.execute("SELECT to_regclass('pg_mq_base')").fetchone()[0] is None
    # The grants its users gave on queue tables stay theirs.
    with psycopg.connect(as_role(dsn, reader), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_mq_queue_orders").fetchone()[0] >= 3


PG_AMQP_SCHEMA = """
CREATE SCHEMA amqp;
CREATE TABLE amqp.broker (
  broker_id serial not null,
  host text not null,
  port integer not null default 5672,
  vhost text,
  username text,
  password text,
  primary key(broker_id, host, port)
);
INSERT INTO amqp.broker (host, port, vhost, username, password)
VALUES ('mq1.example', 5672, '/', 'app', 'secret'), ('mq2.example', 5673, '/', 'app', 'secret');
"""


def test_a_database_with_pg_amqp_gets_the_exact_steps_to_move_its_brokers(scratch):
    dsn = scratch.database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(PG_AMQP_SCHEMA)
        with pytest.raises(psycopg.Error) as info:
            conn.execute("CREATE EXTENSION pg_message_queue CASCADE")
        err = info.value
        assert err.sqlstate == "42P06"
        assert 'schema "amqp" already exists' in err.diag.message_primary
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_message_queue'").fetchone() == (0,)
        # The hint's steps, run as given (the schema here was made by hand, not by CREATE EXTENSION amqp).
        steps = err.diag.message_hint.removeprefix("Move the brokers across: ")
        for step in (s.strip() for s in steps.split(";")):
            if step.startswith("DROP EXTENSION amqp"):
                step = "DROP SCHEMA amqp CASCADE"
            if step:
                conn.execute(step)
        brokers = conn.execute("SELECT broker_id, host, port, username, password FROM amqp.broker ORDER BY 1")
        assert brokers.fetchall() == [
            (1, "mq1.example", 5672, "app", "secret"),
            (2, "mq2.example", 5673, "app", "secret"),
        ]
        added = conn.execute("INSERT INTO amqp.broker (host) VALUES ('mq3.example') RETURNING broker_id").fetchone()
        assert added == (3,)
        assert conn.execute("SELECT to_regclass('public.pg_amqp_brokers')").fetchone() == (None,)
