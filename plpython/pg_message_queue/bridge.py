"""pg-mq-bridge: forward PostgreSQL NOTIFY to AMQP through amqp.publish (client side).

Runs outside the server (``python -m pg_message_queue.bridge`` or the console script
``pg-mq-bridge``), with psycopg 3; it never imports plpy. It LISTENs on the bridged
channels and hands every notification to ``amqp.publish`` inside a transaction, so from
there on the outbox's guarantees hold: sent when that transaction commits, kept in
``amqp.outbox`` for the relay (or this bridge's ``--flush-interval``) while the broker
is down.

Where the channels come from:

- the table ``pg_mq_bridge_channel`` (``pg_mq_bridge_map``), reloaded whenever it
  changes (a NOTIFY on the control channel ``pg_mq_bridge``);
- or, when BRIDGE_CHANNELS is set, pg-amqp-bridge's environment: POSTGRESQL_URI,
  AMQP_URI, BRIDGE_CHANNELS="pgchannel:exchange_or_queue,...", DELIVERY_MODE, and
  the ``routing_key|message`` payload convention.

Notifications sent by ``pg_mq_notify`` are already in the outbox: a marker on the
control channel, from the same backend just before them, says so, and they are skipped.
Exit status 2 on bad configuration, with the reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .bridge_format import (
    AMQP_SHORTSTR_MAX,
    CONTROL_CHANNEL,
    RELOAD,
    SKIP_PREFIX,
    Binding,
    ConfigError,
    channel_problem,
    digest,
    parse_bridge_channels,
)

EXIT_CONFIG = 2
SKIP_TTL = 60.0  # seconds a pg_mq_notify marker waits for its notification
MAX_BACKOFF = 32  # seconds between reconnection attempts, doubling from 1 (as pg-amqp-bridge)
log = logging.getLogger("pg-mq-bridge")


@dataclass
class Config:
    dsn: str = ""
    bridge_channels: list[tuple[str, str]] | None = None  # pg-amqp-bridge mode when set
    amqp_uri: str | None = None
    broker_id: int | None = None
    delivery_mode: int = 1  # pg-amqp-bridge's default, NON-PERSISTENT (table mode: per channel)
    flush_interval: float = 0.0
    batch_size: int = 1000


def _env_or_file(environ: Mapping[str, str], key: str) -> str | None:
    """pg-amqp-bridge's read_env_with_secret: KEY_FILE names a file holding the value."""
    path = environ.get(f"{key}_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as exc:
            raise ConfigError(f"{key}_FILE: cannot read {path}: {exc.strerror}") from None
    return environ.get(key)


def read_config(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """The configuration from the command line and the environment (ConfigError if bad)."""
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="pg-mq-bridge",
        description="Forward PostgreSQL NOTIFY to AMQP through amqp.publish (pg_message_queue).",
        epilog="Environment (pg-amqp-bridge's): POSTGRESQL_URI, AMQP_URI (both also as *_FILE), BRIDGE_CHANNELS, "
        "DELIVERY_MODE; and PG_MQ_BRIDGE_BROKER_ID, PG_MQ_BRIDGE_FLUSH_INTERVAL.",
    )
    parser.add_argument("--dsn", help="libpq connection string or URI (default: POSTGRESQL_URI, else libpq's PG*)")
    parser.add_argument("--channels", help="pg-amqp-bridge's BRIDGE_CHANNELS (default: the table)")
    parser.add_argument("--broker-id", help="amqp.broker's broker_id for --channels (default: from AMQP_URI)")
    parser.add_argument("--flush-interval", help="seconds between amqp.flush() calls (default 0: never)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every forwarded notification")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.INFO)

    config = Config()
    config.dsn = args.dsn if args.dsn is not None else (_env_or_file(env, "POSTGRESQL_URI") or "")
    import psycopg.conninfo

    try:
        psycopg.conninfo.conninfo_to_dict(config.dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"POSTGRESQL_URI / --dsn is not a connection string: {exc}") from None
    channels = args.channels if args.channels is not None else env.get("BRIDGE_CHANNELS")
    if channels is not None:
        config.bridge_channels = parse_bridge_channels(channels)
    config.amqp_uri = _env_or_file(env, "AMQP_URI") or None
    broker = args.broker_id if args.broker_id is not None else env.get("PG_MQ_BRIDGE_BROKER_ID")
    if broker is not None and broker != "":
        try:
            config.broker_id = int(broker)
        except ValueError:
            raise ConfigError(f"PG_MQ_BRIDGE_BROKER_ID / --broker-id must be an integer, not {broker!r}") from None
    mode = env.get("DELIVERY_MODE")
    if mode is not None:
        if mode not in ("PERSISTENT", "NON-PERSISTENT"):
            raise ConfigError(
                f"DELIVERY_MODE environment variable can only be PERSISTENT or NON-PERSISTENT, not {mode!r}"
            )
        config.delivery_mode = 2 if mode == "PERSISTENT" else 1
    interval = args.flush_interval if args.flush_interval is not None else env.get("PG_MQ_BRIDGE_FLUSH_INTERVAL")
    if interval:
        try:
            config.flush_interval = float(interval)
        except ValueError:
            config.flush_interval = -1
        if not 0 <= config.flush_interval < 1e6:
            raise ConfigError(f"PG_MQ_BRIDGE_FLUSH_INTERVAL / --flush-interval must be seconds >= 0, not {interval!r}")
    if config.bridge_channels is not None and config.broker_id is None and config.amqp_uri is None:
        raise ConfigError("BRIDGE_CHANNELS needs AMQP_URI (or PG_MQ_BRIDGE_BROKER_ID) to know the broker")
    return config


