"""The demo's real ``celery worker`` and ``celery beat`` (``exporter/demo/celery_processes.py``)
running the demo's app against a real Redis, PostgreSQL and 1C stand-in.

Ground truth is Celery's own: task results from the Redis result backend, the worker's own log
(retries) and its ``inspect stats`` (tasks accepted per name), and the kernel for processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from celery import Celery

from exporter.config import ProcessConfig
from exporter.demo.celery_app import CARTS_TASK, CLEANUP_TASK, MAX_RETRIES, make_app
from exporter.demo.celery_processes import BEAT_LOG, SCHEDULE_FILE, WORKER_LOG, CeleryProcesses
from exporter.demo.celery_processes import CelerySettings as Settings
from exporter.demo.celery_traffic import CeleryTraffic
from exporter.demo.onec import Mode, OneCStandIn
from exporter.demo.redis import RedisServer
from exporter.demo.traffic import SessionRow
from tests.exporter.demo.conftest import eventually

ROOT = Path(__file__).resolve().parents[3]
ONEC_PASSWORD = "onec-pass-321"


@pytest.fixture
def onec() -> Iterator[OneCStandIn]:
    with OneCStandIn(username="exchange", password=ONEC_PASSWORD) as stand_in:
        yield stand_in


def settings(redis: RedisServer, dsn: str, onec: OneCStandIn, **extra: Any) -> Settings:
    return Settings(redis.url(), dsn, onec.url, "exchange", ONEC_PASSWORD, **extra)


def worker_stats(client: Celery) -> dict[str, Any]:
    """The only worker's ``inspect stats`` reply, once it answers."""
    found: dict[str, Any] = {}

    def answered() -> bool:
        found.update(client.control.inspect(timeout=1.0).stats() or {})
        return len(found) == 1

    eventually(answered, timeout=60)
    return next(iter(found.values()))


def open_session(conn: psycopg.Connection[Any], sid: int) -> None:
    conn.execute(
        "INSERT INTO import_sessions (id, import_type, status, started_at, report_details,"
        " error_message, created_at, report, updated_at)"
        " VALUES (%s, 'customers', 'started', now(), '{}', '', now(), '', now())", (sid,))


def finish_session(conn: psycopg.Connection[Any], sid: int, status: str) -> None:
    conn.execute("UPDATE import_sessions SET status = %s, finished_at = now() WHERE id = %s",
                 (status, sid))


def publish(traffic: CeleryTraffic, sid: int, task_id: str) -> None:
    traffic.on_batch([SessionRow(sid, celery_task_id=task_id),
                      SessionRow(100 + sid, import_type="catalog")])  # not a customers import
    assert traffic.publish_imports() == 1


def running_tasks(client: Celery) -> list[str]:
    active = client.control.inspect(timeout=1.0).active() or {}
    return [task["id"] for tasks in active.values() for task in tasks]


def retries_logged(log: Path, task_id: str) -> int:
    return len(re.findall(rf"\[{task_id}\] retry: Retry in", log.read_text()))


def test_imports_follow_their_session_and_retry_while_1c_is_out(
    own_redis: RedisServer, db_dsn: str, onec: OneCStandIn, tmp_path: Path
) -> None:
    procs = CeleryProcesses(settings(own_redis, db_dsn, onec, retry_seconds=2.0),
                            tmp_path / "logs", tmp_path / "celery")
    (tmp_path / "logs").mkdir()
    client = make_app(own_redis.url())
    traffic = CeleryTraffic(own_redis.url(), random.Random(5))
    ids = {sid: str(uuid.uuid4()) for sid in (1, 2, 3, 4)}
    conn = psycopg.connect(db_dsn, autocommit=True)
    procs.start()
    try:
        for sid in ids:
            open_session(conn, sid)
        log = tmp_path / "logs" / WORKER_LOG
        stats = worker_stats(client)
        assert stats["pool"]["max-concurrency"] == 2

        publish(traffic, 1, ids[1])
        finish_session(conn, 1, "completed")  # a normal run: done when its session is
        assert client.AsyncResult(ids[1]).get(timeout=30) == {"session": 1, "status": "completed"}

        onec.set_mode(Mode.DOWN)  # an outage: the session failed, 1C does not answer
        publish(traffic, 2, ids[2])
        finish_session(conn, 2, "failed")
        failed = client.AsyncResult(ids[2])
        failed.get(timeout=60, propagate=False)
        assert (failed.state, repr(failed.result)) == ("FAILURE",
                                                       "OneCUnavailable('ConnectionError')")
        assert retries_logged(log, ids[2]) == MAX_RETRIES

        publish(traffic, 3, ids[3])
        finish_session(conn, 3, "failed")  # 1C comes back after the first retry
        eventually(lambda: retries_logged(log, ids[3]) == 1, timeout=30)
        onec.set_mode(Mode.OK)
        assert client.AsyncResult(ids[3]).get(timeout=30) == {"session": 3, "status": "reimported"}
        assert retries_logged(log, ids[3]) == 1

        publish(traffic, 4, ids[4])  # session 4 never ends...
        eventually(lambda: running_tasks(client) == [ids[4]], timeout=30)
        assert worker_stats(client)["total"] == {
            "apps.integrations.tasks.run_selective_import_task": 4 + MAX_RETRIES + 1}
        assert_processes(procs, own_redis, db_dsn)
        celery = started(procs)
        start = time.monotonic()
    finally:
        procs.stop()
        traffic.stop()
        conn.close()
    assert time.monotonic() - start < 10  # ...and stopping does not wait for it (cold shutdown)
    assert procs.worker is not None and procs.worker.returncode != -signal.SIGKILL
    assert still_running(celery) == []
    logs = "".join(path.read_text() for path in (tmp_path / "logs").iterdir())
    assert "Events of group" not in logs  # task events off, as the shop runs it
    for secret in secrets(own_redis, db_dsn):
        assert secret not in logs


