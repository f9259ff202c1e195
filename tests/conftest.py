"""Shared fixtures: a real PostgreSQL and a real Redis for the whole session.

A test that needs a tool that is missing fails (never skips): CI must not go green by running less.
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

from exporter.demo.postgres import EmbeddedPostgres
from exporter.demo.redis import RedisServer


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


@pytest.fixture(scope="session")
def pg() -> Iterator[EmbeddedPostgres]:
    base = server_dir("pg")
    server = EmbeddedPostgres(base).start()
    server.create_database("freesport_template")
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


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
def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
