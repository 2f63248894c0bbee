"""Private servers for tests, benchmarks and ``make run``.

PostgreSQL 15 (Debian's binaries) in a folder of our own, on a free loopback
port, run as the ``postgres`` OS user when we are root. RabbitMQ likewise.

    python tools/servers.py start DIR   # make run: start (or reuse) and print how to connect
    python tools/servers.py stop DIR    # make stop
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DBNAME = "pg_message_queue"


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free loopback port outside the kernel's ephemeral range: a server restarted on
    the same port (RabbitMQ after kill -9) must not find it taken as the local port of
    some client's connection meanwhile."""
    low, high = _ephemeral_range()
    candidates = [p for p in range(10000, 65535) if not low <= p <= high]
    for port in random.sample(candidates, 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # everything tried was taken: let the kernel choose
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _is_root() -> bool:
    return os.geteuid() == 0


def _as_owner(cmd: list[str]) -> list[str]:
    """Run server programs as ``postgres`` when we are root (they refuse root)."""
    return ["runuser", "-u", "postgres", "--", *cmd] if _is_root() else cmd


def _give_to_postgres(path: Path) -> None:
    if _is_root():
        pw = pwd.getpwnam("postgres")
        for p in [path, *path.rglob("*")]:
            os.chown(p, pw.pw_uid, pw.pw_gid)


def _reachable_by_postgres(path: Path) -> bool:
    if not _is_root():
        return True
    probe = subprocess.run(_as_owner(["test", "-w", str(path)]), check=False)
    return probe.returncode == 0


class Postgres:
    """A private PostgreSQL cluster in ``root`` (data/, log, port)."""

    def __init__(self, root: Path, fsync: bool = False) -> None:
        self.root = root
        self.data = root / "data"
        self.fsync = fsync

    @property
    def port(self) -> int:
        return int((self.root / "port").read_text())

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={user} dbname={dbname}"

    def running(self) -> bool:
        if not (self.data / "postmaster.pid").exists():
            return False
        status = subprocess.run(
            _as_owner([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"]),
            capture_output=True,
            check=False,
        )
        return status.returncode == 0

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _give_to_postgres(self.root)
        subprocess.run(
            _as_owner(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            ),
            check=True,
            capture_output=True,
        )
        port = free_port()
        (self.root / "port").write_text(str(port))
        conf = [
            f"port = {port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.root}'",
            f"fsync = {'on' if self.fsync else 'off'}",
            "max_connections = 100",
            "shared_buffers = 256MB",
            "log_min_messages = warning",
        ]
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n# pg_message_queue private server\n" + "\n".join(conf) + "\n")

    def start(self) -> None:
        if not self.data.exists():
            self.init()
        if self.running():
            return
        log = self.root / "postgres.log"
        subprocess.run(
            _as_owner([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(log), "-w", "-t", "60", "start"]),
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        if self.running():
            subprocess.run(
                _as_owner([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
                check=False,
                capture_output=True,
            )

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        out = subprocess.run(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql, self.dsn(dbname)],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout


RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


class RabbitMQ:
    """A private RabbitMQ node in ``root``: its own node name, data, logs, cookie and
    loopback ports (AMQP, Erlang distribution, epmd), kept in ``root/ports`` so a
    restart (even after ``kill -9``) comes back on the same ones."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None

    def _ports(self) -> dict[str, int]:
        path = self.root / "ports"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            ports = {"amqp": free_port(), "dist": free_port(), "epmd": free_port()}
            path.write_text(" ".join(f"{k}={v}" for k, v in ports.items()))
        return {k: int(v) for k, v in (kv.split("=") for kv in path.read_text().split())}

    @property
    def port(self) -> int:
        return self._ports()["amqp"]

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def _env(self) -> dict[str, str]:
        ports = self._ports()
        root = str(self.root)
        return {
            **os.environ,
            "HOME": root,  # the Erlang cookie lives here
            "RABBITMQ_NODENAME": f"pgmq{ports['amqp']}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(ports["amqp"]),
            "RABBITMQ_DIST_PORT": str(ports["dist"]),
            "ERL_EPMD_PORT": str(ports["epmd"]),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": f"{root}/mnesia",
            "RABBITMQ_LOG_BASE": f"{root}/log",
            "RABBITMQ_LOGS": f"{root}/log/rabbit.log",
            "RABBITMQ_PID_FILE": f"{root}/rabbit.pid",
            "RABBITMQ_CONFIG_FILE": f"{root}/rabbitmq",
            "RABBITMQ_ADVANCED_CONFIG_FILE": f"{root}/advanced.config",
            "RABBITMQ_CONF_ENV_FILE": f"{root}/rabbitmq-env.conf",
            "RABBITMQ_ENABLED_PLUGINS_FILE": f"{root}/enabled_plugins",
            "RABBITMQ_ENABLED_PLUGINS": "",
        }

    def _pid(self) -> int | None:
        try:
            return int((self.root / "rabbit.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self._pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return self.ready()

    def ready(self) -> bool:
        """True when the AMQP listener answers the protocol header with Connection.Start."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"AMQP\x00\x00\x09\x01")
                return s.recv(1) == b"\x01"
        except OSError:
            return False

    def start(self, timeout: float = 60) -> None:
        if self.running():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "log").mkdir(exist_ok=True)
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq-env.conf").write_text("")
        (self.root / "rabbitmq.conf").write_text(
            "loopback_users = none\nlog.console = false\nlog.file.level = warning\n"
        )
        (self.root / "rabbit.pid").unlink(missing_ok=True)
        with open(self.root / "log" / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen(
                [str(RABBITMQ_SERVER)],
                env=self._env(),
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not (self._pid() and self.ready()):
            if self.proc.poll() is not None:
                tail = (self.root / "log" / "stdout.log").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"RabbitMQ exited at start; see {self.root}/log. Its output ended:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ did not start in {timeout}s; see {self.root}/log")
            time.sleep(0.2)

    def _wait_gone(self, pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.pid == pid:
                if self.proc.poll() is not None:
                    return
            else:
                try:
                    os.kill(pid, 0)
                except OSError:
                    return
            time.sleep(0.05)

    def kill(self) -> None:
        """``kill -9`` the node and what it started: no clean shutdown, clients see the
        socket die."""
        pid = self._pid()
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            if self.proc is not None:  # the node's session: its helper processes too
                with contextlib.suppress(OSError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            self._wait_gone(pid, 10)
        (self.root / "rabbit.pid").unlink(missing_ok=True)

    def stop(self, epmd: bool = True) -> None:
        pid = self._pid()
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
            self._wait_gone(pid, 30)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            self._wait_gone(pid, 5)
        (self.root / "rabbit.pid").unlink(missing_ok=True)
        if epmd and (self.root / "ports").exists():
            subprocess.run(
                ["epmd", "-port", str(self._ports()["epmd"]), "-kill"],
                env=self._env(),
                capture_output=True,
                check=False,
            )

    def restart(self) -> None:
        """Start again on the same ports and data (after ``kill`` or ``stop``)."""
        if self._pid() is not None:
            self.stop(epmd=False)
        for kind in ("amqp", "dist"):
            self._wait_port_free(self._ports()[kind], 30)
        self.start()

    @staticmethod
    def _wait_port_free(port: int, timeout: float) -> None:
        """Until the AMQP port can be listened on again: a killed node's leftovers, or a
        client connection that happened to take it as its local port, hold it a while."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                    return
                except OSError:
                    time.sleep(0.2)

    def ctl(self, *args: str) -> str:
        """Run ``rabbitmqctl`` against this node."""
        out = subprocess.run(
            ["/usr/lib/rabbitmq/bin/rabbitmqctl", *args],
            env=self._env(),
            cwd=self.root,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout


def private_dir(base: Path) -> Path:
    """``base`` if the postgres user can write there, else a folder in /tmp linked from it."""
    base.mkdir(parents=True, exist_ok=True)
    if _reachable_by_postgres(base):
        return base
    link = base / "pg"
    if link.is_symlink():
        return link.resolve().parent
    tmp = Path(f"/tmp/pg_message_queue-run-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    _give_to_postgres(tmp)
    link.symlink_to(tmp / "pg")
    return tmp


def start(base: Path) -> None:
    pg_root = private_dir(base) / "pg"
    pg = Postgres(pg_root, fsync=True)
    pg.start()
    exists = pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DBNAME}'")
    if not exists.strip():
        pg.psql(f'CREATE DATABASE "{DBNAME}"')
    pg.psql("CREATE EXTENSION IF NOT EXISTS pg_message_queue CASCADE", DBNAME)
    pg.psql("CREATE EXTENSION IF NOT EXISTS pg_message_queue_pgq", DBNAME)
    print(f"PostgreSQL 15 with pg_message_queue and pg_message_queue_pgq is running (data in {pg.data}).")
    print("Connect with:")
    print(f'  psql "{pg.dsn(DBNAME)}"')
    rabbit = RabbitMQ(base / "rabbitmq")
    rabbit.start()
    # broker_id 1 = this node, so pg_amqp's examples run as they are (only if none is configured)
    pg.psql(
        "INSERT INTO amqp.broker (host, port, vhost, username, password) SELECT '127.0.0.1', "
        f"{rabbit.port}, '/', 'guest', 'guest' WHERE NOT EXISTS (SELECT FROM amqp.broker)",
        DBNAME,
    )
    print(f"RabbitMQ is running (data in {rabbit.root}); AMQP URL: {rabbit.url}")
    print("  (amqp.broker row broker_id 1 points at it when the table was empty)")
    print("Stop with: make stop")


def stop(base: Path) -> None:
    for pg_root in [base / "pg"]:
        if pg_root.exists():
            Postgres(pg_root.resolve()).stop()
            print(f"Stopped PostgreSQL in {pg_root}.")
    if (base / "rabbitmq" / "ports").exists():
        RabbitMQ(base / "rabbitmq").stop()
        print(f"Stopped RabbitMQ in {base / 'rabbitmq'}.")


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        raise SystemExit(__doc__)
    base = Path(argv[1]).resolve()
    {"start": start, "stop": stop}[argv[0]](base)


if __name__ == "__main__":
    if shutil.which("psql") is None:
        raise SystemExit("psql is missing: run 'make deps'")
    main(sys.argv[1:])
