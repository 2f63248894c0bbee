"""Pure rules for channel names (no database access, unit-tested with no server)."""

from __future__ import annotations

from dataclasses import dataclass

TABLE_PREFIX = "pg_mq_queue_"
NAMEDATALEN_MAX = 63  # PostgreSQL's identifier limit in bytes (NAMEDATALEN - 1)
MAX_CHANNEL_BYTES = NAMEDATALEN_MAX - len(TABLE_PREFIX)


@dataclass(frozen=True)
class NameProblem:
    """Why a channel name is refused: an SQLSTATE and a sentence."""

    sqlstate: str
    message: str
    hint: str | None = None


def channel_problem(channel: str | None) -> NameProblem | None:
    """Return why ``channel`` cannot name a queue, or None when it can.

    Any printable text is allowed (quotes, spaces, capitals, ``;``, unicode):
    every use is quoted. Refused: NULL, empty, control characters, and names
    whose table name ``pg_mq_queue_<channel>`` would pass 63 bytes, because
    PostgreSQL would silently truncate it.
    """
    if channel is None:
        return NameProblem("22004", "channel must not be NULL")
    if channel == "":
        return NameProblem("22023", "channel must not be empty")
    bad = [c for c in channel if ord(c) < 32 or ord(c) == 127]
    if bad:
        return NameProblem(
            "22023",
            f"channel {channel!r} contains a control character ({ord(bad[0]):#04x})",
        )
    size = len(channel.encode("utf-8"))
    if size > MAX_CHANNEL_BYTES:
        return NameProblem(
            "42622",
            f'channel "{channel}" is too long: {size} bytes, at most {MAX_CHANNEL_BYTES}',
            hint=f"Its queue table {TABLE_PREFIX}<channel> must fit PostgreSQL's "
            f"{NAMEDATALEN_MAX}-byte identifier limit.",
        )
    return None


def table_name(channel: str) -> str:
    """The queue table's name (unquoted) for a valid channel."""
    return TABLE_PREFIX + channel
