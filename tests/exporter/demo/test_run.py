"""The demo's wiring (``exporter/demo/run.py``): the outage switch against a real 1C stand-in,
and the exporter config it builds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from exporter.demo.celery_app import APPLICATION_NAME
from exporter.demo.onec import Mode, OneCStandIn
from exporter.demo.run import build_config, outage_switch


def test_outage_switch_breaks_1c_in_turn() -> None:
    with OneCStandIn(slow_seconds=0.5) as onec:
        switch = outage_switch(onec)
        assert requests.get(onec.url, timeout=5).status_code == 200
        switch(True)
        assert onec.mode is Mode.DOWN
        with pytest.raises(requests.ConnectionError):
            requests.get(onec.url, timeout=5)
        switch(False)
        assert requests.get(onec.url, timeout=5).status_code == 200
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


def test_demo_config_enables_every_collector_and_hides_secrets(tmp_path: Path) -> None:
    with OneCStandIn(username="exchange", password="onec-pass-123") as onec:
        config = build_config(
            "postgresql://postgres:pg-pass-456@127.0.0.1:5432/freesport",
            "redis://:redis-pass-789@127.0.0.1:6379/0", onec, "onec-pass-123", tmp_path,
        )
    assert config.collectors.enabled_names() == [
        "synclog", "business", "postgres", "redis", "disk", "onec", "process", "celery"]
    assert config.collectors.onec.secret_password() == "onec-pass-123"
    celery = config.collectors.celery
    assert celery.broker_url.get_secret_value() == "redis://:redis-pass-789@127.0.0.1:6379/0"
    assert celery.inspect_interval == 10.0 and celery.enable_events  # the demo's worker has no -E
    assert APPLICATION_NAME in config.collectors.postgres.application_names
    assert config.collectors.disk.dirs[0].path == tmp_path
    shown = repr(config) + str(config)
    for secret in ("pg-pass-456", "redis-pass-789", "onec-pass-123"):
        assert secret not in shown
    assert os.fspath(tmp_path) in shown
