"""The demo's Celery app: the shop's task names, run by a real ``celery worker`` and beat.

The shop (DATA.md §4) runs ``celery -A freesport worker -l info`` plus ``celery beat`` on a Redis
broker, every task on the default ``celery`` queue. This app has the shop's task names, so the
celery collector's default allow-list matches them, and tasks that behave like the shop's:

* ``run_selective_import_task`` is the 1C import: one per import session the traffic opens
  (``import_sessions.celery_task_id`` is this task's id). It runs as long as its session does
  (tens of seconds at the demo's 5 rows/s) and succeeds if the session completed. A session
  failed by a 1C outage makes it ask the 1C stand-in; while 1C does not answer it
  ``self.retry(countdown=...)``s, and fails after ``max_retries``;
* beat sends ``cleanup_stale_import_sessions`` and ``clear_abandoned_carts_task`` (hourly in the
  shop) and ``monitor_pending_verification_queue`` (every 8 h) ``DEMO_BEAT_SPEEDUP`` times more
  often: every minute and every 8 minutes at the default 60;
* ``send_verification_email`` (not on the collector's allow-list: it shows a task counted
  under its own name) is published by :mod:`exporter.demo.celery_traffic`.

The worker reads its settings from the environment, never the command line (secrets):
``DEMO_BROKER_URL``, ``DEMO_DSN``, ``DEMO_ONEC_URL``, ``DEMO_ONEC_USERNAME``,
``DEMO_ONEC_PASSWORD``, ``DEMO_BEAT_SPEEDUP`` and ``DEMO_RETRY_SECONDS`` (the import's retry
countdown). Task events stay off, as in the shop: the exporter turns them on.
"""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Any

import psycopg
import requests
from celery import Celery, Task
from celery.signals import beat_init, worker_init
from celery.utils.log import get_task_logger

from exporter.demo.processes import PARENT_PID, signal_on_parent_death

QUEUE = "celery"
IMPORT_TASK = "apps.integrations.tasks.run_selective_import_task"
CLEANUP_TASK = "apps.products.tasks.cleanup_stale_import_sessions"
CARTS_TASK = "apps.cart.tasks.clear_abandoned_carts_task"
MONITOR_TASK = "apps.users.tasks.monitor_pending_verification_queue"
EMAIL_TASK = "apps.users.tasks.send_verification_email"
SHOP_PERIODS = {CLEANUP_TASK: 3600.0, CARTS_TASK: 3600.0, MONITOR_TASK: 8 * 3600.0}
APPLICATION_NAME = "freesport-celery"  # the worker's PostgreSQL connections
FINAL_STATUSES = ("completed", "failed")
SESSION_POLL = 1.0
SESSION_MAX_WAIT = 900.0
MAX_RETRIES = 2

log = get_task_logger(__name__)


def make_app(broker_url: str, *, beat_speedup: float = 60.0) -> Celery:
    """A Celery app configured like the shop's: Redis broker and result backend, Celery's
    defaults otherwise (no task events, prefetch 4), beat's schedule sped up."""
    app = Celery("freesport", set_as_current=False)
    app.conf.update(
        broker_url=broker_url,
        result_backend=broker_url,
        result_expires=3600,  # the shop keeps a day; an hour bounds the demo's Redis
        broker_connection_retry_on_startup=True,
        task_default_queue=QUEUE,
        beat_schedule={
            name.rsplit(".", 1)[1]: {"task": name, "schedule": period / beat_speedup}
            for name, period in SHOP_PERIODS.items()
        },
    )
    app.task(name=IMPORT_TASK, bind=True, max_retries=MAX_RETRIES)(run_selective_import_task)
    app.task(name=CLEANUP_TASK)(cleanup_stale_import_sessions)
    app.task(name=CARTS_TASK)(clear_abandoned_carts_task)
    app.task(name=MONITOR_TASK)(monitor_pending_verification_queue)
    app.task(name=EMAIL_TASK)(send_verification_email)
    return app


def _connect() -> psycopg.Connection[Any]:
    return psycopg.connect(os.environ["DEMO_DSN"], autocommit=True, connect_timeout=5,
                           application_name=APPLICATION_NAME)


class OneCUnavailable(Exception):
    """1C did not answer the import: the task retries, then fails with this."""


