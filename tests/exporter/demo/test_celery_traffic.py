"""Celery traffic (``exporter/demo/celery_traffic.py``) and the worker stand-in
(``exporter/demo/worker.py``) against a real Redis: kombu's message shape and priority lists,
and a real worker process draining them."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import psutil
import redis

from exporter.demo.celery_traffic import CELERY_TASKS, CeleryTraffic
from exporter.demo.logfolder import LogFolder
from exporter.demo.redis import RedisServer
from tests.exporter.demo.conftest import eventually


def test_celery_tasks_land_in_priority_queues_and_the_worker_consumes_them(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(own_redis.url())
    folder = LogFolder(tmp_path / "logs")
    celery = CeleryTraffic(own_redis.url(), random.Random(4), folder)
    celery.publish(40)
    keys = {k.decode("latin-1"): client.llen(k) for k in client.keys("celery*")}
    assert sum(keys.values()) == 40
    assert "celery" in keys and any(k.startswith("celery\x06\x16") for k in keys)
    assert set(keys) <= {"celery", "celery\x06\x163", "celery\x06\x166", "celery\x06\x169"}
    ids = set()
    for key in keys:
        for raw in client.lrange(key, 0, -1):
            message = json.loads(raw)
            assert message["headers"]["task"] in CELERY_TASKS
            assert message["properties"]["delivery_info"]["routing_key"] == "celery"
            ids.add(message["headers"]["id"])
    client.delete(*keys)
    celery.publish(3)
    published = {
        json.loads(raw)["headers"]["id"]
        for key in client.keys("celery*") for raw in client.lrange(key, 0, -1)
    }
    celery.start()
    try:
        worker = psutil.Process(celery.worker.pid if celery.worker else 0)
        eventually(lambda: bool(re.search(r"celery\b.*\bworker\b", " ".join(worker.cmdline()))))
        assert "s3cret-demo" not in " ".join(worker.cmdline())  # the URL goes by environment
        log = folder.path / "celery.log"
        eventually(lambda: log.exists() and all(
            f"{i}] succeeded" in log.read_text() for i in published), timeout=15)
    finally:
        celery.stop()
    assert celery.worker is not None and celery.worker.poll() is not None
