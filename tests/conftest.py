"""Test harness: real servers, started by the tests themselves.

One private PostgreSQL 15 per session (temp data dir, free loopback port, run as
the ``postgres`` OS user when we are root). A template database with the
extension is built once; every test gets its own clone of it.

``--backend=docker`` runs the same suite against the Dockerfile's image through
testcontainers; without a Docker engine those runs skip, saying why.
"""

from __future__ import annotations

import itertools
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

from helpers import as_role
from servers import Postgres

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = "pgmq_template"
_counter = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=("local", "docker"),
        default="local",
        help="local: private PostgreSQL from Debian's packages (default); "
        "docker: the Dockerfile's image through testcontainers",
    )


class Server:
    """What tests need of a PostgreSQL server: a DSN per database and admin SQL."""

    def __init__(self, dsn_for: Callable[[str], str]) -> None:
        self.dsn_for = dsn_for

    def admin(self, sql: str) -> None:
        with psycopg.connect(self.dsn_for("postgres"), autocommit=True) as conn:
            conn.execute(sql)


def _docker_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    try:
        import docker

        docker.from_env().ping()
    except Exception as exc:  # no engine: say so and skip, never pass
        pytest.skip(f"--backend=docker needs a running Docker engine: {exc}")
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.image import DockerImage

    with DockerImage(path=str(ROOT), tag="pg_message_queue:test") as image:
        container = DockerContainer(str(image)).with_env("POSTGRES_HOST_AUTH_METHOD", "trust").with_exposed_ports(5432)
        with container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(5432)
            dsn_for = lambda db: f"host={host} port={port} user=postgres dbname={db}"  # noqa: E731
            # The image's entrypoint first runs a socket-only server for its init
            # scripts: wait until the real one answers over TCP with the extension.
            deadline = time.monotonic() + 120
            while True:
                try:
                    with psycopg.connect(dsn_for("postgres"), connect_timeout=2) as conn:
                        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_message_queue'").fetchone():
                            break
                except psycopg.OperationalError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("the Docker image's PostgreSQL did not come up within 120 s")
                time.sleep(0.5)
            yield Server(dsn_for)


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    if request.config.getoption("--backend") == "docker":
        yield from _docker_server(request)
        return
    root = Path(tempfile.mkdtemp(prefix="pgmq-test-"))
    root.chmod(0o755)  # the server runs as the postgres OS user when we are root
    pg = Postgres(root / "pg")
    try:
        pg.start()
        yield Server(pg.dsn)
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def template(pg_server: Server) -> str:
    pg_server.admin(f"DROP DATABASE IF EXISTS {TEMPLATE}")
    pg_server.admin(f"CREATE DATABASE {TEMPLATE}")
    with psycopg.connect(pg_server.dsn_for(TEMPLATE), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_message_queue CASCADE")
    return TEMPLATE


@pytest.fixture
def dsn(pg_server: Server, template: str) -> Iterator[str]:
    """A fresh database, cloned from the template, for this test alone."""
    name = f"t{next(_counter)}"
    pg_server.admin(f"CREATE DATABASE {name} TEMPLATE {template}")
    yield pg_server.dsn_for(name)
    pg_server.admin(f"DROP DATABASE {name} WITH (FORCE)")


PGQ_TEMPLATE = "pgmq_pgq_template"


@pytest.fixture(scope="session")
def pgq_template(pg_server: Server, template: str) -> str:
    """The template with the PgQ companion as well (both extensions in one database)."""
    pg_server.admin(f"DROP DATABASE IF EXISTS {PGQ_TEMPLATE}")
    pg_server.admin(f"CREATE DATABASE {PGQ_TEMPLATE} TEMPLATE {template}")
    with psycopg.connect(pg_server.dsn_for(PGQ_TEMPLATE), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_message_queue_pgq")
    return PGQ_TEMPLATE


@pytest.fixture
def pgq_dsn(pg_server: Server, pgq_template: str) -> Iterator[str]:
    """A fresh database with pg_message_queue and pg_message_queue_pgq, for this test alone."""
    name = f"t{next(_counter)}"
    pg_server.admin(f"CREATE DATABASE {name} TEMPLATE {pgq_template}")
    yield pg_server.dsn_for(name)
    pg_server.admin(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def pgq_connect(pgq_dsn: str) -> Iterator[Callable[..., psycopg.Connection]]:
    """Open connections to the test's PgQ database; all closed afterwards."""
    opened: list[psycopg.Connection] = []

    def _connect(autocommit: bool = True, **kwargs: object) -> psycopg.Connection:
        conn = psycopg.connect(pgq_dsn, autocommit=autocommit, **kwargs)
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        conn.close()


@pytest.fixture
def pgq(pgq_connect: Callable[..., psycopg.Connection]) -> psycopg.Connection:
    """An autocommit superuser connection to a database with both extensions."""
    return pgq_connect()


@pytest.fixture
def connect(dsn: str) -> Iterator[Callable[..., psycopg.Connection]]:
    """Open extra connections to the test's database; all closed afterwards."""
    opened: list[psycopg.Connection] = []

    def _connect(autocommit: bool = True, **kwargs: object) -> psycopg.Connection:
        conn = psycopg.connect(dsn, autocommit=autocommit, **kwargs)
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        conn.close()


@pytest.fixture
def db(connect: Callable[..., psycopg.Connection]) -> psycopg.Connection:
    """An autocommit connection to the test's database, as superuser."""
    return connect()


# ---- AMQP: one private RabbitMQ node per session (see tools/servers.py RabbitMQ) ----


class Rabbit:
    """The session's RabbitMQ node, plus what tests need to look at what really arrived."""

    def __init__(self, node: object) -> None:
        self.node = node

    @property
    def port(self) -> int:
        return self.node.port  # type: ignore[attr-defined]

    def channel(self) -> object:
        import pika

        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", self.port, heartbeat=0))
        return conn.channel()

    def queue(self, exchange: str = "", routing_key: str | None = None, durable: bool = False) -> str:
        """A fresh queue, bound to ``exchange`` with ``routing_key`` (default: its name)."""
        import uuid

        name = f"q-{uuid.uuid4().hex[:12]}"
        ch = self.channel()
        ch.queue_declare(name, durable=durable)
        if exchange:
            ch.queue_bind(name, exchange, routing_key if routing_key is not None else name)
        ch.connection.close()
        return name

    def drain(self, queue: str, count: int, timeout: float = 10.0, settle: float = 0.3) -> list[tuple]:
        """Messages of ``queue`` as (properties, body): wait until ``count`` arrived (or
        ``timeout``), then ``settle`` seconds more so extras (duplicates) show up too."""
        import time

        ch = self.channel()
        got: list[tuple] = []
        deadline = time.monotonic() + timeout
        quiet_until: float | None = None
        try:
            while True:
                method, props, body = ch.basic_get(queue, auto_ack=True)
                if method is not None:
                    got.append((props, body.decode()))
                    continue
                now = time.monotonic()
                if len(got) >= count:
                    quiet_until = quiet_until or now + settle
                    if now >= quiet_until:
                        return got
                elif now >= deadline:
                    return got
                ch.connection.sleep(0.02)
        finally:
            ch.connection.close()


@pytest.fixture(scope="session")
def rabbit() -> Iterator[Rabbit]:
    from servers import RabbitMQ

    root = Path(tempfile.mkdtemp(prefix="pgmq-rabbit-"))
    node = RabbitMQ(root)
    try:
        node.start()
        yield Rabbit(node)
    finally:
        node.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def broker(rabbit: Rabbit, db: psycopg.Connection) -> int:
    """broker_id of an amqp.broker row (guest@127.0.0.1) for the session's RabbitMQ."""
    row = db.execute(
        "INSERT INTO amqp.broker (host, port, vhost, username, password)"
        " VALUES ('127.0.0.1', %s, '/', 'guest', 'guest') RETURNING broker_id",
        (rabbit.port,),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def publisher(db: psycopg.Connection, dsn: str) -> Iterator[psycopg.Connection]:
    """A LOGIN role with USAGE on schema amqp, nothing else: the publishing role (autocommit)."""
    role = f"amqp_pub_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE ROLE {role} LOGIN")
    db.execute(f"GRANT USAGE ON SCHEMA amqp TO {role}")
    db.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
    conn = psycopg.connect(as_role(dsn, role), autocommit=True)
    yield conn
    conn.close()
    db.execute(f"DROP OWNED BY {role}")
    db.execute(f"DROP ROLE {role}")


# ---- PgQ: the same scenarios against real PgQ 3 and against ours ----

PGQ_BACKENDS = ("pgq3", "ours")
# What each backend installs in its template database.
_PGQ_EXTENSION = {"pgq3": "pgq", "ours": "pg_message_queue_pgq"}


class PgqBackend:
    """One PgQ implementation in a fresh database of the session's server."""

    def __init__(self, name: str, dsn: str, server: Server) -> None:
        self.name = name
        self.dsn = dsn
        self.server = server
        self._opened: list[psycopg.Connection] = []

    def connect(self, autocommit: bool = True) -> psycopg.Connection:
        conn = psycopg.connect(self.dsn, autocommit=autocommit)
        self._opened.append(conn)
        return conn

    def close(self) -> None:
        for conn in self._opened:
            conn.close()


@pytest.fixture(scope="session")
def pgq_backend_templates(pg_server: Server) -> dict[str, str | None]:
    """Template database per PgQ backend, made on first use (None: not installed)."""
    return {}


@pytest.fixture(params=PGQ_BACKENDS)
def pgq_backend(
    request: pytest.FixtureRequest, pg_server: Server, pgq_backend_templates: dict[str, str | None]
) -> Iterator[PgqBackend]:
    """A fresh database with real PgQ 3 (``pgq3``: Debian's postgresql-15-pgq3, the
    reference) or with ours (``ours``: pg_message_queue_pgq). Only ours may skip, and
    only when the companion extension is not installed; real PgQ missing is an error
    (``make deps`` installs it)."""
    name = request.param
    extension = _PGQ_EXTENSION[name]
    if name not in pgq_backend_templates:
        with psycopg.connect(pg_server.dsn_for("postgres"), autocommit=True) as conn:
            available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", (extension,)).fetchone()
        if available is None and name == "ours":
            pgq_backend_templates[name] = None
        else:
            template = f"pgq_template_{name}"
            pg_server.admin(f"DROP DATABASE IF EXISTS {template}")
            pg_server.admin(f"CREATE DATABASE {template}")
            with psycopg.connect(pg_server.dsn_for(template), autocommit=True) as conn:
                conn.execute(f"CREATE EXTENSION {extension} CASCADE")
            pgq_backend_templates[name] = template
    template = pgq_backend_templates[name]
    if template is None:
        pytest.skip(f"the companion extension {extension} is not installed (make install of the pgq branch)")
    db = f"t{next(_counter)}_{name}"
    pg_server.admin(f"CREATE DATABASE {db} TEMPLATE {template}")
    backend = PgqBackend(name, pg_server.dsn_for(db), pg_server)
    yield backend
    backend.close()
    pg_server.admin(f"DROP DATABASE {db} WITH (FORCE)")