def started(procs: CeleryProcesses) -> list[psutil.Process]:
    """The worker, its pool processes and beat."""
    assert procs.worker is not None and procs.beat is not None
    worker = psutil.Process(procs.worker.pid)
    return [worker, *worker.children(), psutil.Process(procs.beat.pid)]


def still_running(procs: list[psutil.Process]) -> list[list[str]]:
    running = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                running.append(proc.cmdline())
        except psutil.NoSuchProcess:
            pass
    return running


def assert_processes(procs: CeleryProcesses, redis: RedisServer, dsn: str) -> None:
    """The worker looks like the shop's to the process collector; beat does not; no secret is
    on a command line (nor, checked at the end, in their logs)."""
    assert procs.worker is not None and procs.beat is not None
    worker, beat = psutil.Process(procs.worker.pid), psutil.Process(procs.beat.pid)
    group = next(g for g in ProcessConfig().groups if g.name == "celery_worker")
    assert group.cmdline_regex is not None
    matches = re.compile(group.cmdline_regex).search
    pool = worker.children()
    assert len(pool) == 2
    for proc in (worker, *pool):
        assert matches(" ".join(proc.cmdline()))
    assert not matches(" ".join(beat.cmdline()))
    shown = " ".join(" ".join(p.cmdline()) for p in (worker, *pool, beat))
    for secret in secrets(redis, dsn):
        assert secret not in shown


def secrets(redis: RedisServer, dsn: str) -> list[str]:
    found = [redis.password, psycopg.conninfo.conninfo_to_dict(dsn).get("password"), ONEC_PASSWORD]
    assert all(found)
    return [str(s) for s in found]


PARENT = """
import json, os, sys, time
from pathlib import Path
from exporter.demo.celery_processes import CeleryProcesses, CelerySettings
p = CeleryProcesses(CelerySettings(**json.loads(os.environ["TEST_SETTINGS"])),
                    Path(sys.argv[1]), Path(sys.argv[2])).start()
print(p.worker.pid, p.beat.pid, flush=True)
time.sleep(300)
"""


def test_beat_sends_on_schedule_and_a_killed_demo_leaves_no_celery_process(
    own_redis: RedisServer, db_dsn: str, onec: OneCStandIn, tmp_path: Path
) -> None:
    fields = settings(own_redis, db_dsn, onec, beat_speedup=3600.0).__dict__  # hourly: 1 s
    logs, state = tmp_path / "logs", tmp_path / "celery"
    logs.mkdir()
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(logs), str(state)], cwd=ROOT, stdout=subprocess.PIPE,
        text=True, env={**os.environ, "TEST_SETTINGS": json.dumps(fields)})
    celery: list[psutil.Process] = []
    try:
        assert parent.stdout is not None
        worker_pid, beat_pid = map(int, parent.stdout.readline().split())
        client = make_app(own_redis.url())
        worker_stats(client)
        celery = [psutil.Process(worker_pid), *psutil.Process(worker_pid).children(),
                  psutil.Process(beat_pid)]
        assert len(celery) == 4
        eventually(lambda: all(worker_stats(client).get("total", {}).get(name, 0) >= 2
                               for name in (CLEANUP_TASK, CARTS_TASK)), timeout=30)
        assert any(state.glob(f"{SCHEDULE_FILE}*"))  # the schedule is kept in the data folder
        assert "Sending due task cleanup_stale_import_sessions" in (logs / BEAT_LOG).read_text()
        parent.kill()
        parent.wait()
        eventually(lambda: still_running(celery) == [], timeout=30)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for proc in celery:  # only if the test failed: leave nothing behind
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
