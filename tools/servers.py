"""Private servers for tests, benchmarks and ``make run``.

PostgreSQL 15 (Debian's binaries) in a folder of our own, on a free loopback
port, run as the ``postgres`` OS user when we are root. RabbitMQ likewise.

    python tools/servers.py start DIR   # make run: start (or reuse) and print how to connect
    python tools/servers.py stop DIR    # make stop
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DBNAME = "pg_message_queue"


def free_port() -> int:
    with socket.socket() as s:
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
            _as_owner(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(log), "-w", "-t", "60", "start"]
            ),
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
    print(f"PostgreSQL 15 with pg_message_queue is running (data in {pg.data}).")
    print("Connect with:")
    print(f'  psql "{pg.dsn(DBNAME)}"')
    print("Stop with: make stop")


def stop(base: Path) -> None:
    for pg_root in [base / "pg"]:
        if pg_root.exists():
            Postgres(pg_root.resolve()).stop()
            print(f"Stopped PostgreSQL in {pg_root}.")


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        raise SystemExit(__doc__)
    base = Path(argv[1]).resolve()
    {"start": start, "stop": stop}[argv[0]](base)


if __name__ == "__main__":
    if shutil.which("psql") is None:
        raise SystemExit("psql is missing: run 'make deps'")
    main(sys.argv[1:])
