"""Shared fixtures: a real PostgreSQL and a real Redis for the whole session, a 1C stand-in.

A test that needs a tool that is missing fails (never skips): CI must not go green by running less.

PostgreSQL: a module marked ``every_pg_major`` runs each of its tests that use PostgreSQL once per
major in ``tests.pg_majors.PG_MAJORS`` (ids ``[pg18]``, ``[pg15]``), except tests marked
``one_pg_major``; every other test gets the default major. A test that starts its own server
asks for ``pg_major`` and builds it with ``pg_major.server(...)``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from exporter.demo.onec import OneCStandIn
from exporter.demo.postgres import EmbeddedPostgres
from exporter.demo.redis import RedisServer
from tests.pg_majors import DEFAULT_MAJOR, PG_MAJORS, PgMajor, grant_exporter


def require_binary(name: str) -> str:
    """The path of ``name``; a missing tool fails the test, so CI cannot pass by skipping."""
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed; .ci/run installs it (apt-get)")
    return found


def server_dir(prefix: str) -> Path:
    """A directory the unprivileged PostgreSQL user can reach when tests run as root.

    Not under pytest's tmp_path: pytest resets its base directory to mode 0700 whenever another
    pytest process starts, which would lock the server out of its own data directory.
    """
    return Path(tempfile.mkdtemp(prefix=f"csx-{prefix}-"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    definition = metafunc.definition
    if "pg_major" not in metafunc.fixturenames or not definition.get_closest_marker(
        "every_pg_major"
    ):
        return
    majors = (DEFAULT_MAJOR,) if definition.get_closest_marker("one_pg_major") else PG_MAJORS
    # Module scope: a module's tests run grouped by major, and a module-scoped stack built on
    # pg_major (the fault catalogue's) is shared by that major's tests.
    metafunc.parametrize("pg_major", majors, indirect=True, ids=[str(m) for m in majors],
                         scope="module")


@pytest.fixture(scope="session")
def pg_major(request: pytest.FixtureRequest) -> PgMajor:
    """The PostgreSQL major this test runs on (see the module docstring)."""
    return getattr(request, "param", DEFAULT_MAJOR)


class PgServers:
    """One server per major for the whole session, each started when a test first needs it."""

    def __init__(self) -> None:
        self.servers: dict[PgMajor, EmbeddedPostgres] = {}
        self.failed: dict[PgMajor, str] = {}

    def get(self, major: PgMajor) -> EmbeddedPostgres:
        if major in self.failed:  # fail every test of that major at once, not after a timeout
            pytest.fail(self.failed[major])
        if major not in self.servers:
            server = major.server(server_dir(str(major)))
            try:
                server.start()
                server.create_database("freesport_template")
            except Exception as exc:
                server.stop()
                self.failed[major] = f"PostgreSQL {major.major} did not start: {exc}"
                raise
            self.servers[major] = server
        return self.servers[major]

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
            shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_servers() -> Iterator[PgServers]:
    servers = PgServers()
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def pg(pg_servers: PgServers, pg_major: PgMajor) -> EmbeddedPostgres:
    """The session's server of this test's major, with a ``freesport_template`` database."""
    return pg_servers.get(pg_major)


@pytest.fixture
def db_dsn(pg: EmbeddedPostgres) -> Iterator[str]:
    """A fresh database with the FREESPORT schema for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE freesport_template')
    yield pg.dsn(name)
    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def exporter_dsn(pg: EmbeddedPostgres, db_dsn: str) -> str:
    """``db_dsn``'s database as the exporter's least-privilege role: the README's grants only."""
    return grant_exporter(pg, db_dsn.rsplit("/", 1)[1])


@pytest.fixture
def conn(db_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the test's fresh database."""
    with psycopg.connect(db_dsn, autocommit=True) as c:
        yield c


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def onec() -> Iterator[OneCStandIn]:
    """A fresh local 1C HTTP stand-in on loopback (plain HTTP, no credentials), in mode ok."""
    with OneCStandIn() as server:
        yield server


@pytest.fixture
def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
