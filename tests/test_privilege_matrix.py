"""Who may use which object of the extension: the README's policy as an explicit table.

Role kinds: none, sender of q, receiver of q, queue admin, AMQP publisher, relay
operator, NOTIFY bridge. Objects: every function, procedure, table, view and sequence the extension
owns (from the catalog: a new one fails test_every_extension_object_is_classified until
it is added below), plus the queue table and dead-letter queue table of queue q.
Anything not listed for a role kind must be refused, and actually fails with 42501.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from helpers import as_role

SCHEMA = "public"  # the template database creates the extension in public

# ---- the objects ------------------------------------------------------------------------

PUBLISH = (
    "amqp.publish(integer,character varying,character varying,character varying,integer,character varying,"
    "character varying,character varying,jsonb,character varying,character varying,integer,boolean)"
)
AUTONOMOUS = (
    "amqp.autonomous_publish(integer,character varying,character varying,character varying,integer,"
    "character varying,character varying,character varying,jsonb,character varying,character varying,integer,boolean)"
)
CHECK = (
    "amqp._check_message(integer,character varying,character varying,character varying,integer,integer,"
    "character varying,jsonb)"
)
# Caller's-rights functions everyone may EXECUTE: the queue table's privileges decide.
QUEUE_PUBLIC = {
    "pg_mq_send_message(text,anyelement,interval,integer,text,jsonb)",
    "pg_mq_send_message(text,text,interval,integer,text,jsonb)",
    "pg_mq_send_batch(text,anyarray,interval,integer,jsonb)",
    "pg_mq_get_msg_text(name,bigint)",
    "pg_mq_get_msg_bin(name,integer)",
    "pg_mq_get_msg_id_text(name,bigint)",
    "pg_mq_get_msg_id_bin(name,bigint)",
    "pg_mq_read(text,integer,interval,interval)",
    "pg_mq_read_bin(text,integer,interval,interval)",
    "pg_mq_ack(text,bigint[])",
    "pg_mq_nack(text,bigint[],interval)",
    "pg_mq_extend(text,bigint[],interval)",
    "pg_mq_pop(text,integer)",
    "pg_mq_pop_bin(text,integer)",
    "pg_mq_move(text,text,integer,bigint[])",
    # internal halves and the trigger, called by the above with the caller's rights
    "_pg_mq_send(text,oid,text,interval,integer,text,jsonb)",
    "_pg_mq_send_dispatch(text,text,oid,interval,integer,jsonb)",  # calls the generated send functions
    "_pg_mq_send_batch_dispatch(text,anyarray,oid,interval,integer,jsonb)",  # and the batch ones
    "_pg_mq_get_dispatch(integer,timestamp with time zone,text)",  # the claims' generated statements
    "_pg_mq_pop_dispatch(integer,timestamp with time zone,text)",
    "_pg_mq_read_dispatch(integer,interval,timestamp with time zone,text,interval)",
    "_pg_mq_ack_dispatch(bigint[],text)",  # and pg_mq_ack's, with its Python half:
    "_pg_mq_ack(text,bigint[])",
    "_pg_mq_send_batch_sql(text,oid,integer,integer,interval,integer,jsonb)",
    "_pg_mq_get_sql(text,integer,boolean,boolean)",
    "_pg_mq_read_sql(text,integer,interval,interval,boolean,boolean)",
    "_pg_mq_pop_sql(text,integer,boolean,boolean)",
    "pg_mq_notify_trigger()",
    # SECURITY DEFINER, public by design (README Permissions; sql/messages.sql)
    "_pg_mq_dead_letter(text,bigint[])",
    "_pg_mq_release_dedup(text,text)",
    # the DROP EXTENSION guard: an event trigger function (not callable directly), which
    # must stay executable because it fires on every role's DROP EXTENSION
    "_pg_mq_guard_drop()",
    # change events: the sql_drop event trigger function, and
    "pg_mq_change_trigger()",  # hand-written watches: sends with the rights of whoever changes the table
    "_pg_mq_watch_dropped()",
    # the NOTIFY -> AMQP bridge: pg_notify's drop-in, for everyone as pg_notify is; SECURITY
    # DEFINER, it sends only what pg_mq_bridge_channel says, where it says (README bridge)
    "pg_mq_notify(text,text)",
    "_pg_mq_watch_partitions()",  # the ddl_command_end event trigger giving new partitions their triggers
}
QUEUE_ADMIN = {
    # watching a table: granted deliberately, like queue administration (README Change events)
    "pg_mq_watch_notify(regclass,text,text[],text,text[],text[],text[])",
    "pg_mq_watch_queue(regclass,text,text[],text,text[],text[],text[])",
    "pg_mq_watch_amqp(regclass,integer,text,text,text[],text,text[],text[],text[])",
    "pg_mq_watch_pgq(regclass,text,text[],text,text[],text[],text[])",
    "pg_mq_unwatch(regclass,text)",
    "pg_mq_watch_snapshot(regclass,text,integer)",
    "pg_mq_create_queue(text,text)",
    "pg_mq_create_queue(text,regtype)",
    "pg_mq_drop_queue(text,boolean)",
    "pg_mq_purge_queue(text)",
    "pg_mq_rebuild_triggers()",
    "pg_mq_grant(text,name,text)",
    "pg_mq_revoke(text,name,text)",
    "pg_mq_set_queue_config(text,text,text)",
    "pg_mq_stats(text)",
    "pg_mq_maintain(text,integer)",
    "pg_mq_maintenance_loop(interval,integer,integer)",
}
# Mapping NOTIFY channels to AMQP decides where anyone's NOTIFY goes: granted deliberately.
BRIDGE_ADMIN = {"pg_mq_bridge_map(text,integer,text,text,integer)", "pg_mq_bridge_unmap(text)"}
AMQP_PUBLISH = {PUBLISH, AUTONOMOUS, "amqp.disconnect(integer)", CHECK}
AMQP_RELAY = {
    "amqp.exchange_declare(integer,character varying,character varying,boolean,boolean,boolean)",
    "amqp.flush(integer,integer,boolean)",
    "amqp.retry_failed(integer)",
    "amqp.relay(integer,integer,double precision,interval,boolean)",
    "amqp._flush_batch(integer,integer)",  # what the relay calls (README: relay grants)
}
AMQP_INTERNAL = {
    "amqp._send_transaction(bigint)",
    "amqp._outbox_on_commit()",
    "amqp._check_headers(jsonb)",
    "_pg_mq_watch_sync_partitions()",  # called by the event trigger _pg_mq_watch_partitions (SECURITY DEFINER)
    "_pg_mq_watch_fire()",  # no one may attach it to a table by hand (CREATE TRIGGER checks EXECUTE)
    "_pg_mq_notify(text,text)",  # called by pg_mq_notify (SECURITY DEFINER) as the owner
    "_pg_mq_catalog_changed()",  # the catalog's trigger; only the owner writes the catalog
}  # superuser (owner) only

QUEUE = "pg_mq_queue_q"
DLQ = "pg_mq_queue_q_dlq"
QUEUE_COLUMNS = [
    "msg_id", "sent_at", "sent_by", "delivered_at", "payload", "visible_at", "read_count", "priority",
    "dedup_key", "headers",
]  # fmt: skip
BROKER_COLUMNS = [
    "broker_id", "host", "port", "vhost", "username", "password", "tls", "tls_ca_file", "heartbeat",
    "connect_timeout", "confirm_timeout", "strict", "mandatory", "failover_order",
]  # fmt: skip
RELATIONS = {
    "pg_mq_config_catalog",
    "pg_mq_migration",  # no privileges for anyone but the owner
    "pg_mq_queues",
    "pg_mq_msg_id_seq",
    "amqp.broker",
    "amqp.broker_broker_id_seq",
    "amqp.outbox",
    "amqp.outbox_id_seq",
    "amqp.status",
    "amqp._commit_probe",  # internal: no privileges for anyone but the owner
    "amqp._outbox_rest",  # internal: publish()'s rows without a trigger event; read through amqp.outbox
    "amqp._broker_flags",
    "pg_mq_watch",  # read through pg_mq_watches; no privileges for anyone but the owner
    "pg_mq_watch_watch_id_seq",
    "pg_mq_watches",
    "pg_mq_bridge_channel",  # names exchanges and routing keys: the bridge's role only (README bridge)
}

# ---- the policy ----------------------------------------------------------------------------
# Per role kind: functions it may EXECUTE, and (relation, column or None, privilege) it has.

SENDER_TABLE = {
    *((QUEUE, c, "INSERT") for c in ("payload", "visible_at", "priority", "dedup_key", "headers")),
    *((QUEUE, c, "SELECT")
      for c in ("msg_id", "sent_at", "sent_by", "delivered_at", "visible_at", "priority", "dedup_key")),
    ("pg_mq_msg_id_seq", None, "USAGE"),
}  # fmt: skip
RECEIVER_TABLE = {
    *((QUEUE, c, "SELECT") for c in QUEUE_COLUMNS),
    (QUEUE, None, "SELECT"),
    (QUEUE, None, "DELETE"),
    *((QUEUE, c, "UPDATE") for c in ("delivered_at", "visible_at", "read_count")),
}
EVERYONE_TABLE = {("pg_mq_config_catalog", None, "SELECT"), *(("pg_mq_config_catalog", c, "SELECT") for c in (
    "channel", "table_name", "payload_type", "settings", "created_at", "created_by", "send_call")),
    ("pg_mq_watches", None, "SELECT"), *(("pg_mq_watches", c, "SELECT") for c in (
    "watch_id", "watched_table", "kind", "target", "broker_id", "routing_key", "operations", "payload", "columns",
    "ignore_columns", "key_columns", "created_by", "created_at"))}  # fmt: skip
AMQP_TABLE = {
    *(("amqp.broker", c, "SELECT") for c in BROKER_COLUMNS if c != "password"),
    # last_error names other publishers' exchanges and routing keys: administrators only
    *(("amqp.status", c, "SELECT") for c in ("broker_id", "hosts", "outbox_depth", "failed", "oldest_kept_at",
                                              "oldest_kept_age", "last_attempt_at")),
}  # fmt: skip
BRIDGE_TABLE = {("pg_mq_bridge_channel", None, "SELECT")} | {
    ("pg_mq_bridge_channel", c, "SELECT")
    for c in ("channel", "broker_id", "exchange", "routing_key", "delivery_mode", "created_at", "created_by")
}
QUEUES_VIEW = {("pg_mq_queues", None, "SELECT")} | {
    ("pg_mq_queues", c, "SELECT")
    for c in ("channel", "payload_type", "depth", "ready", "in_flight", "delayed", "retained", "dead_lettered",
              "oldest_ready_age", "sent_total", "removed_total", "settings")
}  # fmt: skip

POLICY: dict[str, dict[str, set]] = {
    "none": {"execute": QUEUE_PUBLIC, "table": EVERYONE_TABLE},
    "sender": {"execute": QUEUE_PUBLIC, "table": EVERYONE_TABLE | SENDER_TABLE},
    "receiver": {"execute": QUEUE_PUBLIC, "table": EVERYONE_TABLE | RECEIVER_TABLE},
    "queue_admin": {"execute": QUEUE_PUBLIC | QUEUE_ADMIN, "table": EVERYONE_TABLE | QUEUES_VIEW},
    "publisher": {"execute": QUEUE_PUBLIC | AMQP_PUBLISH, "table": EVERYONE_TABLE | AMQP_TABLE},
    "relay": {"execute": QUEUE_PUBLIC | AMQP_PUBLISH | AMQP_RELAY, "table": EVERYONE_TABLE | AMQP_TABLE},
    "bridge": {"execute": QUEUE_PUBLIC | AMQP_PUBLISH, "table": EVERYONE_TABLE | AMQP_TABLE | BRIDGE_TABLE},
}
ALL_FUNCTIONS = QUEUE_PUBLIC | QUEUE_ADMIN | AMQP_PUBLISH | AMQP_RELAY | AMQP_INTERNAL | BRIDGE_ADMIN


def _kind_sql(sig: str) -> str:
    return (
        "PROCEDURE"
        if sig in ("pg_mq_maintenance_loop(interval,integer,integer)",) or sig.startswith("amqp.relay(")
        else "FUNCTION"
    )


def _grants(kind: str, role: str) -> list[str]:
    """What an administrator runs to make ``role`` this kind, as the README says."""
    if kind == "sender":
        return [f"SELECT pg_mq_grant('q', '{role}', 'send')"]
    if kind == "receiver":
        return [f"SELECT pg_mq_grant('q', '{role}', 'receive')"]
    if kind == "queue_admin":
        return [f"GRANT EXECUTE ON {_kind_sql(f)} {f} TO {role}" for f in sorted(QUEUE_ADMIN)] + [
            f"GRANT SELECT ON pg_mq_queues TO {role}"
        ]
    if kind == "publisher":
        return [f"GRANT USAGE ON SCHEMA amqp TO {role}"]
    if kind == "bridge":
        return [f"GRANT USAGE ON SCHEMA amqp TO {role}", f"GRANT SELECT ON pg_mq_bridge_channel TO {role}"]
    if kind == "relay":
        return [f"GRANT USAGE ON SCHEMA amqp TO {role}"] + [
            f"GRANT EXECUTE ON {_kind_sql(f)} {f} TO {role}" for f in sorted(AMQP_RELAY)
        ]
    return []


@pytest.fixture
def setup(db: psycopg.Connection) -> None:
    db.execute("SELECT pg_mq_create_queue('q', 'text')")
    db.execute("SELECT pg_mq_set_queue_config('q', 'max_deliveries', '3')")  # creates q_dlq
    db.execute("SELECT pg_mq_send_message('q', 'secret payload'::text, headers => '{\"token\": \"secret\"}')")


@pytest.fixture
def role_of(db: psycopg.Connection, dsn: str, setup: None) -> Iterator:
    made: list[tuple[str, psycopg.Connection]] = []

    def _make(kind: str) -> tuple[str, psycopg.Connection]:
        role = f"pm_{kind}_{uuid.uuid4().hex[:8]}"
        db.execute(f"CREATE ROLE {role} LOGIN")
        for statement in _grants(kind, role):
            db.execute(statement)
        conn = psycopg.connect(as_role(dsn, role), autocommit=True)
        made.append((role, conn))
        return role, conn

    yield _make
    for role, conn in made:
        conn.close()
        db.execute(f"SELECT pg_mq_revoke('q', '{role}', 'all')")
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


def _extension_objects(db: psycopg.Connection) -> tuple[set[str], set[str]]:
    functions = {
        r[0]
        for r in db.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass"
            " AND d.objid = p.oid AND d.deptype = 'e' JOIN pg_extension e ON e.oid = d.refobjid"
            " AND e.extname = 'pg_message_queue'"
        )
    }
    relations = {
        r[0]
        for r in db.execute(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_depend d ON d.classid = 'pg_class'::regclass"
            " AND d.objid = c.oid AND d.deptype = 'e' JOIN pg_extension e ON e.oid = d.refobjid"
            " AND e.extname = 'pg_message_queue'"
        )
    }
    return functions, relations


def test_every_extension_object_is_classified(db):
    functions, relations = _extension_objects(db)
    assert functions == ALL_FUNCTIONS, "classify new or removed functions in POLICY"
    assert relations == RELATIONS, "classify new or removed relations in POLICY"


def _effective(db: psycopg.Connection, role: str) -> tuple[set[str], set[tuple]]:
    """Every EXECUTE and table/column/sequence privilege ``role`` can really use (schema USAGE included)."""
    functions, relations = _extension_objects(db)
    execute = {
        sig
        for sig in functions
        if db.execute(
            "SELECT has_function_privilege(%s, %s::regprocedure, 'EXECUTE') AND has_schema_privilege(%s,"
            " (SELECT pronamespace FROM pg_proc WHERE oid = %s::regprocedure), 'USAGE')",
            (role, sig, role, sig),
        ).fetchone()[0]
    }
    table: set[tuple] = set()
    for rel in sorted(relations | {QUEUE, DLQ}):
        kind, nsp = db.execute(
            "SELECT relkind::text, relnamespace FROM pg_class WHERE oid = %s::regclass", (rel,)
        ).fetchone()
        if not db.execute("SELECT has_schema_privilege(%s, %s::oid, 'USAGE')", (role, nsp)).fetchone()[0]:
            continue
        if kind == "S":
            for priv in ("USAGE", "SELECT", "UPDATE"):
                if db.execute("SELECT has_sequence_privilege(%s, %s, %s)", (role, rel, priv)).fetchone()[0]:
                    table.add((rel, None, priv))
            continue
        for priv in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"):
            if db.execute("SELECT has_table_privilege(%s, %s, %s)", (role, rel, priv)).fetchone()[0]:
                table.add((rel, None, priv))
        for (column,) in db.execute(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (rel,),
        ).fetchall():
            for priv in ("SELECT", "INSERT", "UPDATE", "REFERENCES"):
                if db.execute("SELECT has_column_privilege(%s, %s, %s, %s)", (role, rel, column, priv)).fetchone()[0]:
                    table.add((rel, column, priv))
    return execute, table


@pytest.mark.parametrize("kind", list(POLICY))
def test_each_role_kind_has_exactly_the_documented_privileges(db, role_of, kind):
    role, _conn = role_of(kind)
    execute, table = _effective(db, role)
    assert sorted(execute - POLICY[kind]["execute"]) == [], "EXECUTE the README does not give"
    assert sorted(POLICY[kind]["execute"] - execute) == [], "EXECUTE the README promises is missing"
    assert sorted(table - POLICY[kind]["table"], key=str) == [], "privileges the README does not give"
    assert sorted(POLICY[kind]["table"] - table, key=str) == [], "privileges the README promises are missing"


def _null_call(db: psycopg.Connection, sig: str) -> str:
    name, args = db.execute(
        "SELECT p.oid::regproc::text, coalesce((SELECT string_agg('NULL::' || format_type(t, NULL), ', ' ORDER BY n)"
        " FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, n)), '')"
        " FROM pg_proc p WHERE p.oid = %s::regprocedure",
        (sig,),
    ).fetchone()
    args = args.replace("NULL::anyelement", "NULL::text").replace("NULL::anyarray", "NULL::text[]")
    return f"CALL {name}({args})" if _kind_sql(sig) == "PROCEDURE" else f"SELECT {name}({args})"


@pytest.mark.parametrize("kind", list(POLICY))
def test_what_a_role_kind_may_not_execute_fails_with_42501(db, role_of, kind):
    functions, _ = _extension_objects(db)
    role, conn = role_of(kind)
    for sig in sorted(functions - POLICY[kind]["execute"]):
        try:
            conn.execute(_null_call(db, sig))
        except psycopg.Error as exc:
            assert exc.sqlstate == "42501", f"{sig}: {exc}"
            continue
        # The planner folds a STRICT function called with NULLs to NULL before checking
        # EXECUTE; the privilege itself must still be missing.
        strict, allowed = db.execute(
            "SELECT proisstrict, has_function_privilege(%s, oid, 'EXECUTE') FROM pg_proc WHERE oid = %s::regprocedure",
            (role, sig),
        ).fetchone()
        assert strict and not allowed, f"{kind} may execute {sig}"


# ---- what the table says, tried as the attacker would -------------------------------------


def _refused(conn: psycopg.Connection, statement: str) -> None:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(statement)
    assert info.value.sqlstate == "42501", f"{statement}: {info.value}"


def test_a_sender_cannot_read_payloads_or_headers(role_of):
    _role, conn = role_of("sender")
    conn.execute("SELECT pg_mq_send_message('q', 'mine'::text)")
    for statement in (
        f"SELECT payload FROM {QUEUE}",
        f"SELECT headers FROM {QUEUE}",
        f"SELECT * FROM {QUEUE}",
        "SELECT * FROM pg_mq_read('q', 1)",
        "SELECT * FROM pg_mq_get_msg_text('q', 1)",
        "SELECT * FROM pg_mq_pop('q')",
        f"SELECT payload FROM {DLQ}",
        f"UPDATE {QUEUE} SET payload = 'x'",
        f"DELETE FROM {QUEUE}",
        "SELECT * FROM pg_mq_queues",
        "SELECT * FROM pg_mq_stats('q')",
    ):
        _refused(conn, statement)


def test_a_receiver_cannot_insert_or_rewrite_messages(db, role_of):
    _role, conn = role_of("receiver")
    for statement in (
        "SELECT pg_mq_send_message('q', 'forged'::text)",
        f"INSERT INTO {QUEUE} (payload) VALUES ('forged')",
        f"UPDATE {QUEUE} SET payload = 'forged'",
        f"UPDATE {QUEUE} SET sent_by = 'postgres'",
        f"UPDATE {QUEUE} SET msg_id = msg_id + 1000",
        f"UPDATE {QUEUE} SET headers = '{{}}'",
        f"SELECT * FROM {DLQ}",
        f"INSERT INTO {DLQ} (payload) VALUES ('forged')",
        "SELECT pg_mq_purge_queue('q')",
    ):
        _refused(conn, statement)
    assert db.execute(f"SELECT payload, sent_by FROM {QUEUE}").fetchall() == [("secret payload", "postgres")]


@pytest.mark.parametrize("kind", ["none", "sender", "receiver", "queue_admin", "publisher", "relay", "bridge"])
def test_nobody_but_superusers_reads_broker_passwords_or_the_outbox(db, role_of, kind):
    db.execute("INSERT INTO amqp.broker (broker_id, host, port, password) VALUES (1, '127.0.0.1', 1, 'hunter2')")
    _role, conn = role_of(kind)
    for statement in ("SELECT password FROM amqp.broker", "SELECT * FROM amqp.broker", "SELECT * FROM amqp.outbox",
                      "SELECT routing_key FROM amqp.outbox"):  # fmt: skip
        _refused(conn, statement)


def test_a_publisher_cannot_read_another_publishers_routing_keys_from_the_outbox(db, role_of):
    db.execute("INSERT INTO amqp.broker (broker_id, host, port, connect_timeout) VALUES (1, '127.0.0.1', 1, 1)")
    _alice, alice = role_of("publisher")
    _bob, bob = role_of("publisher")
    alice.execute("SELECT amqp.publish(1, 'alice-exchange', 'alice.secret.key', 'm')")  # broker down: kept
    assert db.execute("SELECT count(*) FROM amqp.outbox").fetchone()[0] == 1
    _refused(bob, "SELECT routing_key FROM amqp.outbox")
    seen = bob.execute(
        "SELECT row_to_json(s)::text FROM (SELECT broker_id, hosts, outbox_depth, failed FROM amqp.status) s"
    ).fetchall()
    assert seen and all("alice.secret.key" not in r[0] and "alice-exchange" not in r[0] for r in seen), seen


def test_a_publisher_cannot_read_another_publishers_routing_keys_from_amqp_status(db, role_of, broker):
    """A message the broker returns (unroutable, mandatory) is kept with its error, which names its routing key."""
    _alice, alice = role_of("publisher")
    _bob, bob = role_of("publisher")
    alice.execute("SELECT amqp.publish(%s, '', 'alice.secret.key', 'm', mandatory => true)", (broker,))
    assert db.execute("SELECT count(*) FROM amqp.outbox WHERE failed").fetchone()[0] == 1
    _refused(bob, "SELECT last_error FROM amqp.status")
    seen = bob.execute(
        "SELECT row_to_json(s)::text FROM (SELECT broker_id, hosts, outbox_depth, failed FROM amqp.status) s"
    ).fetchall()
    assert seen and all("alice.secret.key" not in r[0] for r in seen), seen
