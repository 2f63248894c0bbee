"""pg_message_queue: the Python side of the extension.

The SQL functions in ``sql/`` are thin: a generated prologue that imports this
package (see ``tools/build_sql.py``) and one call into a module below. Modules
that run in the server reach ``plpy`` through ``_db``; they are imported on
first use, so importing the package outside the server (a client-side command,
unit tests) needs no ``plpy``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "1.0.0"

_MODULES = (
    "_db", "amqp", "amqp_link", "bridge", "bridge_format", "bridge_map", "configure", "events", "grants", "leases",
    "messages", "names", "payload_types", "pgq", "queues", "settings", "upkeep",
)  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
