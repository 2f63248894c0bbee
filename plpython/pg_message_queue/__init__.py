"""pg_message_queue: the Python side of the extension.

Everything here runs inside a PostgreSQL backend under PL/Python. The SQL
functions in ``sql/`` are thin: a generated prologue that imports this package
(see ``tools/build_sql.py``) and one call into a module below.
"""

__version__ = "0.1.0"

from . import amqp, leases, messages, queues, upkeep  # noqa: F401  (used by the SQL bodies)
