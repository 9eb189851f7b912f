"""A throwaway PostgreSQL server for the storage tests and the load benchmark.

It is made with ``initdb`` in a temporary directory and started with
``pg_ctl`` on a free loopback port; stopping it deletes everything.
PostgreSQL refuses to run as root, so under root both run as the
``postgres`` user that Debian's package creates.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 60
SERVICE_USER = "postgres"
# Settings for tests: durability buys nothing in a directory deleted after.
FAST = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
SHARED_DATABASE = "segscan"
# Empties every table but the schema's version, in one round trip.
WIPE = """DO $$ DECLARE t text; BEGIN
FOR t IN SELECT tablename FROM pg_tables
    WHERE schemaname = 'public' AND tablename <> 'alembic_version'
LOOP EXECUTE format('TRUNCATE %I', t); END LOOP; END $$"""


def bindir() -> Path | None:
    """Where the server's programs are: Debian keeps them off PATH."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")

    return Path(found).parent if found else None


@dataclass
class PostgresServer:
    """A running server; ``url(name)`` is an asyncpg URL for database ``name``."""

    base: Path
    port: int
    bin: Path
    _shared: bool = False

    @classmethod
    def start(cls, durable: bool = False) -> PostgresServer:
        """Make and start a server; raise ``RuntimeError`` if it cannot be."""
        programs = bindir()
        if programs is None:
            raise RuntimeError(
                "PostgreSQL is not installed (apt-get install postgresql)"
            )
        base = Path(tempfile.mkdtemp(prefix="segscan-pg-"))
        server = cls(base, _free_port(), programs)
        try:
            server._init(durable)
        except BaseException:
            server.stop()
            raise

        return server

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a new, empty database (about a second to make)."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._psql(f'CREATE DATABASE "{name}"')

        return self.url(name)

    def wiped_database(self) -> str:
        """The URL of the shared database ``segscan``, every table emptied.

        Emptying keeps the schema and takes milliseconds, where a new database
        takes a second: the storage tests use this one, one test at a time.
        """
        if not self._shared:
            self._psql(f'CREATE DATABASE "{SHARED_DATABASE}"')
            self._shared = True
        else:
            self._psql(WIPE, SHARED_DATABASE)

        return self.url(SHARED_DATABASE)

    def stop(self) -> None:
        """Stop the server at once and delete its files."""
        data = self.base / "data"
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError):
                self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)

    def _init(self, durable: bool) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVICE_USER)
            os.chown(self.base, user.pw_uid, user.pw_gid)
        data = str(self.base / "data")
        self._run(
            "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip
        options = ["-p", str(self.port), "-k", str(self.base)]
        options += ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"]
        if not durable:
            options += FAST
        log = str(self.base / "server.log")
        self._run(
            "pg_ctl", "-D", data, "-l", log, "-o", " ".join(options), "-w",
            "-t", str(START_TIMEOUT_S), "start",
        )  # fmt: skip

    def _psql(self, sql: str, database: str = "postgres") -> None:
        self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-d", database, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql,
        )  # fmt: skip

    def _run(self, program: str, *args: str) -> None:
        argv = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", SERVICE_USER, "--", *argv]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S + 10,
            cwd=self.base,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stderr.strip()}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]

    return port
