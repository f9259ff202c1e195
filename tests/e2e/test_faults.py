"""The fault catalogue: real PostgreSQL, Redis, 1C stand-in and folders broken on purpose under one
running exporter process, with ten scrapers hammering it the whole time.

Each case checks: HTTP 200 with partial results before the scrape deadline, the right ``*_up`` and
failure reason, recovery without a restart, and, at a quiet moment afterwards, that
``customer_sync_operations_total`` equals ``SELECT operation_type, status, count(*)`` (nothing
lost, nothing counted twice). The last case checks what the ten scrapers saw over all of it. Every
secret field holds a marker that must never show up (see also test_secrets.py).
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from exporter.demo.onec import Mode
from tests.e2e.faults_stack import (
    BUDGET,
    SCRAPE_TIMEOUT_HEADER,
    TABLE,
    WALK_TIMEOUT,
    HugeFolder,
    Markers,
    Probe,
    RssSampler,
    Scrapers,
    Stack,
    Writer,
    build_stack,
    close_stack,
    leaks,
)
from tests.pg_majors import PgMajor
from tests.synclog_rows import LogRow, insert_rows
from tests.tls_certs import issue, make_ca

# The PostgreSQL cases run on every major (a stack each); the others on the default one only.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420), pytest.mark.every_pg_major]

MARKERS = Markers()
DB_COLLECTORS = ("synclog", "business", "postgres")
OTHERS = ("redis", "disk", "onec", "process")
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


@dataclass
class Faults:
    stack: Stack
    huge: HugeFolder
    down_at_start: Probe


@pytest.fixture(scope="module")
def faults(pg_major: PgMajor) -> Iterator[Faults]:
    stack = build_stack("faults", MARKERS, pg_major=pg_major, least_privilege=True)
    huge = HugeFolder(stack.base / "huge-staging", stack.dirs["huge"])
    try:
        huge.start()  # a million files, made in the background while the first cases run
        stack.exporter.start()  # PostgreSQL is not running yet
        stack.scrapers = Scrapers(stack.exporter.url, MARKERS, stack.base / "scrapes.jsonl").start()
        stack.pg.init()
        down = stack.exporter.probe()
        stack.pg.start()
        stack.create_database()
        stack.writer = Writer(stack.dsn()).start()
        yield Faults(stack, huge, down)
    finally:
        huge.close()
        close_stack(stack)


@pytest.fixture(autouse=True)
def _timed_case(faults: Faults, request: pytest.FixtureRequest) -> Iterator[None]:
    start = time.monotonic()
    yield
    faults.stack.cases.append((request.node.name, start, time.monotonic()))


def assert_on_time(p: Probe) -> None:
    assert p.status == 200, p.text[:300]
    assert p.elapsed < SCRAPE_TIMEOUT_HEADER, p.summary()
    assert not leaks(p.text, MARKERS)


def assert_others_fine(p: Probe, *collectors: str) -> None:
    for c in collectors:
        assert p.success(c) == 1, (c, p.summary())


def wait_rows(writer: Writer, more_than: int, timeout: float = 15.0) -> int:
    end = time.monotonic() + timeout
    while writer.committed <= more_than:
        assert time.monotonic() < end, f"writer stuck at {writer.committed} rows"
        time.sleep(0.05)
    return writer.committed


# --- PostgreSQL --------------------------------------------------------------------------------


def test_exporter_runs_without_dac_override(faults: Faults) -> None:
    caps = faults.stack.exporter.capabilities()
    assert not caps & (1 << CAP_DAC_OVERRIDE) and not caps & (1 << CAP_DAC_READ_SEARCH)


def test_postgres_down_at_start_then_recovers(faults: Faults) -> None:
    s, p = faults.stack, faults.down_at_start
    assert_on_time(p)
    assert p.up("postgres") == 0
    for c in DB_COLLECTORS:
        assert p.reasons(c) == ["connect"], (c, p.summary())
    assert_others_fine(p, *OTHERS)
    assert p.up("redis") == 1 and p.up("onec") == 1
    assert s.writer is not None
    wait_rows(s.writer, 20)
    s.wait_healthy()
    s.assert_counts_match()


def test_postgres_killed_and_restarted_mid_traffic(faults: Faults) -> None:
    s = faults.stack
    assert s.writer is not None
    s.wait_healthy()
    before = wait_rows(s.writer, s.writer.committed + 30)  # rows written before the crash
    s.wait_until(lambda p: sum(p.operations().values()) >= before, "exporter saw them")
    s.pg.kill()
    p = s.wait_until(lambda p: p.up("postgres") == 0, "postgres_up 0 after the kill", 10)
    assert_on_time(p)
    for c in DB_COLLECTORS:
        assert p.reasons(c) == ["connect"], (c, p.summary())
    # Partial results: what was read before the crash is still served, with the others.
    assert sum(p.operations().values()) >= before
    assert_others_fine(p, *OTHERS)
    time.sleep(1.0)
    s.pg.start()
    wait_rows(s.writer, s.writer.committed + 30)  # rows written after the restart
    s.wait_healthy()
    s.assert_counts_match()


def exporter_queries(conn: psycopg.Connection[Any]) -> list[tuple[int, str, float]]:
    """(pid, wait_event_type, age in seconds) of every statement the exporter is running."""
    return conn.execute(
        "SELECT pid, coalesce(wait_event_type, ''),"
        " extract(epoch FROM clock_timestamp() - query_start)::float8"
        " FROM pg_stat_activity WHERE application_name = 'customer-sync-exporter'"
        " AND state = 'active' AND pid <> pg_backend_pid()"
    ).fetchall()


def watch_exporter_queries(s: Stack, seconds: float) -> tuple[float, bool]:
    """Sample the exporter's statements for ``seconds``: the oldest age seen, any lock wait."""
    oldest, lock_wait = 0.0, False
    end = time.monotonic() + seconds
    with s.connect() as watcher:
        while time.monotonic() < end:
            for _pid, wait, age in exporter_queries(watcher):
                oldest = max(oldest, age)
                lock_wait |= wait == "Lock"
            time.sleep(0.05)
    return oldest, lock_wait


