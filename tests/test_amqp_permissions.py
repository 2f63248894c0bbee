"""Who may do what: publishing roles never see broker passwords or other messages."""

from __future__ import annotations

import itertools
import uuid
from typing import TYPE_CHECKING

import psycopg
import pytest
from helpers import as_role, fails

if TYPE_CHECKING:
    from conftest import Rabbit

_n = itertools.count()


def test_publishing_role_publishes_on_commit(publisher: psycopg.Connection, rabbit: Rabbit, broker: int) -> None:
    queue = rabbit.queue()
    publisher.execute("SELECT amqp.publish(1, '', %s, 'from a plain role')", (queue,))
    publisher.execute("SELECT amqp.autonomous_publish(1, '', %s, 'autonomous')", (queue,))
    assert sorted(b for _, b in rabbit.drain(queue, 2)) == ["autonomous", "from a plain role"]


def test_seed_002_trigger_as_a_plain_role(
    db: psycopg.Connection, publisher: psycopg.Connection, rabbit: Rabbit, broker: int
) -> None:
    queue = rabbit.queue()
    publisher.execute("CREATE TABLE systemmetadata (guid text PRIMARY KEY)")
    publisher.execute(
        "CREATE FUNCTION sysmeta_amqp() RETURNS trigger AS $$ BEGIN"
        " PERFORM amqp.publish(1, '', %s, row_to_json(NEW)::text, 1, 'application/json', '', TG_OP);"
        " RETURN NULL; END $$ LANGUAGE plpgsql".replace("%s", f"'{queue}'")
    )
    publisher.execute(
        "CREATE TRIGGER sysmeta_amqp AFTER INSERT OR UPDATE ON systemmetadata"
        " FOR EACH ROW EXECUTE PROCEDURE sysmeta_amqp()"
    )
    publisher.execute("INSERT INTO systemmetadata VALUES ('g1')")
    assert [b for _, b in rabbit.drain(queue, 1)] == ['{"guid":"g1"}']


def test_publishing_role_cannot_read_passwords_or_the_outbox(publisher: psycopg.Connection, broker: int) -> None:
    fails(publisher, "SELECT password FROM amqp.broker", sqlstate="42501", match="permission denied")
    fails(publisher, "SELECT * FROM amqp.broker", sqlstate="42501", match="permission denied")
    assert publisher.execute("SELECT broker_id, host FROM amqp.broker").fetchone()[0] == 1
    fails(publisher, "SELECT * FROM amqp.outbox", sqlstate="42501", match="permission denied")
    fails(
        publisher,
        "INSERT INTO amqp.outbox (broker_id, exchange, routing_key, message, message_id) VALUES (1, '', 'q', 'm', 'x')",
        sqlstate="42501",
        match="permission denied",
    )
    assert publisher.execute("SELECT outbox_depth FROM amqp.status WHERE broker_id = 1").fetchone() == (0,)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT amqp.flush()",
        "CALL amqp.relay(run_for => '1 second')",
        "SELECT amqp.retry_failed()",
        "SELECT amqp.exchange_declare(1, 'x', 'direct', false, false)",
        "SELECT amqp._send_transaction(1)",
    ],
)
def test_administration_is_not_for_publishing_roles(publisher: psycopg.Connection, broker: int, sql: str) -> None:
    fails(publisher, sql, sqlstate="42501", match="permission denied")


def test_role_without_schema_usage_cannot_publish(db: psycopg.Connection, dsn: str, broker: int) -> None:
    role = f"amqp_none_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE ROLE {role} LOGIN")
    try:
        with psycopg.connect(as_role(dsn, role), autocommit=True) as conn:
            fails(conn, "SELECT amqp.publish(1, '', 'q', 'm')", sqlstate="42501", match="schema amqp")
    finally:
        db.execute(f"DROP ROLE {role}")


def test_granted_relay_role_can_flush(db: psycopg.Connection, dsn: str, rabbit: Rabbit, broker: int) -> None:
    role = f"amqp_relay_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE ROLE {role} LOGIN")
    db.execute(f"GRANT USAGE ON SCHEMA amqp TO {role}")
    db.execute(f"GRANT EXECUTE ON FUNCTION amqp.flush(integer, integer, boolean) TO {role}")
    db.execute(
        f"GRANT EXECUTE ON PROCEDURE amqp.relay(integer, integer, double precision, interval, boolean) TO {role}"
    )
    db.execute(f"GRANT EXECUTE ON FUNCTION amqp._flush_batch(integer, integer) TO {role}")
    queue = rabbit.queue()
    db.execute("UPDATE amqp.broker SET strict = true")
    db.execute("SELECT amqp.publish(1, '', %s, 'relayed')", (queue,))
    try:
        with psycopg.connect(as_role(dsn, role), autocommit=True) as conn:
            conn.execute("CALL amqp.relay(run_for => '20 seconds', exit_when_empty => true)")
        assert [b for _, b in rabbit.drain(queue, 1)] == ["relayed"]
    finally:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")
