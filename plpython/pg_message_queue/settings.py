"""Per-queue settings: names, defaults, and how a text value is checked (pure logic)."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Settings:
    """A queue's settings, each default written once. The catalog stores only what
    was set (JSON); a key reset to NULL takes its default again."""

    max_deliveries: int | None = None  # reads before a message goes to the dead-letter queue
    dead_letter_queue: str | None = None  # None: "<channel>_dlq" (see dlq_name)
    retention: str = "0"  # keep acknowledged/delivered rows this long (interval)
    priority_ordering: bool = True  # False: priorities are ignored, pure FIFO
    fifo_group_header: str | None = None  # header key: one in-flight message per group
    dedup_window: str = "1 hour"  # how long a dedup_key suppresses duplicates
    notify: bool = True  # NOTIFY "<channel>" per sending statement; off for polled queues

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> Settings:
        return cls(**{k: v for k, v in stored.items() if k in DEFAULTS and v is not None})

    def dlq_name(self, channel: str) -> str:
        return self.dead_letter_queue or default_dlq(channel)


def default_dlq(channel: str) -> str:
    """The dead-letter queue's name when none is set."""
    return channel + "_dlq"


DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Settings)}

MAX_DELIVERIES = 2**31 - 1  # read_count is an integer

BOOLEAN_KEYS = ("priority_ordering", "notify")

INTERVAL_KEYS = ("retention", "dedup_window")


@dataclass(frozen=True)
class Problem:
    sqlstate: str
    message: str


def parse(key: str | None, value: str | None) -> tuple[Any, Problem | None]:
    """The JSON value to store for ``key`` given text ``value``, or why not.

    Interval values are returned as text here and checked by the server.
    A NULL value resets the key to its default.
    """
    if key not in DEFAULTS:
        return None, Problem("22023", f'unknown queue setting "{key}"; known: {", ".join(DEFAULTS)}')
    if value is None:
        return DEFAULTS[key], None
    if key == "max_deliveries":
        if not re.fullmatch(r"\s*\d+\s*", value) or not 1 <= int(value) <= MAX_DELIVERIES:
            return None, Problem(
                "22023", f"max_deliveries must be an integer from 1 to {MAX_DELIVERIES} (got {value!r})"
            )
        return int(value), None
    if key in BOOLEAN_KEYS:
        truth = {"true": True, "on": True, "yes": True, "1": True, "false": False, "off": False, "no": False}
        if value.strip().lower() not in truth:
            return None, Problem("22023", f"{key} must be a boolean (got {value!r})")
        return truth[value.strip().lower()], None
    if value == "":
        return None, Problem("22023", f"{key} must not be empty")
    return value, None
