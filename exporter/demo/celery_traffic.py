"""Celery traffic: the tasks the shop's web side sends, published with Celery's own client.

One ``run_selective_import_task`` per customers import session the sync traffic opens (its task
id is the session's ``celery_task_id``, as in the shop), and 0-3 ``send_verification_email`` a
second at kombu's priority steps, so the Redis collector's priority sub-queues fill too. The
real worker (:mod:`exporter.demo.celery_processes`) consumes them, prefetching up to 8 messages
(Celery's default 4 per pool process, as in the shop), so the Redis lists stay short unless
both pool processes are busy for a while.

Publishing has a thread of its own: a Redis outage delays the Celery traffic, never the sync
traffic, and an import not yet published is kept for the next try.
"""

from __future__ import annotations

import contextlib
import queue
import random
import threading
from collections.abc import Sequence

from collectors.redis import PRIORITY_STEPS
from exporter.demo.celery_app import EMAIL_TASK, IMPORT_TASK, make_app
from exporter.demo.traffic import Op, SessionRow

PRIORITIES = (0, *PRIORITY_STEPS)  # kombu's steps; 0 (the bare queue) is served first
PRIORITY_WEIGHTS = (6, 2, 1, 1)
EMAILS_PER_SECOND = (0, 0, 1, 1, 1, 2, 3)


class CeleryTraffic:
    """The traffic's ``on_batch`` callback queues imports; a thread publishes them and the
    e-mails every second."""

    def __init__(self, url: str, rng: random.Random) -> None:
        self.app = make_app(url)
        # It only publishes: with a result backend, Celery would subscribe to each task's result.
        self.app.conf.result_backend = None
        self.rng = rng
        self._imports: queue.SimpleQueue[tuple[int, str | None]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> CeleryTraffic:
        self._thread = threading.Thread(target=self._run, name="demo-celery", daemon=True)
        self._thread.start()
        return self

    def on_batch(self, ops: Sequence[Op]) -> None:
        for op in ops:
            if isinstance(op, SessionRow) and op.import_type == "customers":
                self._imports.put((op.id, op.celery_task_id))

    def publish_imports(self) -> int:
        """Send every queued import; one that fails to send stays queued (and raises)."""
        sent = 0
        while True:
            try:
                session_id, task_id = self._imports.get_nowait()
            except queue.Empty:
                return sent
            try:
                self.app.send_task(IMPORT_TASK, args=(session_id,), task_id=task_id)
            except Exception:
                self._imports.put((session_id, task_id))
                raise
            sent += 1

    def publish_emails(self, n: int) -> None:
        for _ in range(n):
            priority = self.rng.choices(PRIORITIES, PRIORITY_WEIGHTS)[0]
            self.app.send_task(EMAIL_TASK, args=(self.rng.randint(1, 10**6),), priority=priority)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            with contextlib.suppress(Exception):  # Redis going away must not end the demo
                self.publish_imports()
                self.publish_emails(self.rng.choice(EMAILS_PER_SECOND))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.app.close()
