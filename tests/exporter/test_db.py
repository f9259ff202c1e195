"""The pool's server-side deadline: always in force, never beyond the budget, sent only when due."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from exporter.collector import Deadline
from exporter.config import DatabaseConfig
from exporter.db import DEADLINE_KEPT_ABOVE, Database, deadline_ms

remaining = st.floats(min_value=0.0, max_value=3600.0, allow_nan=False)


def left_ms(remaining_s: float) -> int:
    return max(1, int(remaining_s * 1000) - 50)


@given(remaining, st.one_of(st.none(), st.integers(min_value=1, max_value=4_000_000)))
def test_the_timeout_in_force_never_outlasts_what_is_left(remaining_s: float,
                                                          in_force: int | None) -> None:
    sent = deadline_ms(remaining_s, in_force)
    now_in_force = in_force if sent is None else sent
    assert now_in_force is not None
    assert now_in_force <= left_ms(remaining_s)
    if sent is None:  # kept only when it does not cut the budget needlessly short
        assert now_in_force >= DEADLINE_KEPT_ABOVE * left_ms(remaining_s)


@given(st.floats(min_value=0.5, max_value=3600.0), st.floats(min_value=-0.04, max_value=0.04))
def test_scrape_to_scrape_jitter_sends_nothing(remaining_s: float, jitter: float) -> None:
    """What a value sent for one scrape is kept for the next, a few per cent earlier or later."""
    sent = deadline_ms(remaining_s, None)
    assert sent is not None
    assert deadline_ms(remaining_s * (1 + jitter), sent) is None


@pytest.fixture
def db(exporter_dsn: str) -> Iterator[Database]:
    database = Database(DatabaseConfig(dsn=SecretStr(exporter_dsn), pool_max_size=1))
    yield database
    database.close()


def in_force_ms(db: Database, deadline: Deadline) -> tuple[int, int]:
    """statement_timeout and lock_timeout on the pooled connection, in ms."""
    with db.connection(deadline) as conn:
        row = conn.execute("SELECT current_setting('statement_timeout'),"
                           " current_setting('lock_timeout')").fetchone()
    assert row is not None
    return tuple(int(v.removesuffix("ms")) for v in row)  # type: ignore[return-value]


def test_each_checkout_has_a_timeout_within_its_deadline(db: Database) -> None:
    long = in_force_ms(db, Deadline.after(10.0))
    assert long[0] == long[1]
    assert DEADLINE_KEPT_ABOVE * 9_950 <= long[0] <= 9_950
    assert in_force_ms(db, Deadline.after(10.0)) == long  # kept: not sent again
    short = in_force_ms(db, Deadline.after(2.0))  # would outlast this deadline: sent again
    assert short[0] == short[1] <= 1_950
    longer = in_force_ms(db, Deadline.after(30.0))  # needlessly short for this one: sent again
    assert DEADLINE_KEPT_ABOVE * 29_950 <= longer[0] <= 29_950


@pytest.fixture
def round_trip_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts psycopg_pool's own check (one round trip each) as the pool runs it."""
    checks: list[int] = []
    own = ConnectionPool.check_connection

    def counted(conn: psycopg.Connection[Any]) -> None:
        checks.append(1)
        own(conn)

    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(counted))
    return checks


def backend_pid(db: Database) -> int:
    with db.connection(Deadline.after(10.0)) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def test_a_quiet_connection_is_lent_without_a_round_trip(db: Database,
                                                         round_trip_checks: list[int]) -> None:
    first = backend_pid(db)
    for _ in range(5):
        assert backend_pid(db) == first  # the same pooled connection, every time
    assert round_trip_checks == []


def test_a_connection_the_server_ended_is_replaced_before_it_is_lent(
        db: Database, db_dsn: str, round_trip_checks: list[int]) -> None:
    first = backend_pid(db)
    with psycopg.connect(db_dsn, autocommit=True) as admin:
        # Returns once the backend has exited (PostgreSQL 14+): its goodbye (FATAL, then the
        # close) has made the idle pooled connection's socket readable.
        admin.execute("SELECT pg_terminate_backend(%s, 10000)", (first,))
    second = backend_pid(db)  # no error: the check ran, failed, and the pool opened another
    assert second != first
    assert round_trip_checks == [1]

