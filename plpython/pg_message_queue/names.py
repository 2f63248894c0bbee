"""Pure rules for channel names (no database access, unit-tested with no server)."""

from __future__ import annotations

import unicodedata
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
    every use is quoted. Refused: NULL, empty, control characters (C0, DEL and
    C1), line and paragraph separators and bidirectional overrides (they hide
    or disguise a name in logs and psql output), and names whose table name
    ``pg_mq_queue_<channel>`` would pass 63 bytes, because PostgreSQL would
    silently truncate it.
    """
    if channel is None:
        return NameProblem("22004", "channel must not be NULL")
    if channel == "":
        return NameProblem("22023", "channel must not be empty")
    bad = [c for c in channel if _invisible(c)]
    if bad:
        return NameProblem(
            "22023",
            f"channel {channel!r} contains a control character (U+{ord(bad[0]):04X})",
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


_BIDI_CONTROLS = frozenset(chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def _invisible(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in _BIDI_CONTROLS


def table_name(channel: str) -> str:
    """The queue table's name (unquoted) for a valid channel."""
    return TABLE_PREFIX + channel
