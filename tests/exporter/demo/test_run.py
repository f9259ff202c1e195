"""The demo's wiring (``exporter/demo/run.py``): the outage switch against a real 1C stand-in and
Redis, and the exporter config it builds."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import redis
import requests

from exporter.demo.celery_traffic import CeleryTraffic
from exporter.demo.logfolder import LogFolder
from exporter.demo.onec import Mode, OneCStandIn
from exporter.demo.redis import RedisServer
from exporter.demo.run import build_config, outage_switch
from exporter.demo.worker import SLOW_KEY


def test_outage_switch_breaks_1c_in_turn_and_slows_the_worker(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(own_redis.url())
    celery = CeleryTraffic(own_redis.url(), random.Random(1), LogFolder(tmp_path / "logs"))
    with OneCStandIn(slow_seconds=0.5) as onec:
        switch = outage_switch(onec, celery)
        assert requests.get(onec.url, timeout=5).status_code == 200
        switch(True)
        assert onec.mode is Mode.DOWN and client.exists(SLOW_KEY)
        with pytest.raises(requests.ConnectionError):
            requests.get(onec.url, timeout=5)
        switch(False)
        assert requests.get(onec.url, timeout=5).status_code == 200 and not client.exists(SLOW_KEY)
        switch(True)
        assert requests.get(onec.url, timeout=5).status_code == 500
        switch(False)
        switch(True)
        assert onec.mode is Mode.SLOW
        switch(False)
        switch(True)
        assert requests.get(onec.url, timeout=5).json()["status"] == "maintenance"
        switch(False)
        assert requests.get(onec.url, timeout=5).json()["status"] == "ok"
    celery.stop()


def test_demo_config_enables_every_collector_and_hides_secrets(tmp_path: Path) -> None:
    with OneCStandIn(username="exchange", password="onec-pass-123") as onec:
        config = build_config(
            "postgresql://postgres:pg-pass-456@127.0.0.1:5432/freesport",
            "redis://:redis-pass-789@127.0.0.1:6379/0", onec, "onec-pass-123", tmp_path,
        )
    assert config.collectors.enabled_names() == [
        "synclog", "business", "postgres", "redis", "disk", "onec", "process"]
    assert config.collectors.onec.secret_password() == "onec-pass-123"
    assert config.collectors.disk.dirs[0].path == tmp_path
    shown = repr(config) + str(config)
    for secret in ("pg-pass-456", "redis-pass-789", "onec-pass-123"):
        assert secret not in shown
    assert os.fspath(tmp_path) in shown
