"""The PostgreSQL collector on a real server, checked against an independent pg_stat_activity."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

from collectors.postgres import OTHER_APPLICATION, STATES, PostgresCollector
from exporter.collector import CollectorError, Deadline, Reason
from exporter.config import DatabaseConfig, PostgresConfig
from exporter.db import Database
from tests.conftest import server_dir
from tests.exposition import promtool_problems, samples, value
from tests.pg_majors import (
    EXPORTER_PASSWORD,
    EXPORTER_ROLE,
    PgMajor,
    exporter_role_dsn,
    grant_exporter,
)

pytestmark = pytest.mark.every_pg_major


@pytest.fixture
def app_name() -> str:
    return f"exporter-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def db(exporter_dsn: str, app_name: str) -> Iterator[Database]:
    # One pooled connection: the exporter's only backend is the one running the query.
    database = Database(
        DatabaseConfig(dsn=SecretStr(exporter_dsn), application_name=app_name, pool_max_size=1)
    )
    yield database
    database.close()


def independent_states(checker: psycopg.Connection[Any], exporter_app: str) -> dict[str, int]:
    """pg_stat_activity read by another connection, as the collector saw it a moment before.

    The exporter's pooled backend is left out (the collector excludes itself) and the checker,
    which was idle while the collector ran, is counted as idle.
    """
    rows = checker.execute(
        "SELECT coalesce(state, 'unknown'), count(*)::int FROM pg_stat_activity"
        " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        " AND application_name <> %s GROUP BY 1",
        (exporter_app,),
    ).fetchall()
    out = {state: 0 for state in STATES}
    out.update(dict(rows))
    out["idle"] += 1
    return out


def settled(
    collect: Callable[[], dict[Any, float]], truth: Callable[[], dict[Any, float]]
) -> tuple[dict[Any, float], dict[Any, float]]:
    """The collector's view and the independent one, re-read briefly until they agree.

    A backend closed just before (by this or an earlier test) exits asynchronously and may
    vanish between the two reads; a wrong collector never agrees.
    """
    for _ in range(20):
        got, want = collect(), truth()
        if got == want:
            break
        time.sleep(0.05)
    return got, want


def wait_for_state(checker: psycopg.Connection[Any], pid: int, state: str) -> None:
    end = time.monotonic() + 5
    query = "SELECT state FROM pg_stat_activity WHERE pid = %s"
    while checker.execute(query, (pid,)).fetchone() != (state,):
        assert time.monotonic() < end, f"backend {pid} never became {state!r}"
        time.sleep(0.02)


def test_connections_by_state_appear_and_disappear(
    db: Database, db_dsn: str, app_name: str
) -> None:
    collector = PostgresCollector(db, PostgresConfig())
    with psycopg.connect(db_dsn, autocommit=True, application_name="checker") as checker:

        def got() -> dict[Any, float]:
            families = collector.collect(Deadline.after(5))
            return samples(families, "customer_sync_postgres_connections")

        def truth() -> dict[Any, float]:
            return {(s,): float(n) for s, n in independent_states(checker, app_name).items()}

        before, expected = settled(got, truth)
        assert before == expected

        opened: list[psycopg.Connection[Any]] = []
        for _ in range(2):  # idle
            opened.append(psycopg.connect(db_dsn, autocommit=True))
        in_tx = psycopg.connect(db_dsn)  # idle in transaction
        in_tx.execute("SELECT 1")
        aborted = psycopg.connect(db_dsn)  # idle in transaction (aborted)
        with pytest.raises(psycopg.errors.DivisionByZero):
            aborted.execute("SELECT 1/0")
        busy = psycopg.connect(db_dsn, autocommit=True)  # active

        def sleep_until_cancelled() -> None:
            with pytest.raises(psycopg.errors.QueryCanceled):
                busy.execute("SELECT pg_sleep(30)")

        sleeper = threading.Thread(target=sleep_until_cancelled)
        sleeper.start()
        opened += [in_tx, aborted, busy]
        try:
            wait_for_state(checker, busy.info.backend_pid, "active")
            during, expected = settled(got, truth)
            assert during == expected
            # The connections this test opened show up as exactly these differences.
            diff = {s[0]: during[s] - before[s] for s in during}
            assert diff["idle"] == 2
            assert diff["idle in transaction"] == 1
            assert diff["idle in transaction (aborted)"] == 1
            assert diff["active"] == 1
        finally:
            busy.cancel_safe()
            sleeper.join(5)
            for conn in opened:
                conn.close()

        end = time.monotonic() + 5
        while True:  # backends exit asynchronously after the client closes
            after, expected = settled(got, truth)
            if after == before or time.monotonic() > end:
                break
            time.sleep(0.05)
        assert after == expected
        assert after == before


def test_sessions_hidden_from_the_role_count_as_unknown(
    db: Database, db_dsn: str, app_name: str, conn: psycopg.Connection[Any]
) -> None:
    """Without pg_read_all_stats, another role's sessions show neither state nor backend_type
    (both NULL): they still count, under 'unknown' and by application_name, not vanish."""
    collector = PostgresCollector(db, PostgresConfig(application_names=["freesport-web"]))
    others = [psycopg.connect(db_dsn, application_name="freesport-web") for _ in range(3)]
    conn.execute(f"REVOKE pg_read_all_stats FROM {EXPORTER_ROLE}")
    try:
        with psycopg.connect(db_dsn, autocommit=True, application_name="checker") as checker:

            def got() -> dict[Any, float]:
                families = collector.collect(Deadline.after(5))
                return {"total": sum(samples(families, "customer_sync_postgres_connections")
                                     .values()),
                        **samples(families, "customer_sync_postgres_application_connections")}

            def truth() -> dict[Any, float]:
                states = independent_states(checker, app_name)
                return {"total": float(sum(states.values())), ("freesport-web",): 3.0,
                        (OTHER_APPLICATION,): float(sum(states.values()) - 3)}

            seen, expected = settled(got, truth)
            assert seen == expected
            families = collector.collect(Deadline.after(5))
            states = samples(families, "customer_sync_postgres_connections")
            # Every session but the exporter's own pool is another role's: none has a state.
            assert states[("unknown",)] == seen["total"] >= 5  # 3 + checker + conn
    finally:
        conn.execute(f"GRANT pg_read_all_stats TO {EXPORTER_ROLE}")
        for other in others:
            other.close()


def test_application_allow_list_with_other_bucket(db: Database, db_dsn: str, app_name: str) -> None:
    config = PostgresConfig(application_names=["freesport-web", "celery", "never-connected"])
    collector = PostgresCollector(db, config)
    conns = [
        psycopg.connect(db_dsn, application_name=name)
        for name in ("freesport-web", "freesport-web", "celery", "some-script")
    ]
    try:
        with psycopg.connect(db_dsn, autocommit=True, application_name="checker") as checker:

            def got() -> dict[Any, float]:
                return samples(
                    collector.collect(Deadline.after(5)),
                    "customer_sync_postgres_application_connections",
                )

            def truth() -> dict[Any, float]:
                rows = dict(
                    checker.execute(
                        "SELECT application_name, count(*)::int FROM pg_stat_activity"
                        " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
                        " AND application_name <> %s GROUP BY 1",
                        (app_name,),
                    ).fetchall()
                )
                rows["checker"] = rows.get("checker", 0) + 1  # idle while the collector ran
                listed = {n: rows.pop(n, 0) for n in config.application_names}
                out = {(n,): float(v) for n, v in listed.items()}
                out[(OTHER_APPLICATION,)] = float(sum(rows.values()))
                return out

            seen, expected = settled(got, truth)
        assert seen == expected
        assert {k: seen[k] for k in [("freesport-web",), ("celery",), ("never-connected",)]} == {
            ("freesport-web",): 2,
            ("celery",): 1,
            ("never-connected",): 0,
        }
    finally:
        for conn in conns:
            conn.close()


def test_pool_stats_match_the_pool(db: Database) -> None:
    collector = PostgresCollector(db, PostgresConfig())
    collector.collect(Deadline.after(5))  # the first scrape opens the pool's connection
    families = collector.collect(Deadline.after(5))
    stats = db.pool.get_stats()
    pool = samples(families, "customer_sync_exporter_db_pool_connections")
    assert pool == {
        ("available",): stats["pool_available"],
        ("in_use",): stats["pool_size"] - stats["pool_available"],
    }
    assert pool[("available",)] == 1 and pool[("in_use",)] == 0
    assert value(families, "customer_sync_exporter_db_pool_max_connections") == 1
    assert value(families, "customer_sync_exporter_db_pool_waiting_requests") == 0
    assert value(families, "customer_sync_postgres_up") == 1
    assert promtool_problems(families) == ""
    # Nothing the families show moved (the pool's checkout counters did): the same objects.
    again = {f.name: f for f in collector.collect(Deadline.after(5))}
    for family in families:
        if family.name.startswith("customer_sync_exporter_db_pool"):
            assert again[family.name] is family


def test_exhausted_pool_reports_waiters_and_times_out(db: Database) -> None:
    """The only pooled connection is held and another caller waits: the collector says so."""
    collector = PostgresCollector(db, PostgresConfig())
    waiter_done = threading.Event()

    def waiter() -> None:  # another user of the pool, patient enough to outlast the scrape
        with db.pool.connection(timeout=5):
            pass
        waiter_done.set()

    with db.connection(Deadline.after(10)):
        thread = threading.Thread(target=waiter)
        thread.start()
        end = time.monotonic() + 3
        while db.pool.get_stats().get("requests_waiting", 0) < 1:
            assert time.monotonic() < end
            time.sleep(0.01)
        start = time.monotonic()
        with pytest.raises(CollectorError) as caught:
            collector.collect(Deadline.after(2))
        assert time.monotonic() - start < 2
    thread.join(5)
    assert waiter_done.is_set()
    assert caught.value.reason is Reason.TIMEOUT
    partial = caught.value.partial
    assert value(partial, "customer_sync_postgres_up") == 0
    assert samples(partial, "customer_sync_exporter_db_pool_connections") == {
        ("available",): 0,
        ("in_use",): 1,
    }
    assert value(partial, "customer_sync_exporter_db_pool_waiting_requests") == 1
    assert promtool_problems(partial) == ""


def test_usable_connections_and_kill_and_recovery(pg_major: PgMajor) -> None:
    """reserved_connections (for pg_use_reserved_connections) exists only from PostgreSQL 16."""
    settings = {"max_connections": 40, "superuser_reserved_connections": 2}
    if pg_major.major >= 16:
        settings["reserved_connections"] = 5
    server = pg_major.server(
        server_dir("usable"), settings={k: str(v) for k, v in settings.items()}
    ).start()
    db = Database(DatabaseConfig(dsn=SecretStr(exporter_role_dsn(server)), connect_timeout=1))
    collector = PostgresCollector(db, PostgresConfig())
    try:
        server.create_database()
        grant_exporter(server, "freesport")
        families = collector.collect(Deadline.after(5))
        with psycopg.connect(server.dsn("postgres")) as conn:
            found = dict(
                conn.execute(
                    "SELECT name, setting::int FROM pg_settings WHERE name IN"
                    " ('max_connections', 'superuser_reserved_connections',"
                    " 'reserved_connections')"
                ).fetchall()
            )
        assert found == settings
        usable = 40 - 2 - (5 if pg_major.major >= 16 else 0)
        assert value(families, "customer_sync_postgres_connections_usable") == usable
        assert value(families, "customer_sync_postgres_up") == 1

        server.kill()
        start = time.monotonic()
        with pytest.raises(CollectorError) as caught:
            collector.collect(Deadline.after(3))
        assert time.monotonic() - start < 3
        assert caught.value.reason is Reason.CONNECT, caught.value.message
        assert value(caught.value.partial, "customer_sync_postgres_up") == 0
        assert server.password not in caught.value.message

        server.start()
        end = time.monotonic() + 10
        while True:  # the pool reconnects by itself; no restart of the exporter
            try:
                families = collector.collect(Deadline.after(3))
                break
            except CollectorError:
                assert time.monotonic() < end, "the collector did not recover"
                time.sleep(0.1)
        assert value(families, "customer_sync_postgres_up") == 1
    finally:
        db.close()
        server.stop()


def test_wrong_password_is_auth_and_never_shown(exporter_dsn: str) -> None:
    wrong = "not-" + EXPORTER_PASSWORD
    dsn = exporter_dsn.replace(f":{EXPORTER_PASSWORD}@", f":{wrong}@")
    assert wrong in dsn
    db = Database(DatabaseConfig(dsn=SecretStr(dsn), connect_timeout=1))
    try:
        with pytest.raises(CollectorError) as caught:
            PostgresCollector(db, PostgresConfig()).collect(Deadline.after(3))
    finally:
        db.close()
    assert caught.value.reason is Reason.AUTH, caught.value.message
    assert value(caught.value.partial, "customer_sync_postgres_up") == 0
    assert wrong not in caught.value.message and EXPORTER_PASSWORD not in caught.value.message
