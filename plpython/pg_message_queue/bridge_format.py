"""Pure rules of the NOTIFY -> AMQP bridge, shared by the server (pg_mq_notify,
pg_mq_bridge_map) and the client command (bridge.py): no plpy, no psycopg.

- pg-amqp-bridge's payload convention (``routing_key|message`` and
  ``routing_key|Name: v1, v2; Other: v3|message``), its BRIDGE_CHANNELS syntax;
- the control channel: ``map`` (the map changed, reload it) and the markers
  pg_mq_notify sends before a notification whose message is already in the outbox.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass

CONTROL_CHANNEL = "pg_mq_bridge"
RELOAD = "map"
SKIP_PREFIX = "skip:"
NAME_MAX = 63  # NOTIFY channels are identifiers: 63 bytes at most
AMQP_SHORTSTR_MAX = 255
_BIDI_CONTROLS = frozenset(chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)])


@dataclass(frozen=True)
class Problem:
    """Why a value is refused: an SQLSTATE and a sentence naming the culprit."""

    sqlstate: str
    message: str


def channel_problem(channel: str | None, what: str = "channel") -> Problem | None:
    """Why ``channel`` cannot be a NOTIFY channel of the bridge, or None.

    Quotes, spaces, capitals and unicode are fine (every use is quoted); refused: NULL,
    empty, control characters and invisible direction overrides, more than 63 bytes
    (PostgreSQL would truncate the identifier), and the bridge's control channel.
    """
    if channel is None:
        return Problem("22004", f"{what} must not be NULL")
    if channel == "":
        return Problem("22023", f"{what} must not be empty")
    bad = [c for c in channel if unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in _BIDI_CONTROLS]
    if bad:
        return Problem("22023", f"{what} {channel!r} contains a control character (U+{ord(bad[0]):04X})")
    size = len(channel.encode("utf-8"))
    if size > NAME_MAX:
        return Problem("42622", f"{what} {channel!r} is too long: {size} bytes, at most {NAME_MAX}")
    if channel == CONTROL_CHANNEL:
        return Problem("22023", f'{what} "{CONTROL_CHANNEL}" is the bridge\'s control channel')
    return None


def parse_payload(payload: str) -> tuple[str, str, dict[str, list[str]] | None]:
    """pg-amqp-bridge's ``parse_notification``: (routing_key, message, headers).

    Split on ``|`` at most twice, each part trimmed: one part is the message (routing
    key ""), two are key and message, three are key, headers and message, where headers
    are ``Name: v1, v2; Other: v3`` (each value list an array of strings; a part without
    ``:`` is skipped).
    """
    parts = [p.strip() for p in payload.split("|", 2)]
    if len(parts) == 3:
        headers: dict[str, list[str]] = {}
        for component in parts[1].split(";"):
            pair = [p.strip() for p in component.strip().split(":", 1)]
            if len(pair) == 2:
                headers[pair[0]] = [v.strip() for v in pair[1].split(",")]
        return parts[0], parts[2], headers
    if len(parts) == 2:
        return parts[0], parts[1], None
    return "", parts[0], None


def digest(channel: str, payload: str) -> str:
    """What a skip marker names: md5 of channel and payload (hex, 32 characters)."""
    return hashlib.md5(channel.encode() + b"\x00" + payload.encode(), usedforsecurity=False).hexdigest()


def skip_marker(channel: str, payload: str) -> str:
    """The control notification pg_mq_notify sends just before notifying ``channel``."""
    return f"{SKIP_PREFIX}{digest(channel, payload)}"


def message_id(txid: str, channel: str, payload: str) -> str:
    """pg_mq_notify's message_id: one per transaction, channel and payload (NOTIFY
    folds identical notifications of a transaction into one, and so does the outbox)."""
    return f"pg_mq_notify:{txid}:{digest(channel, payload)}"


@dataclass(frozen=True)
class Binding:
    """One bridged channel: where its notifications go.

    ``routing_key`` None: the payload names it (pg-amqp-bridge's ``key|message``);
    ``to_queue``: pg-amqp-bridge's queue target (default exchange, routing key = the
    queue, the payload still parsed and its key ignored).
    """

    channel: str
    broker_id: int
    exchange: str
    routing_key: str | None = None
    delivery_mode: int = 2
    content_type: str = "text/plain"
    to_queue: str | None = None

    def message(self, payload: str) -> tuple[str, str, str, dict[str, list[str]] | None]:
        """(exchange, routing_key, message, headers) for a notification's payload."""
        if self.to_queue is not None:
            _, body, headers = parse_payload(payload)
            return "", self.to_queue, body, headers
        if self.routing_key is None:
            key, body, headers = parse_payload(payload)
            return self.exchange, key, body, headers
        return self.exchange, self.routing_key, payload, None


class ConfigError(ValueError):
    """Bad configuration of the bridge (the command exits with status 2)."""


def fold_identifier(name: str) -> str:
    """What ``LISTEN name`` listens on: PostgreSQL folds an unquoted identifier's ASCII
    capitals; a name written in double quotes keeps its case (``""`` is one quote)."""
    if len(name) >= 2 and name.startswith('"') and name.endswith('"'):
        return name[1:-1].replace('""', '"')
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in name)


def parse_bridge_channels(text: str) -> list[tuple[str, str]]:
    """pg-amqp-bridge's BRIDGE_CHANNELS: ``pgchannel:entity,...`` as (channel, entity).

    As the original: entries split on ``,`` then ``:``, trimmed, those lacking a channel
    or an entity dropped; none left, or a channel twice, is an error. Channels are folded
    as the original's unquoted ``LISTEN`` folds them.
    """
    pairs: list[tuple[str, str]] = []
    for entry in text.split(","):
        fields = entry.split(":")
        channel = fields[0].strip()
        entity = fields[1].strip() if len(fields) > 1 else ""
        if channel and entity:
            pairs.append((fold_identifier(channel), entity))
    if not pairs:
        raise ConfigError(f'BRIDGE_CHANNELS: no bindings (e.g. pgchannel1:queue1) in "{text}"')
    seen: set[str] = set()
    for channel, entity in pairs:
        if channel in seen:
            raise ConfigError(f'BRIDGE_CHANNELS: channel "{channel}" appears twice')
        seen.add(channel)
        problem = channel_problem(channel, "BRIDGE_CHANNELS: channel")
        if problem:
            raise ConfigError(problem.message)
        if len(entity.encode()) > AMQP_SHORTSTR_MAX:
            raise ConfigError(f'BRIDGE_CHANNELS: exchange or queue "{entity}" is longer than 255 bytes')
    return pairs
