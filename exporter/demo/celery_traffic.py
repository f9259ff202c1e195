"""Celery traffic: tasks published into Redis the way kombu stores them, and a worker consuming.

The exporter's Redis collector counts the ``celery`` queue and its priority sub-queues; the
worker stand-in (:mod:`exporter.demo.worker`) is a real process draining them, slower during a
1C outage, so the backlog grows and drains.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import subprocess
import threading
import uuid
from typing import Any

import redis

from collectors.redis import PRIORITY_STEPS, priority_keys
from exporter.demo.logfolder import LogFolder
from exporter.demo.processes import spawn_child, stop_process
from exporter.demo.worker import SLOW_KEY

CELERY_QUEUE = "celery"
CELERY_TASKS = (
    "apps.integrations.tasks.run_selective_import_task",
    "apps.users.tasks.monitor_pending_verification_queue",
    "apps.products.tasks.cleanup_stale_import_sessions",
    "apps.cart.tasks.clear_abandoned_carts_task",
    "apps.users.tasks.send_verification_email",
)
PRIORITIES = (0, *PRIORITY_STEPS)  # kombu's steps; 0 is the bare queue name
PRIORITY_WEIGHTS = (6, 2, 1, 1)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def celery_message(rng: random.Random, task: str, priority: int) -> str:
    """A Celery protocol-2 message as kombu stores it in the Redis list."""
    task_id = _uuid(rng)
    body = base64.b64encode(json.dumps([[], {}, {"callbacks": None}]).encode()).decode()
    message: dict[str, Any] = {
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": task, "id": task_id, "root_id": task_id,
                    "parent_id": None, "retries": 0, "eta": None, "expires": None},
        "properties": {"correlation_id": task_id, "delivery_mode": 2, "priority": priority,
                       "delivery_tag": _uuid(rng),
                       "delivery_info": {"exchange": "", "routing_key": CELERY_QUEUE},
                       "body_encoding": "base64"},
    }
    return json.dumps(message)


class CeleryTraffic:
    """Publishes Celery tasks into Redis every second or so; a real worker process consumes
    them. During a 1C outage the worker slows down, so the backlog grows and drains."""

    def __init__(self, url: str, rng: random.Random, folder: LogFolder) -> None:
        self.url = url
        self.rng = rng
        self.folder = folder
        self.client = redis.Redis.from_url(url, socket_timeout=2)
        self.worker: subprocess.Popen[bytes] | None = None
        self._keys = dict(zip(PRIORITIES, priority_keys(CELERY_QUEUE), strict=True))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> CeleryTraffic:
        self.client.delete(SLOW_KEY)
        self.worker = spawn_child(
            "exporter.demo.worker", ["celery", "-A", "freesport", "worker", "-l", "info"],
            {"DEMO_REDIS_URL": self.url, "DEMO_LOG": str(self.folder.path / "celery.log"),
             "DEMO_QUEUE_KEYS": json.dumps(list(self._keys.values()))},
        )
        self._thread = threading.Thread(target=self._run, name="demo-celery", daemon=True)
        self._thread.start()
        return self

    def slow(self, active: bool) -> None:
        """The outage callback: imports retry against a dead 1C, so the worker falls behind."""
        with contextlib.suppress(Exception):
            if active:
                self.client.set(SLOW_KEY, "1")
            else:
                self.client.delete(SLOW_KEY)

    def publish(self, n: int) -> None:
        pipe = self.client.pipeline()
        for _ in range(n):
            priority = self.rng.choices(PRIORITIES, PRIORITY_WEIGHTS)[0]
            task = self.rng.choice(CELERY_TASKS)
            pipe.lpush(self._keys[priority], celery_message(self.rng, task, priority))
        pipe.execute()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            with contextlib.suppress(Exception):  # Redis going away must not end the demo
                self.publish(self.rng.choice((0, 0, 1, 1, 1, 2, 3)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        stop_process(self.worker)
        self.client.close()
