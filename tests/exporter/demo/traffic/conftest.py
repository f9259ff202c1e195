"""The traffic package's shared ground: one simulated stretch of live traffic for the shape tests.

The checks in this package are written from DATA.md, not from the simulator's code: key sets per
writer, status sets per operation, processor rows without durations and with one correlation id
per row, logger rows sharing one per instance, import-session totals equal to the rows of that
session. Everything runs against a real PostgreSQL holding the FREESPORT schema.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest

from exporter.demo.traffic import NO_OUTAGES, Mix, TrafficSimulator
from tests.conftest import PgServers
from tests.pg_majors import DEFAULT_MAJOR

Written = tuple[str, datetime, datetime]  # the DSN and the DB-time window of the writes


def q(dsn: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def one(dsn: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    return q(dsn, query, params)[0][0]


@pytest.fixture(scope="package")
def written(pg_servers: PgServers) -> Iterator[Written]:
    """3000 live rows, with a forced 1C outage in the middle, written once for the read-only
    shape tests on the default PostgreSQL major (``pg`` is per module, this is per package);
    returns the DSN and the DB-time window of the writes."""
    pg = pg_servers.get(DEFAULT_MAJOR)
    name = f"t_traffic_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE freesport_template')
    dsn = pg.dsn(name)
    sim = TrafficSimulator(
        dsn, random.Random(7), schedule=NO_OUTAGES, mix=Mix(import_gap_seconds=0)
    )
    before = one(dsn, "SELECT now()")
    for _ in range(10):
        sim.step(200)
    sim.force_outage(True)
    sim.step(400)
    sim.force_outage(False)
    sim.step(600)
    sim.stop()
    after = one(dsn, "SELECT now()")
    yield dsn, before, after
    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
