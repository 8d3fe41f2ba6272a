"""A real MariaDB (or MySQL) server for the tests, started on a free loopback port in a temporary
folder and stopped afterwards, as :mod:`pg_server` does for PostgreSQL: ``mariadb-install-db``
(MySQL: ``mysqld --initialize-insecure``), then ``mariadbd`` / ``mysqld`` with its socket, data
and logs in that folder. Root gets a password, so tests can check that a password is used and
never shown. Only MariaDB 10.11 (Debian 12's ``mariadb-server``) has been run here; ``.ci/run``
installs it where missing. Connects through PyMySQL (the dev extra)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

# Binaries in PATH or where Debian's and MySQL's packages put them.
_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/mysql/bin")


def _binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or next(
            (f"{d}/{name}" for d in _DIRS if os.access(f"{d}/{name}", os.X_OK)), None)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MySQLServer:
    """A temporary MariaDB/MySQL server on a free port; ``url(db)`` gives a
    ``mysql+pymysql://`` URL with root's password in it."""

    user = "root"

    def __init__(self) -> None:
        pytest.importorskip("pymysql", reason="PyMySQL is not installed (the dev extra)")
        self.server = _binary("mariadbd", "mysqld")
        self.install = _binary("mariadb-install-db", "mysql_install_db")
        if self.server is None:
            # not one of conftest.ALLOWED_SKIPS: under SYNTHGEN_NO_SKIP=1 (CI) this fails
            pytest.skip("no MariaDB/MySQL server binary (mariadbd or mysqld) is installed")
        self.password = f"pw-{uuid.uuid4().hex}"
        self.dir = Path(tempfile.mkdtemp(prefix="synthgen-my-"))
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def _initialize(self, data: Path) -> None:
        assert self.server is not None
        as_root = ["--user=root"] if os.geteuid() == 0 else []
        version = subprocess.run([self.server, "--version"], capture_output=True, text=True,
                                 timeout=60).stdout
        if "mariadb" in version.lower() and self.install is not None:
            command = [self.install, "--no-defaults", f"--datadir={data}", "--skip-test-db",
                       "--auth-root-authentication-method=normal", *as_root]
        else:  # MySQL 5.7+: the server initializes its own data folder
            command = [self.server, "--no-defaults", "--initialize-insecure",
                       f"--datadir={data}", *as_root]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        assert self.server is not None
        data = self.dir / "data"
        self._initialize(data)
        self.socket = str(self.dir / "sock")
        self.process = subprocess.Popen([
            self.server, "--no-defaults", f"--datadir={data}", f"--port={self.port}",
            "--bind-address=127.0.0.1", f"--socket={self.socket}",
            f"--pid-file={self.dir / 'pid'}", f"--log-error={self.dir / 'log'}",
            "--skip-name-resolve", "--innodb-buffer-pool-size=32M",
            "--innodb-flush-log-at-trx-commit=0", *(
                ["--user=root"] if os.geteuid() == 0 else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import pymysql

        deadline = time.monotonic() + 60
        while True:  # root has no password yet: set one over the socket
            try:
                conn = pymysql.connect(unix_socket=self.socket, user=self.user)
                break
            except pymysql.err.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.dir / "log").read_text(errors="replace")[-2000:] if (
                        self.dir / "log").exists() else ""
                    self.stop()
                    raise RuntimeError(f"the MySQL server did not start:\n{log}") from None
                time.sleep(0.2)
        with conn, conn.cursor() as cur:
            for host in ("localhost", "127.0.0.1"):
                cur.execute(f"CREATE USER IF NOT EXISTS 'root'@'{host}'")
                cur.execute(f"ALTER USER 'root'@'{host}' IDENTIFIED BY '{self.password}'")
                cur.execute(f"GRANT ALL ON *.* TO 'root'@'{host}' WITH GRANT OPTION")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str = "mysql", *, password: str | None = None,
            driver: str = "mysql+pymysql") -> str:
        secret = self.password if password is None else password
        return f"{driver}://{self.user}:{secret}@127.0.0.1:{self.port}/{database}"

    def _connect(self, database: str | None = None) -> object:
        import pymysql

        return pymysql.connect(host="127.0.0.1", port=self.port, user=self.user,
                               password=self.password, database=database, autocommit=True)

    def create_database(self) -> str:
        """A new empty database (utf8mb4); its name."""
        name = f"db_{uuid.uuid4().hex[:10]}"
        self.execute(None, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        return name

    def execute(self, database: str | None, *statements: str) -> None:
        conn = self._connect(database)
        with conn, conn.cursor() as cur:  # type: ignore[attr-defined]
            for statement in statements:
                cur.execute(statement)

    def rows(self, database: str, query: str) -> list[tuple[object, ...]]:
        conn = self._connect(database)
        with conn, conn.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute(query)
            return [tuple(r) for r in cur.fetchall()]