@dataclass
class State:
    bindings: dict[str, Binding] = field(default_factory=dict)
    # (backend pid, digest) -> (count, time of the newest marker): pg_mq_notify markers
    skips: dict[tuple[int, str], tuple[int, float]] = field(default_factory=dict)
    reload: bool = False


class Bridge:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.state = State()
        self.stopping = False
        self.env_cache: dict[str, Binding] | None = None
        self.schema = ""

    # ---- connection and setup -------------------------------------------------------

    def connect(self) -> Any:
        """A connection, retried with backoff (1, 2, 4 ... 32 s) while the server is away."""
        import psycopg

        delay = 1
        while not self.stopping:
            try:
                conn = psycopg.connect(self.config.dsn, autocommit=True, application_name="pg-mq-bridge")
            except psycopg.OperationalError as exc:
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if any(k in text for k in ("password authentication failed", "does not exist", "no pg_hba.conf")):
                    raise ConfigError(f"PostgreSQL refused the connection: {text}") from None
                log.warning("cannot connect to PostgreSQL (%s); retrying in %d s", text, delay)
                self.sleep(delay)
                delay = delay * 2 if delay < MAX_BACKOFF else 1
                continue
            conn.add_notice_handler(_log_notice)
            log.info("connected to PostgreSQL")
            return conn
        raise SystemExit(0)

    def setup(self, conn: Any) -> None:
        """Check what the bridge needs, load the channels, LISTEN on them."""
        row = conn.execute(
            "SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e"
            " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_message_queue'"
        ).fetchone()
        if row is None:
            raise ConfigError("the extension pg_message_queue is not installed in this database")
        self.schema = row[0]
        role, amqp = conn.execute("SELECT current_user, pg_catalog.has_schema_privilege('amqp', 'USAGE')").fetchone()
        if not amqp:
            raise ConfigError(f'role "{role}" has no USAGE on schema amqp: it cannot call amqp.publish')
        usage = conn.execute(
            "SELECT true,"
            " pg_catalog.has_function_privilege('amqp.flush(integer, integer, boolean)', 'EXECUTE'),"
            f" pg_catalog.has_table_privilege('{self.schema}.pg_mq_bridge_channel', 'SELECT'), current_user"
        ).fetchone()
        if self.config.flush_interval > 0 and not usage[1]:
            raise ConfigError(
                f'--flush-interval: role "{usage[3]}" may not EXECUTE amqp.flush(integer, integer, boolean)'
            )
        if self.config.bridge_channels is None and not usage[2]:
            raise ConfigError(
                f'role "{usage[3]}" may not read {self.schema}.pg_mq_bridge_channel'
                f" (GRANT SELECT ON {self.schema}.pg_mq_bridge_channel TO ...), and BRIDGE_CHANNELS is not set"
            )
        self.state.bindings = {}  # a new connection listens on nothing yet
        self.load(conn)
        log.info("ready: listening on %d channel(s) and %r", len(self.state.bindings), CONTROL_CHANNEL)

    def load(self, conn: Any) -> None:
        """(Re)load the bindings and make LISTEN match them, in one transaction."""
        if self.config.bridge_channels is not None:
            if self.env_cache is None:
                self.env_cache = self.env_bindings(conn)
            bindings = dict(self.env_cache)
        else:
            bindings = {
                r[0]: Binding(r[0], r[1], r[2], r[3], r[4], "text/plain")
                for r in conn.execute(
                    f"SELECT channel, broker_id, exchange, routing_key, delivery_mode FROM {self.schema}"
                    ".pg_mq_bridge_channel ORDER BY channel"
                )
            }
        self.state.reload = False
        with conn.transaction():
            conn.execute(f"LISTEN {_quote(CONTROL_CHANNEL)}")
            for channel in self.state.bindings.keys() - bindings.keys():
                conn.execute(f"UNLISTEN {_quote(channel)}")
            for channel in bindings.keys() - self.state.bindings.keys():
                conn.execute(f"LISTEN {_quote(channel)}")
        if bindings != self.state.bindings:
            log.info(
                "bridging %d channel(s): %s",
                len(bindings),
                ", ".join(f"{c!r} -> {_target(b)}" for c, b in sorted(bindings.items())) or "none yet",
            )
        self.state.bindings = bindings

    def env_bindings(self, conn: Any) -> dict[str, Binding]:
        """pg-amqp-bridge's BRIDGE_CHANNELS: the broker from AMQP_URI, queue or exchange per entity."""
        assert self.config.bridge_channels is not None
        broker_id = self.config.broker_id
        if broker_id is None:
            broker_id = _broker_of_uri(conn, self.config.amqp_uri or "")
        elif conn.execute("SELECT NOT EXISTS (SELECT FROM amqp.broker WHERE broker_id = %s)", (broker_id,)).fetchone()[
            0
        ]:
            raise ConfigError(f"PG_MQ_BRIDGE_BROKER_ID: no AMQP broker with broker_id {broker_id} in amqp.broker")
        entities = {entity for _, entity in self.config.bridge_channels}
        kinds = self.entity_kinds(entities) if self.config.amqp_uri else dict.fromkeys(entities, "exchange")
        missing = sorted(e for e, k in kinds.items() if k is None)
        if missing:
            raise ConfigError(f"The amqp entity {missing[0]!r} doesn't exist (neither an exchange nor a queue)")
        mode = self.config.delivery_mode
        return {
            channel: Binding(
                channel, broker_id, entity, None, mode, "text", entity if kinds[entity] == "queue" else None
            )
            for channel, entity in self.config.bridge_channels
        }

    def entity_kinds(self, entities: Iterable[str]) -> dict[str, str | None]:
        """As pg-amqp-bridge: an existing exchange, else an existing queue (passive declares),
        waiting with backoff while the broker is unreachable."""
        import pika
        import pika.exceptions

        try:
            params = pika.URLParameters(self.config.amqp_uri or "")
        except Exception as exc:
            raise ConfigError(f"AMQP_URI is not an AMQP URI: {exc}") from None
        delay = 1
        while True:
            try:
                amqp = pika.BlockingConnection(params)
                break
            except pika.exceptions.ProbableAuthenticationError as exc:
                raise ConfigError(f"AMQP_URI: the broker refused the credentials: {exc}") from None
            except pika.exceptions.AMQPConnectionError as exc:
                log.warning("cannot connect to AMQP_URI (%r); retrying in %d s", exc, delay)
                self.sleep(delay)
                if self.stopping:
                    raise SystemExit(0) from None
                delay = delay * 2 if delay < MAX_BACKOFF else 1
        kinds: dict[str, str | None] = {}
        try:
            for entity in entities:
                kinds[entity] = None
                for kind in ("exchange", "queue"):
                    ch = amqp.channel()
                    try:
                        if kind == "exchange":
                            ch.exchange_declare(entity, passive=True)
                        else:
                            ch.queue_declare(entity, passive=True)
                    except pika.exceptions.ChannelClosedByBroker:
                        continue
                    kinds[entity] = kind
                    ch.close()
                    break
        finally:
            amqp.close()
        return kinds

    # ---- the loop ---------------------------------------------------------------------

    def run(self) -> None:
        """Connect, set up, forward; reconnect with backoff when the connection is lost."""
        import psycopg

        while not self.stopping:
            conn = self.connect()
            try:
                self.setup(conn)
                self.forward(conn)
            except psycopg.OperationalError as exc:
                if self.stopping:
                    break
                log.warning("lost the PostgreSQL connection (%s); reconnecting", str(exc).strip() or exc)
                self.sleep(1)
            finally:
                conn.close()

    def forward(self, conn: Any) -> None:
        next_flush = time.monotonic() + self.config.flush_interval
        while not self.stopping:
            wait = 1.0
            if self.config.flush_interval > 0:
                wait = max(0.0, min(wait, next_flush - time.monotonic()))
            batch = list(conn.notifies(timeout=wait, stop_after=1))
            if batch:  # and whatever else is already there, up to a batch
                batch += conn.notifies(timeout=0, stop_after=self.config.batch_size)
                self.publish(conn, batch)
            if self.state.reload:
                self.load(conn)
            if self.config.flush_interval > 0 and time.monotonic() >= next_flush:
                self.flush(conn)
                next_flush = time.monotonic() + self.config.flush_interval
            self.expire_skips()

    def publish(self, conn: Any, batch: list[Any]) -> None:
        """Hand a batch of notifications to amqp.publish in one transaction (one at a time
        if one of them fails, so that one bad message does not hold back the rest)."""
        import psycopg

        todo = [(n, b) for n, b in ((n, self.route(n)) for n in batch) if b is not None]
        if not todo:
            return
        try:
            with conn.transaction():
                for n, b in todo:
                    self.publish_one(conn, n, b)
        except psycopg.OperationalError:
            raise
        except psycopg.Error:
            for n, b in todo:
                try:
                    with conn.transaction():
                        self.publish_one(conn, n, b)
                except psycopg.OperationalError:
                    raise
                except psycopg.Error as exc:
                    log.error("notification on %r (pid %d) not published: %s", n.channel, n.pid, str(exc).strip())

    def route(self, n: Any) -> Binding | None:
        """The binding a notification goes to, or None (control messages, skipped ones)."""
        if n.channel == CONTROL_CHANNEL:
            if n.payload == RELOAD:
                self.state.reload = True
            elif n.payload.startswith(SKIP_PREFIX):
                key = (n.pid, n.payload[len(SKIP_PREFIX) :])
                count, _ = self.state.skips.get(key, (0, 0.0))
                self.state.skips[key] = (count + 1, time.monotonic())
            return None
        binding = self.state.bindings.get(n.channel)
        if binding is None:
            return None
        key = (n.pid, digest(n.channel, n.payload))
        found = self.state.skips.get(key)
        if found is not None:  # pg_mq_notify recorded it in amqp.outbox already
            if found[0] > 1:
                self.state.skips[key] = (found[0] - 1, found[1])
            else:
                del self.state.skips[key]
            log.debug("%r (pid %d): from pg_mq_notify, already in amqp.outbox", n.channel, n.pid)
            return None
        return binding

    def publish_one(self, conn: Any, n: Any, b: Binding) -> None:
        exchange, key, body, headers = b.message(n.payload)
        if len(key.encode()) > AMQP_SHORTSTR_MAX:
            log.error("notification on %r (pid %d) not published: routing key over 255 bytes", n.channel, n.pid)
            return
        conn.execute(
            "SELECT amqp.publish(%s, %s, %s, %s, %s, %s, NULL, NULL, %s::jsonb)",
            (b.broker_id, exchange, key, body, b.delivery_mode, b.content_type, _json(headers)),
        )
        log.debug("%r -> %s (routing_key %r): %r", n.channel, _target(b), key, body)

    def flush(self, conn: Any) -> None:
        import psycopg

        try:
            delivered = conn.execute("SELECT amqp.flush(NULL, 10000, true)").fetchone()[0]
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            log.warning("amqp.flush failed: %s", str(exc).strip())
            return
        if delivered:
            log.info("amqp.flush delivered %d kept message(s)", delivered)

    def expire_skips(self) -> None:
        old = time.monotonic() - SKIP_TTL
        for key in [k for k, (_, at) in self.state.skips.items() if at < old]:
            del self.state.skips[key]

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(min(0.2, end - time.monotonic()))


