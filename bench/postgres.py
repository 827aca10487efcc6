"""A throwaway PostgreSQL server for `make bench`: `initdb` in a temporary
directory, `postgres` on a free loopback port (as the `postgres` OS user
when the bench runs as root, which PostgreSQL refuses to be), an admin role
and two databases: one for cello's SQL capability, one for FastAPI. The
same recipe as the tests' harness (tests/support/postgres.rs)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PASSWORD = "bench-secret"


def bin_dir() -> Path:
    """The newest installed PostgreSQL's programs (Debian's layout)."""
    versions = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not versions:
        raise RuntimeError("PostgreSQL is not installed: `make setup` installs it")
    return versions[-1]


class Postgres:
    """`with Postgres() as pg:` a server for the block; `pg.url(database)`."""

    def __init__(self) -> None:
        self.bin = bin_dir()
        self.root = os.geteuid() == 0
        # Not under the bench's scratch directory, which only its owner may
        # enter: the server runs as another user.
        self.dir = Path(tempfile.mkdtemp(prefix="bench-pg-", dir=os.environ.get("TMPDIR", "/tmp")))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.process: subprocess.Popen | None = None

    def _as_postgres(self, program: str, *args: str) -> list[str]:
        command = [str(self.bin / program), *args]
        return ["runuser", "-u", "postgres", "--", *command] if self.root else command

    def psql(self, sql: str, database: str = "postgres") -> subprocess.CompletedProcess:
        command = self._as_postgres(
            "psql", "-h", str(self.dir), "-p", str(self.port), "-U", "postgres",
            "-d", database, "-v", "ON_ERROR_STOP=1", "-qc", sql,
        )  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True)

    def __enter__(self) -> Postgres:
        if self.root:
            shutil.chown(self.dir, "postgres")
        pwfile = self.dir / "pw"
        pwfile.write_text(PASSWORD)
        if self.root:
            shutil.chown(pwfile, "postgres")
        data = self.dir / "data"
        subprocess.run(
            self._as_postgres(
                "initdb", "-U", "postgres", "--auth-local=trust",
                "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-D", str(data),
            ),
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        # Durable writes as a real server makes them; the bench reads.
        self.process = subprocess.Popen(
            self._as_postgres(
                "postgres", "-D", str(data), "-p", str(self.port), "-k", str(self.dir),
                "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200",
            ),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while self.psql("SELECT 1").returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not start within 30 s")
            time.sleep(0.1)
        for sql in (
            f"CREATE ROLE cello LOGIN SUPERUSER PASSWORD '{PASSWORD}'",
            "CREATE DATABASE cello OWNER cello",
            "CREATE DATABASE fastapi OWNER cello",
        ):
            done = self.psql(sql)
            if done.returncode != 0:
                raise RuntimeError(f"{sql}: {done.stderr}")
        return self

    def url(self, database: str) -> str:
        return f"postgres://cello:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            subprocess.run(
                self._as_postgres("pg_ctl", "stop", "-D", str(self.dir / "data"), "-m", "fast"),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            self.process.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)
