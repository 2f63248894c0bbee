"""PgQ 3's SQL API (the pg_message_queue_pgq extension, schema ``pgq``).

Modules by concern: ``admin`` (queues, settings, grants, storage), ``producer``
(insert_event), ``consumer`` (subscriptions, batches, retries), ``info`` (the
get_*_info functions), ``ticker`` (ticks, retries due, rotation, run_ticker).
PgQ's own PL/pgSQL and C (github.com/pgq/pgq) is the reference for every rule.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = ("admin", "common", "consumer", "info", "producer", "ticker", "triggers")


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
