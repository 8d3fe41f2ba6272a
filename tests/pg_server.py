"""A real PostgreSQL server for the tests, started on a free loopback port in a temporary folder
(``initdb`` + ``pg_ctl``; as the ``postgres`` user when the tests run as root, which PostgreSQL
refuses) and stopped afterwards. Password authentication (scram) is on, so tests can check that
a password is used and never shown. ``.ci/run`` installs the server where it is missing."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    # Debian's packages keep them out of PATH
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """``initdb`` a temporary cluster, start it on a free port; ``url(db)`` gives a URL with the
    superuser's password in it."""

    user = "postgres"

    def __init__(self) -> None:
        pytest.importorskip("psycopg", reason="psycopg is not installed")
        self.initdb, self.pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if self.initdb is None or self.pg_ctl is None:
            pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
        self.run_as: str | None = None
        if os.geteuid() == 0:  # postgres will not run as root
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no 'postgres' user to run the server")
            self.run_as = "postgres"
        self.password = f"pw-{uuid.uuid4().hex}"
        self.dir = Path(tempfile.mkdtemp(prefix="synthgen-pg-"))
        self.port = _free_port()

    def _cmd(self, *args: str) -> list[str]:
        if self.run_as is None:
            return list(args)
        return ["runuser", "-u", self.run_as, "--", *args]

    def start(self) -> None:
        assert self.initdb is not None and self.pg_ctl is not None
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        if self.run_as is not None:
            os.chown(pwfile, pwd.getpwnam(self.run_as).pw_uid, -1)
        subprocess.run(self._cmd(self.initdb, "-D", str(self.dir / "data"), "-U", self.user,
                                 "-A", "scram-sha-256", f"--pwfile={pwfile}", "--no-sync",
                                 "-E", "UTF8", "--locale=C"),
                       check=True, capture_output=True, timeout=120)
        pwfile.unlink()
        subprocess.run(self._cmd(
            self.pg_ctl, "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w",
            "-t", "60", "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off", "start"),
            check=True, capture_output=True, timeout=90)

    def stop(self) -> None:
        assert self.pg_ctl is not None
        subprocess.run(self._cmd(self.pg_ctl, "-D", str(self.dir / "data"), "-m", "immediate",
                                 "stop"), capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str = "postgres", *, password: str | None = None,
            driver: str = "postgresql") -> str:
        secret = self.password if password is None else password
        return f"{driver}://{self.user}:{secret}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its name."""
        from sqlalchemy import create_engine, text

        name = name or f"db_{uuid.uuid4().hex[:10]}"
        engine = create_engine(self.url(driver="postgresql+psycopg"),
                               isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return name

    def execute(self, database: str, *statements: str) -> None:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url(database, driver="postgresql+psycopg"))
        try:
            with engine.begin() as conn:
                for statement in statements:
                    conn.execute(text(statement))
        finally:
            engine.dispose()

    def rows(self, database: str, query: str) -> list[tuple[object, ...]]:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url(database, driver="postgresql+psycopg"))
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(query)).all()]
        finally:
            engine.dispose()

