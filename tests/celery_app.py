"""A small Celery app for the tests: tasks with known outcomes, run by real ``celery worker``s.

Configured from the environment so each test picks its broker and whether the worker sends task
events: ``CSX_BROKER_URL`` (required), ``CSX_TASK_EVENTS`` (``1``: the worker sends task events,
as ``worker_send_task_events``; default ``0``, Celery's own default) and ``CSX_BEAT_SECONDS``
(the period of the scheduled task under ``celery beat``).
"""

from __future__ import annotations

import os
import time

from celery import Celery

app = Celery("csx_tests", set_as_current=False)
app.conf.update(
    broker_url=os.environ.get("CSX_BROKER_URL", "redis://127.0.0.1:6379/15"),
    result_backend=None,
    task_ignore_result=True,
    worker_send_task_events=os.environ.get("CSX_TASK_EVENTS", "0") == "1",
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    beat_schedule={
        "scheduled-cleanup": {
            "task": "tests.cleanup",
            "schedule": float(os.environ.get("CSX_BEAT_SECONDS", "1")),
        },
    },
)


@app.task(name="tests.ok")
def ok(seconds: float = 0.0) -> str:
    time.sleep(seconds)
    return "done"


@app.task(name="tests.fail")
def fail() -> None:
    raise ValueError("this task always fails")


@app.task(name="tests.flaky", bind=True, max_retries=3)
def flaky(self, failures: int = 1) -> str:  # type: ignore[no-untyped-def]
    """Fails ``failures`` times, each retried at once (no countdown: no ETA), then succeeds."""
    if self.request.retries < failures:
        raise self.retry(countdown=0)
    return "recovered"


@app.task(name="tests.cleanup")
def cleanup() -> int:
    return 0