def _broker_of_uri(conn: Any, uri: str) -> int:
    """The broker_id of amqp.broker whose host, port, vhost and user are AMQP_URI's."""
    import pika

    try:
        p = pika.URLParameters(uri)
    except Exception as exc:
        raise ConfigError(f"AMQP_URI is not an AMQP URI: {exc}") from None
    user = getattr(p.credentials, "username", "guest")
    rows = conn.execute(
        "SELECT DISTINCT broker_id FROM amqp.broker WHERE host = %s AND port = %s"
        " AND coalesce(vhost, '/') = %s AND coalesce(username, 'guest') = %s ORDER BY broker_id",
        (p.host, p.port, p.virtual_host, user),
    ).fetchall()
    if not rows:
        raise ConfigError(
            f"AMQP_URI: no row of amqp.broker has host {p.host!r}, port {p.port}, vhost {p.virtual_host!r} and"
            f" username {user!r}: add it (INSERT INTO amqp.broker (host, port, vhost, username, password) ...)"
            " or set PG_MQ_BRIDGE_BROKER_ID"
        )
    return int(rows[0][0])


def _quote(name: str) -> str:
    problem = channel_problem(name) if name != CONTROL_CHANNEL else None
    if problem:
        raise ConfigError(f"cannot LISTEN: {problem.message}")
    return '"' + name.replace('"', '""') + '"'


