"""Celery traffic (``exporter/demo/celery_traffic.py``) against a real Redis with no worker: what
Celery's own client publishes lands where the Redis collector counts it (the ``celery`` list
and kombu's priority sub-queues, ``collectors/redis.py`` ``priority_keys``), one import per
customers session with the session's task id, and an import that could not be sent is kept."""

from __future__ import annotations

import base64
import json
import random
import uuid
from typing import Any

import pytest
import redis

from collectors.redis import priority_keys
from exporter.demo.celery_app import EMAIL_TASK, IMPORT_TASK
from exporter.demo.celery_traffic import CeleryTraffic
from exporter.demo.redis import RedisServer
from exporter.demo.traffic import SessionRow, SessionUpdate


def queued(client: redis.Redis) -> dict[str, list[dict[str, Any]]]:
    """Every message in the celery lists, by list name."""
    return {
        key.decode("latin-1"): [json.loads(raw) for raw in client.lrange(key, 0, -1)]
        for key in client.keys("celery*")
    }


def test_emails_fill_the_priority_sub_queues_the_redis_collector_counts(
    own_redis: RedisServer,
) -> None:
    client = redis.Redis.from_url(own_redis.url())
    traffic = CeleryTraffic(own_redis.url(), random.Random(4))
    try:
        traffic.publish_emails(60)
    finally:
        traffic.stop()
    lists = queued(client)
    assert sum(map(len, lists.values())) == 60
    assert set(lists) <= set(priority_keys("celery"))
    assert len(lists) == 4  # 60 draws from weights 6:2:1:1 use every step
    for key, messages in lists.items():
        for message in messages:
            assert message["headers"]["task"] == EMAIL_TASK
            assert message["properties"]["delivery_info"]["routing_key"] == "celery"
            step = message["properties"]["priority"]
            assert key == ("celery" if step == 0 else f"celery\x06\x16{step}")


def test_one_import_per_customers_session_with_the_sessions_task_id(
    own_redis: RedisServer,
) -> None:
    client = redis.Redis.from_url(own_redis.url())
    traffic = CeleryTraffic(own_redis.url(), random.Random(4))
    task_id = str(uuid.uuid4())
    try:
        traffic.on_batch([SessionRow(7, celery_task_id=task_id), SessionRow(8, import_type="catalog"),
                          SessionUpdate(7, "in_progress")])
        assert traffic.publish_imports() == 1
        assert traffic.publish_imports() == 0
    finally:
        traffic.stop()
    (message,) = queued(client)["celery"]
    assert (message["headers"]["task"], message["headers"]["id"]) == (IMPORT_TASK, task_id)
    args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == ([7], {})


def test_an_import_that_cannot_be_sent_is_kept_for_the_next_try(own_redis: RedisServer) -> None:
    traffic = CeleryTraffic(own_redis.url(), random.Random(4))
    own_redis.stop()
    try:
        traffic.on_batch([SessionRow(9, celery_task_id=str(uuid.uuid4()))])
        with pytest.raises(Exception):  # noqa: B017 - whatever kombu raises, it is not lost
            traffic.publish_imports()
        own_redis.start()
        assert traffic.publish_imports() == 1
    finally:
        traffic.stop()
    assert len(queued(redis.Redis.from_url(own_redis.url()))["celery"]) == 1