def run_selective_import_task(self: Task, session_id: int) -> dict[str, Any]:
    """The import of one session: done when the session completed; after a 1C outage, again
    once 1C answers (retried every ``DEMO_RETRY_SECONDS`` until ``MAX_RETRIES``)."""
    if self.request.retries == 0:
        status = wait_for_session(session_id)
        if status == "completed":
            return {"session": session_id, "status": status}
    countdown = float(os.environ.get("DEMO_RETRY_SECONDS", "10"))
    problem = onec_problem(pause=countdown / 5)
    if problem is None:
        time.sleep(random.uniform(1.0, 3.0))  # the customers step again, now that 1C answers
        return {"session": session_id, "status": "reimported"}
    log.warning("1C does not answer (%s), session %s", problem, session_id)
    raise self.retry(countdown=countdown, exc=OneCUnavailable(problem))


def wait_for_session(session_id: int) -> str:
    """The session's final status, polled from ``import_sessions`` as the traffic writes it."""
    end = time.monotonic() + SESSION_MAX_WAIT
    with _connect() as conn:
        while True:
            row = conn.execute("SELECT status FROM import_sessions WHERE id = %s",
                               (session_id,)).fetchone()
            if row is not None and row[0] in FINAL_STATUSES:
                return str(row[0])
            if time.monotonic() > end:
                raise TimeoutError(f"import session {session_id} did not finish")
            time.sleep(SESSION_POLL)


def onec_problem(*, tries: int = 5, pause: float = 2.0, timeout: float = 5.0) -> str | None:
    """None when the 1C stand-in answers ``{"status": "ok"}``, else what went wrong last. Up to
    ``tries`` requests ``pause`` seconds apart: while 1C is out, each attempt of the import
    holds a pool process for 8 s or more, as a real import waiting on 1C would."""
    problem = ""
    for attempt in range(tries):
        if attempt:
            time.sleep(pause)
        try:
            response = requests.get(
                os.environ["DEMO_ONEC_URL"], timeout=timeout,
                auth=(os.environ["DEMO_ONEC_USERNAME"], os.environ["DEMO_ONEC_PASSWORD"]),
            )
            status = response.json().get("status") if response.ok else None
        except (requests.RequestException, ValueError) as exc:
            problem = type(exc).__name__
            continue
        if status == "ok":
            return None
        problem = f"HTTP {response.status_code}, status {status!r}"
    return problem


def cleanup_stale_import_sessions() -> int:
    """Sessions still open after an hour failed: their process is gone (as the shop's task)."""
    with _connect() as conn:
        cur = conn.execute(
            "UPDATE import_sessions SET status = 'failed', finished_at = now(),"
            " updated_at = now(), error_message = 'Сессия прервана: превышено время ожидания'"
            " WHERE status IN ('pending', 'started', 'in_progress')"
            " AND started_at < now() - interval '1 hour'"
        )
        return cur.rowcount


def clear_abandoned_carts_task() -> int:
    """The demo has no carts table: a short task that clears none."""
    time.sleep(random.uniform(0.05, 0.3))
    return 0


def monitor_pending_verification_queue() -> int:
    """Users waiting for verification in the last 24 h; the shop warns above 10."""
    with _connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM users WHERE verification_status = 'pending'"
            " AND created_at > now() - interval '24 hours'"
        ).fetchone()
    waiting = int(row[0]) if row else 0
    if waiting > 10:
        log.warning("%d users wait for verification", waiting)
    return waiting


def send_verification_email(user_id: int) -> bool:
    """Sending the mail: a fraction of a second."""
    time.sleep(random.uniform(0.05, 0.4))
    return True


app = make_app(
    os.environ.get("DEMO_BROKER_URL", "redis://127.0.0.1:6379/0"),
    beat_speedup=float(os.environ.get("DEMO_BEAT_SPEEDUP", "60")),
)


def _worker_dies_with_the_demo(**_: Any) -> None:
    """SIGQUIT (Celery's cold shutdown: running tasks are not waited for) if the demo dies."""
    if PARENT_PID in os.environ:
        signal_on_parent_death(signal.SIGQUIT)


def _beat_dies_with_the_demo(**_: Any) -> None:
    if PARENT_PID in os.environ:
        signal_on_parent_death(signal.SIGTERM)


worker_init.connect(_worker_dies_with_the_demo, weak=False)
beat_init.connect(_beat_dies_with_the_demo, weak=False)
