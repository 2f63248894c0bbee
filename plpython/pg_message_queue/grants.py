"""Who may send to and receive from a queue: pg_mq_grant and pg_mq_revoke."""

from __future__ import annotations

from . import _db
from .queues import Queue, check_channel, get

PRIVILEGES = ("send", "receive", "all")


def _check_grant(channel: str | None, role: str | None, privilege: str | None) -> tuple[Queue, str, str]:
    queue = get(check_channel(channel))
    if role is None:
        _db.fail("22004", "role must not be NULL")
    found = _db.run("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", ("name",), (role,))
    if not found:
        _db.fail("42704", f'role "{role}" does not exist')
    if privilege is None:
        _db.fail("22004", "privilege must not be NULL", hint=f"One of {', '.join(PRIVILEGES)}.")
    if privilege not in PRIVILEGES:
        _db.fail(
            "22023",
            f'privilege "{privilege}" is not one of {", ".join(PRIVILEGES)}',
        )
    return queue, _db.ident(role), privilege


# What a sender may see of its own rows: INSERT ... RETURNING and the dedup check
# need these columns, never the payload or headers.
_SENDER_COLUMNS = "msg_id, sent_at, sent_by, delivered_at, visible_at, priority, dedup_key"
# What a sender may set: msg_id, sent_at, sent_by, read_count and delivered_at
# always take their defaults, so a sender cannot forge them.
_SENDER_INSERT = "payload, visible_at, priority, dedup_key, headers"
# What consuming changes: delivery state only. A receiver can never rewrite a
# message (payload, headers, msg_id, sent_by, sent_at, priority, dedup_key).
_RECEIVER_UPDATE = "delivered_at, visible_at, read_count"


def _statements(queue: Queue, role: str, privilege: str, grant: bool) -> list[str]:
    verb, prep = ("GRANT", "TO") if grant else ("REVOKE", "FROM")
    out = []
    if privilege in ("send", "all"):
        out.append(f"{verb} INSERT ({_SENDER_INSERT}), SELECT ({_SENDER_COLUMNS}) ON {queue.table} {prep} {role}")
        if grant:  # one sequence serves every queue: never revoked per queue
            out.append(f"GRANT USAGE ON SEQUENCE {_db.schema()}.pg_mq_msg_id_seq TO {role}")
    if privilege in ("receive", "all"):
        if grant:
            out.append(f"GRANT SELECT, DELETE, UPDATE ({_RECEIVER_UPDATE}) ON {queue.table} TO {role}")
        else:  # a table-wide REVOKE also takes back every column grant
            out.append(f"REVOKE SELECT, UPDATE, DELETE ON {queue.table} FROM {role}")
    if grant:
        out.insert(0, f"GRANT USAGE ON SCHEMA {_db.schema()} TO {role}")
    return out


def grant(channel: str | None, role: str | None, privilege: str | None) -> bool:
    """Let ``role`` send to and/or receive from a queue."""
    queue, role_sql, privilege = _check_grant(channel, role, privilege)
    for statement in _statements(queue, role_sql, privilege, grant=True):
        _db.ddl(statement)
    return True


def revoke(channel: str | None, role: str | None, privilege: str | None) -> bool:
    """Take back what :func:`grant` gave (the schema's USAGE stays)."""
    queue, role_sql, privilege = _check_grant(channel, role, privilege)
    for statement in _statements(queue, role_sql, privilege, grant=False):
        _db.ddl(statement)
    if privilege == "receive":
        # Revoking table-wide SELECT also drops column grants: a sender keeps its own.
        still_sends = _db.run(
            "SELECT pg_catalog.has_column_privilege($1, $2, 'payload', 'INSERT') AS ok",
            ("name", "text"),
            (role, queue.table),
        )[0]["ok"]
        if still_sends:
            _db.ddl(f"GRANT SELECT ({_SENDER_COLUMNS}) ON {queue.table} TO {role_sql}")
    return True