def postgres_log_since(s: Stack, offset: int) -> str:
    with open(s.pg.data_dir / "postgres.log", "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def test_query_slower_than_deadline_is_cancelled_by_postgres(faults: Faults) -> None:
    """The log table locked ACCESS EXCLUSIVE by another session: the tail query waits, and
    PostgreSQL itself ends it (lock_timeout / statement_timeout) before the scrape deadline."""
    s = faults.stack
    s.wait_healthy()
    log_offset = (s.pg.data_dir / "postgres.log").stat().st_size
    with s.connect() as locker, locker.transaction():
        locker.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
        p = s.wait_until(lambda p: p.reasons("synclog") == ["timeout"], "synclog times out", 8)
        assert_on_time(p)
        assert p.up("postgres") == 1  # the server answers; only the log table is locked
        assert p.reasons("business") == ["timeout"], p.summary()  # it reads the same log
        assert sum(p.operations().values()) > 0  # partial: the counters read so far
        assert_others_fine(p, "postgres", *OTHERS)
        oldest, lock_wait = watch_exporter_queries(s, 4.0)
    assert lock_wait, "no exporter statement ever waited for the lock"
    # No exporter statement outlives a scrape budget: PostgreSQL cancels it, not just the client.
    assert oldest < BUDGET + 0.3, oldest
    cancelled = postgres_log_since(s, log_offset)
    assert ("canceling statement due to lock timeout" in cancelled
            or "canceling statement due to statement timeout" in cancelled), cancelled[-2000:]
    s.wait_healthy()
    s.assert_counts_match()


def test_lock_contention_behind_a_queued_migration(faults: Faults) -> None:
    """A long reader holds the table, a migration (ALTER TABLE) queues for ACCESS EXCLUSIVE, and
    every later statement (writers, the exporter) queues behind it: the classic pile-up."""
    s = faults.stack
    assert s.writer is not None
    s.wait_healthy()
    migration_error: list[BaseException] = []

    def migrate() -> None:
        try:
            with s.connect() as conn:
                conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN fault_probe integer")
        except BaseException as exc:
            migration_error.append(exc)

    with s.connect() as reader, s.connect() as watcher:
        with reader.transaction():
            reader.execute(f"SELECT count(*) FROM {TABLE}")
            migration = threading.Thread(target=migrate)
            migration.start()
            end = time.monotonic() + 10
            while not watcher.execute(
                "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'ALTER TABLE%%'"
                " AND wait_event_type = 'Lock'"
            ).fetchone():
                assert time.monotonic() < end, "the migration never queued"
                time.sleep(0.05)
            stalled_at = s.writer.committed
            p = s.wait_until(lambda p: p.reasons("synclog") == ["timeout"], "synclog times out",
                             8)
            assert_on_time(p)
            assert_others_fine(p, "postgres", *OTHERS)
            oldest, lock_wait = watch_exporter_queries(s, 2.0)
            assert lock_wait and oldest < BUDGET + 0.3, (oldest, lock_wait)
            assert s.writer.committed <= stalled_at + 4  # the writers queue too
        migration.join(10)
        assert not migration_error, migration_error
        with s.connect() as conn:
            conn.execute(f"ALTER TABLE {TABLE} DROP COLUMN fault_probe")
    wait_rows(s.writer, stalled_at + 10)
    s.wait_healthy()
    s.assert_counts_match()


def test_rows_committed_out_of_id_order_by_ten_writers(faults: Faults) -> None:
    """Ten writers hold their transactions open for random times (ids are taken at insert,
    visible at commit) and one in five rolls back: no row may be lost or counted twice, and the
    rolled-back ids must stop being waited for."""
    s = faults.stack
    assert s.writer is not None
    s.wait_healthy()
    done: list[tuple[int, int, float, bool]] = []  # (min id, max id, commit time, committed)
    lock = threading.Lock()

    class Rollback(Exception):
        pass

    def writer(i: int) -> None:
        rng = random.Random(1000 + i)
        with psycopg.connect(s.dsn(), autocommit=True, application_name="faults-writer") as conn:
            for _ in range(3):
                ids: list[int] = []
                committed = True
                try:
                    with conn.transaction():
                        for op, status in rng.sample(
                            [("created", "success"), ("updated", "success"),
                             ("error", "error"), ("skipped", "skipped")], rng.randint(1, 3)
                        ):
                            row = conn.execute(
                                f"INSERT INTO {TABLE} (onec_id, operation_type, status,"
                                " error_message, details, created_at, session, correlation_id,"
                                " customer_id, duration_ms, updated_at, user_agent) VALUES ('',"
                                " %s, %s, '', '{}', now(), '', gen_random_uuid(), NULL, %s,"
                                " now(), '') RETURNING id",
                                (op, status, rng.randint(1, 500)),
                            ).fetchone()
                            assert row is not None
                            ids.append(row[0])
                        time.sleep(rng.uniform(0.0, 1.2))
                        if rng.random() < 0.2:
                            raise Rollback
                except Rollback:
                    committed = False
                with lock:
                    done.append((min(ids), max(ids), time.monotonic(), committed))

    with s.writer.paused():
        threads = [threading.Thread(target=writer, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        mid = s.exporter.probe()
        for t in threads:
            t.join(30)
    assert len(done) == 30
    assert_on_time(mid)
    committed = [d for d in done if d[3]]
    # The fault really happened: a lower id became visible after a higher one, and ids vanished.
    assert any(a[1] < b[0] and a[2] > b[2] for a in committed for b in committed)
    assert any(not d[3] for d in done)
    s.assert_counts_match()


MIB = 1024 * 1024
BIG_ROWS = 1_000_000
BIG_BATCH = 50_000


def test_million_row_transaction_held_open_across_scrapes(faults: Faults) -> None:
    """A 1C import writing 1,000,000 rows in one transaction while the shop keeps committing,
    held open across several scrapes, then committed: the exporter's memory stays flat while the
    ids are in flight (+40 MiB at most over its steady state), and every row is counted once.
    (The old tracker dropped every gap past 200,000 without a word and grew by 220 MB.)"""
    s = faults.stack
    assert s.writer is not None
    s.wait_healthy()
    with RssSampler(s.exporter) as rss:
        steady_from = time.monotonic()
        time.sleep(3)  # the scrapers and the writer keep going: the steady state
        steady_to = time.monotonic()
        with psycopg.connect(s.dsn(), application_name="faults-import") as big:
            started = time.monotonic()
            # One correlation id per batch, as the sync logger writes them (a random one per
            # row, as the 1C processor does, makes the insert twice as slow and changes nothing
            # the exporter reads). The writer commits between and during the batches.
            for _ in range(BIG_ROWS // BIG_BATCH):
                big.execute(
                    f"INSERT INTO {TABLE} (onec_id, operation_type, status, error_message,"
                    " details, created_at, session, correlation_id, customer_id, duration_ms,"
                    " updated_at, user_agent) SELECT '', (ARRAY['created', 'updated', 'skipped',"
                    " 'error'])[1 + g %% 4], CASE WHEN g %% 4 = 3 THEN 'failed' ELSE 'success'"
                    " END, '', '{}', now(), '42', %s, NULL, NULL, now(), ''"
                    " FROM generate_series(1, %s) AS g", (uuid.uuid4(), BIG_BATCH))
            inserted = time.monotonic()
            held = []
            for _ in range(3):  # held open across scrapes, other writers committing
                p = s.wait_until(lambda p: (p.value("customer_sync_exporter_log_pending_gaps")
                                            or 0) >= BIG_ROWS, "the tail passed the open rows")
                assert_on_time(p)
                assert_others_fine(p, *DB_COLLECTORS, *OTHERS)
                held.append(p)
                time.sleep(1)
            in_flight_to = time.monotonic()
            big.commit()
        committed = time.monotonic()
        ranges = held[-1].value("customer_sync_exporter_log_pending_gap_ranges")
        assert ranges is not None and 1 <= ranges < 10_000, ranges
        s.assert_counts_match(timeout=90)
        read_to = time.monotonic()
    steady = statistics.median(rss.between(steady_from, steady_to))
    in_flight = max(rss.between(started, in_flight_to))
    after = max(rss.between(committed, read_to))
    print(f"\n[1M-row transaction] insert {inserted - started:.1f}s, read after commit "
          f"{read_to - committed:.1f}s, {ranges:.0f} gap ranges; exporter RSS: steady "
          f"{steady / MIB:.1f} MiB, peak while in flight {in_flight / MIB:.1f} MiB "
          f"(+{(in_flight - steady) / MIB:.1f} MiB), peak while reading the committed rows "
          f"{after / MIB:.1f} MiB (+{(after - steady) / MIB:.1f} MiB)")
    assert in_flight - steady <= 40 * MIB
    p = s.exporter.probe()
    assert p.value("customer_sync_exporter_log_gap_limit_reached_total") == 0


def test_log_table_truncated_is_read_again(faults: Faults) -> None:
    """TRUNCATE ... RESTART IDENTITY (ids start again), then a TRUNCATE and refill in one
    transaction (ids keep growing, the exporter never sees the table empty): both times the
    counters start over from what the table holds."""
    s = faults.stack
    assert s.writer is not None
    s.wait_healthy()
    started = time.monotonic()
    rng = random.Random(5)
    now = datetime.now(UTC)
    with s.writer.paused(), s.connect() as conn:
        conn.execute(f"TRUNCATE {TABLE} RESTART IDENTITY")
        insert_rows(conn, [LogRow("created", "success", now), LogRow("error", "error", now)])
    s.assert_counts_match()
    with s.writer.paused(), s.connect() as conn, conn.transaction():
        conn.execute(f"TRUNCATE {TABLE}")
        insert_rows(conn, [LogRow(rng.choice(["updated", "skipped"]), "success", now)
                           for _ in range(7)])
    s.assert_counts_match()
    s.reset_windows.append((started, time.monotonic()))


# --- Redis ---------------------------------------------------------------------------------------


def queue_truth(s: Stack) -> int:
    client = redis.Redis(port=s.redis.port, password=s.markers.redis_password)
    try:
        return int(client.llen("celery"))
    finally:
        client.close()


@pytest.mark.one_pg_major
def test_redis_down_and_flapping(faults: Faults) -> None:
    s = faults.stack
    s.wait_healthy()
    s.redis.kill()
    p = s.wait_until(lambda p: p.up("redis") == 0, "redis_up 0", 10)
    assert_on_time(p)
    assert p.reasons("redis") == ["connect"]
    assert_others_fine(p, *DB_COLLECTORS, "disk", "onec", "process")
    assert p.value("customer_sync_redis_queue_length", queue="celery") is None  # unknown, not 0
    for _ in range(4):  # flapping: up and down faster than the scrapes notice every change
        s.restart_redis()
        time.sleep(0.5)
        s.redis.kill()
        time.sleep(0.3)
    s.restart_redis()
    client = redis.Redis(port=s.redis.port, password=s.markers.redis_password)
    client.lpush("celery", *[f"task-{i}" for i in range(5)])
    client.close()
    p = s.wait_until(
        lambda p: p.up("redis") == 1
        and p.value("customer_sync_redis_queue_length", queue="celery") == queue_truth(s),
        "redis back with the queue length LLEN reports",
    )
    assert queue_truth(s) == 5
    assert p.reasons("redis") == []
    s.assert_counts_match()


# --- the 1C HTTP service -------------------------------------------------------------------------


@pytest.mark.one_pg_major
@pytest.mark.parametrize(
    ("mode", "reason", "status_code"),
    [(Mode.SLOW, "timeout", 0), (Mode.ERROR, "http_status", 500), (Mode.DOWN, "connect", 0),
     (Mode.RESET, "connect", 0)],
    ids=["hanging", "http-500", "refusing", "reset"],
)
def test_onec_fault(faults: Faults, mode: Mode, reason: str, status_code: int) -> None:
    s = faults.stack
    s.wait_healthy()
    s.set_onec_mode(mode)
    try:
        p = s.wait_until(lambda p: p.up("onec") == 0, f"onec_up 0 in mode {mode}", 10)
        assert_on_time(p)
        assert p.reasons("onec") == [reason], p.summary()
        assert p.value("customer_sync_onec_http_status_code") == status_code
        assert_others_fine(p, *DB_COLLECTORS, "redis", "disk", "process")
        if mode is Mode.SLOW:  # still hanging: still on time, still a timeout
            again = s.exporter.probe()
            assert_on_time(again)
            assert again.reasons("onec") == ["timeout"]
    finally:
        s.set_onec_mode(Mode.OK)
    p = s.wait_until(lambda p: p.up("onec") == 1, "onec_up 1 again")
    assert p.value("customer_sync_onec_http_status_code") == 200
    s.assert_counts_match()


@pytest.mark.one_pg_major
@pytest.mark.parametrize("kind", ["wrong-ca", "expired"])
def test_onec_bad_certificate(faults: Faults, kind: str) -> None:
    s = faults.stack
    s.wait_healthy()
    workdir = s.base / "tls" / kind
    if kind == "wrong-ca":
        bad = issue(make_ca("someone else's CA"), "localhost", sans=("127.0.0.1",))
    else:
        bad = issue(s.ca, "localhost", sans=("127.0.0.1",), expired=True)
    s.restart_onec(bad.write(workdir, "server"))
    try:
        # (While the stand-in restarts, a probe may see 'connect'; then only 'tls'.)
        p = s.wait_until(lambda p: p.reasons("onec") == ["tls"], "onec fails with tls", 10)
        assert_on_time(p)
        assert p.up("onec") == 0
        assert_others_fine(p, *DB_COLLECTORS, "redis", "disk", "process")
    finally:
        s.restart_onec()
    s.wait_until(lambda p: p.up("onec") == 1, "onec_up 1 with the good certificate")
    s.assert_counts_match()


# --- log folders ---------------------------------------------------------------------------------


def walked(root: Path) -> tuple[int, int]:
    """(files, bytes) by os.walk: the ground truth for a folder."""
    files = size = 0
    for folder, _dirs, names in os.walk(root):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(folder, name)).st_size
    return files, size


def assert_dir_matches(p: Probe, name: str, root: Path) -> None:
    files, size = walked(root)
    assert (p.dir_value("files", name), p.dir_value("bytes", name)) == (files, size)
    assert p.dir_value("walk_complete", name) == 1


@pytest.mark.one_pg_major
def test_log_folder_removed_then_back(faults: Faults) -> None:
    s = faults.stack
    s.wait_healthy()
    gone = s.dirs["gone"]
    for child in gone.iterdir():
        child.unlink()
    gone.rmdir()
    p = s.wait_until(lambda p: p.success("disk") == 0, "disk fails", 10)
    assert_on_time(p)
    assert p.reasons("disk") == ["io"]
    assert p.dir_value("walk_complete", "gone") == 0
    assert p.dir_value("files", "gone") is None  # unknown, not a false 0
    assert_dir_matches(p, "app", s.dirs["app"])
    assert_others_fine(p, *DB_COLLECTORS, "redis", "onec", "process")
    gone.mkdir()
    (gone / "celery.log").write_text("y" * 50)
    (gone / "celery.log.1").write_text("y" * 25)
    p = s.wait_until(lambda p: p.success("disk") == 1, "disk recovers")
    assert_dir_matches(p, "gone", gone)
    s.assert_counts_match()


@pytest.mark.one_pg_major
def test_log_folder_unreadable_then_readable(faults: Faults) -> None:
    s = faults.stack
    s.wait_healthy()
    locked = s.dirs["locked"]
    locked.chmod(0)
    try:
        p = s.wait_until(lambda p: p.success("disk") == 0, "disk fails", 10)
        assert_on_time(p)
        assert p.reasons("disk") == ["io"]
        assert p.dir_value("walk_complete", "locked") == 0
        assert p.dir_value("files", "locked") is None
        assert_dir_matches(p, "app", s.dirs["app"])
    finally:
        locked.chmod(0o755)
    p = s.wait_until(lambda p: p.success("disk") == 1, "disk recovers")
    assert_dir_matches(p, "locked", locked)
    failed = [e for e in s.exporter.events() if e.get("event") == "collector failed"
              and e.get("collector") == "disk"]
    assert any("Permission denied" in str(e.get("error")) for e in failed)
    s.assert_counts_match()


@pytest.mark.one_pg_major
def test_log_folder_with_a_million_files(faults: Faults) -> None:
    s, huge = faults.stack, faults.huge
    s.wait_healthy()
    huge.wait_ready()
    huge.show()
    try:
        p = s.wait_until(lambda p: (p.dir_value("files", "huge") or 0) > 0,
                         "the walk reaches the big folder", 10)
        for _ in range(3):
            assert_on_time(p)
            files = p.dir_value("files", "huge")
            assert files is not None and 0 < files < HugeFolder.FILES
            assert p.dir_value("bytes", "huge") == HugeFolder.SIZE * files  # a true partial sum
            assert p.dir_value("walk_complete", "huge") == 0
            assert p.success("disk") == 1  # running out of time is not a failure
            duration = p.value("customer_sync_exporter_collector_duration_seconds",
                               collector="disk")
            assert duration is not None and duration < WALK_TIMEOUT + 0.5, duration
            assert_dir_matches(p, "app", s.dirs["app"])
            assert_others_fine(p, *DB_COLLECTORS, "redis", "onec", "process")
            p = s.exporter.probe()
    finally:
        huge.hide()
    # (A walk under way while the mount goes may still count part of it, and complete.)
    s.wait_until(lambda p: p.dir_value("walk_complete", "huge") == 1
                 and p.dir_value("files", "huge") == 0, "the emptied folder is walked whole")
    s.assert_counts_match()


# --- the config file -----------------------------------------------------------------------------


def reload_state(p: Probe) -> tuple[float | None, float | None]:
    return (p.value("customer_sync_exporter_config_last_reload_successful"),
            p.value("customer_sync_exporter_config_last_reload_success_timestamp_seconds"))


@pytest.mark.one_pg_major
def test_config_replaced_with_garbage_keeps_the_old_config(faults: Faults) -> None:
    s = faults.stack
    assert s.exporter.proc is not None
    p = s.wait_healthy()
    ok, loaded_at = reload_state(p)
    if ok is None:
        pytest.fail("no customer_sync_exporter_config_last_reload_* metrics: config reload is "
                    "not in the exporter yet (pending)")
    assert ok == 1
    original = s.config.read_text()
    new_secret = "newPw-MARK-e9b2"
    try:
        # 1. Not YAML at all, noticed by the file watcher (no signal).
        s.config.write_text("collectors: [unclosed\n  \x01garbage: {{{\n")
        p = s.wait_until(lambda p: reload_state(p)[0] == 0, "reload fails", 8)
        assert reload_state(p)[1] == loaded_at
        assert s.healthy(p)  # the old config keeps serving every collector
        # 2. Valid YAML, invalid config (a typo, and a DSN with a new password where a section
        #    belongs), applied by SIGHUP.
        broken = original.replace("    walk_timeout:", "    walk_timout:").replace(
            "  connect_timeout: 2s\n", "").replace(
            "database:\n  dsn: '" + s.exporter_dsn + "'\n",
            f"database: 'postgresql://postgres:{new_secret}@127.0.0.1:{s.pg.port}/freesport'\n")
        assert broken.count("walk_timout") == 1 and new_secret in broken
        typo_line = broken.splitlines().index("    walk_timout: 1s") + 1
        db_line = next(i for i, line in enumerate(broken.splitlines(), 1)
                       if line.startswith("database:"))
        s.config.write_text(broken)
        s.exporter.proc.send_signal(signal.SIGHUP)
        expected = [f"{s.config}:{typo_line}: collectors.disk.walk_timout: unknown key",
                    f"{s.config}:{db_line}: database: must be a mapping of keys"]
        end = time.monotonic() + 5
        while not all(any(e.startswith(x) for e in rejected(s)) for x in expected):
            assert time.monotonic() < end, rejected(s)
            time.sleep(0.1)
        p = s.exporter.probe()
        assert reload_state(p) == (0, loaded_at)
        assert s.healthy(p)
        assert new_secret not in s.exporter.log()
    finally:
        s.config.write_text(original)
    p = s.wait_until(lambda p: reload_state(p)[0] == 1, "a good file is taken again", 8)
    assert loaded_at is not None and (reload_state(p)[1] or 0) > loaded_at
    # Ten forced reloads of the good file in a row, under the ten scrapers: each swaps in new
    # collectors while scrapes are inside the old ones (checked by the last case: all 200).
    # (SIGHUPs during a reload make one more reload, so each waits for the previous one.)
    def reloaded() -> int:
        return len([e for e in s.exporter.events() if e.get("event") == "config reloaded"])

    for _ in range(10):
        before, end = reloaded(), time.monotonic() + 5
        s.exporter.proc.send_signal(signal.SIGHUP)
        while reloaded() == before:
            assert time.monotonic() < end, (
                f"SIGHUP did not reload the config: {s.exporter.events()[-8:]}")
            time.sleep(0.05)
    s.wait_healthy()
    s.assert_counts_match()


def rejected(s: Stack) -> list[str]:
    return [str(e.get("error")) for e in s.exporter.events()
            if e.get("event", "").startswith("config reload rejected")]


# --- what the ten scrapers saw ---------------------------------------------------------------


def test_ten_scrapers_always_got_200_on_time_and_counters_never_went_back(
    faults: Faults,
) -> None:
    s = faults.stack
    assert s.scrapers is not None and s.exporter.proc is not None
    s.scrapers.stop()
    records = s.scrapers.snapshot()
    assert len({r.thread for r in records}) == 10
    assert len(records) >= 200, len(records)
    late = [(r.status, round(r.elapsed, 3), r.error, s.case_of(r), r.took) for r in records
            if r.status != 200 or r.elapsed >= SCRAPE_TIMEOUT_HEADER]
    assert not late, late[:10]
    assert not [r for r in records if r.leaked]
    # Per scraper (each one's requests are sequential): a counter may only go down while the
    # table was being truncated and read again.
    last: dict[tuple[int, tuple[str, str]], float] = {}
    for r in sorted(records, key=lambda r: r.started):
        for key, value in (r.ops or {}).items():
            previous = last.get((r.thread, key))
            if previous is not None and value < previous:
                # The request overlapped the truncation (it may have started just before it).
                assert any(r.started <= b and a <= r.started + r.elapsed
                           for a, b in s.reset_windows), (r, key, previous)
            last[(r.thread, key)] = value
    # One process through all of it: never restarted, never crashed, never leaked.
    assert s.exporter.proc.poll() is None
    events = s.exporter.events()
    assert not [e for e in events if e.get("event") == "collector crashed"]
    assert not [e for e in events if e.get("reason") == "internal"]
    assert not leaks(s.exporter.log(), MARKERS)