def _json(headers: dict[str, list[str]] | None) -> str | None:
    return None if headers is None else json.dumps(headers)


def _target(b: Binding) -> str:
    if b.to_queue is not None:
        return f"queue {b.to_queue!r} (broker {b.broker_id})"
    key = "from the payload" if b.routing_key is None else repr(b.routing_key)
    return f"exchange {b.exchange!r} (broker {b.broker_id}, routing key {key})"


def _log_notice(diag: Any) -> None:
    level = logging.WARNING if diag.severity_nonlocalized in ("WARNING", "ERROR") else logging.INFO
    log.log(level, "server: %s", diag.message_primary)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="pg-mq-bridge: %(levelname)s: %(message)s", stream=sys.stderr, level=logging.INFO)
    try:
        config = read_config(argv)
    except ConfigError as exc:
        print(f"pg-mq-bridge: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    bridge = Bridge(config)

    def stop(signum: int, frame: Any) -> None:
        bridge.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        bridge.run()
    except ConfigError as exc:
        print(f"pg-mq-bridge: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:  # anything unforeseen: say what, exit non-zero (systemd restarts it)
        print(f"pg-mq-bridge: error: {type(exc).__name__}: {str(exc).strip()}", file=sys.stderr)
        return 1
    except SystemExit as exc:
        return int(exc.code or 0)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
