"""The demo's parts (``exporter/demo/run.py``) one by one, against real Redis, a real 1C
stand-in and real child processes: the outage switch, the Celery worker stand-in, the import
processes, the log folder, and that children die with the demo."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import redis
import requests

from exporter.demo.onec import Mode, OneCStandIn
from exporter.demo.redis import RedisServer
from exporter.demo.run import (
    CELERY_TASKS,
    SLOW_KEY,
    AlertSink,
    CeleryTraffic,
    ImportProcesses,
    LogFolder,
    _alertmanager_config,
    _prometheus_config,
    build_config,
    outage_switch,
)
from exporter.demo.traffic import SessionRow, SessionUpdate
from tests.conftest import require_binary


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            pytest.fail("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of our own (with a password, as in the demo): the test fills and drains queues."""
    server = RedisServer(tmp_path / "redis", password="s3cret-demo").start()
    yield server
    server.stop()


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


def test_import_processes_live_while_their_session_runs(tmp_path: Path) -> None:
    folder = LogFolder(tmp_path / "logs")
    imports = ImportProcesses(folder, random.Random(2))
    imports.on_batch([SessionRow(41)])
    proc = psutil.Process(imports.running[41].pid)
    eventually(lambda: bool(  # right after fork the command line is not there yet
        re.search(r"manage\.py\s+import_customers_from_1c", " ".join(proc.cmdline()))))
    eventually(lambda: proc.memory_info().rss > 20 * 1024 * 1024)
    report = {"created": 3, "updated": 90, "skipped": 4, "errors": 1}
    imports.on_batch([SessionUpdate(41, "completed", finished=True, report_details=report)])
    assert 41 not in imports.running and not proc.is_running()
    imports.on_batch([SessionRow(42)])
    imports.on_batch([SessionUpdate(42, "failed", finished=True, error_message="1C is down")])
    lines = (folder.path / "import_customers.log").read_text().splitlines()
    assert lines[-2].endswith("#41: completed; создано=3, обновлено=90, пропущено=4, ошибок=1")
    assert lines[-1].endswith("#42: failed; ошибка: 1C is down")
    imports.on_batch([SessionRow(43)])
    last = imports.running[43]
    imports.stop()
    assert last.poll() is not None and imports.running == {}


def test_log_folder_has_old_rotated_files_and_rotates(tmp_path: Path) -> None:
    folder = LogFolder(tmp_path / "logs")
    ages = {p.name: time.time() - p.stat().st_mtime for p in folder.path.iterdir()}
    assert ages["sync.log.2.gz"] > 6 * 86400 and ages["celery.log.1"] > 86400
    folder.MAX_BYTES = 100  # type: ignore[misc]
    for i in range(10):
        folder.append("app.log", f"line {i:03d} {'x' * 20}\n")
    assert (folder.path / "app.log.1").exists()
    sizes = (folder.path / "app.log").stat().st_size + (folder.path / "app.log.1").stat().st_size
    assert 0 < sizes < 10 * 30


def test_children_die_with_the_demo_even_when_it_is_killed(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: a SIGKILLed demo cannot leave its worker or import processes behind."""
    pidfile = tmp_path / "child.pid"
    code = (
        "import sys, time\n"
        "from exporter.demo.run import _IMPORT_CODE, _child\n"
        "p = _child(_IMPORT_CODE, ['manage.py', 'import_customers_from_1c'],"
        " {'DEMO_IMPORT_MB': '1'})\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[3])
    try:
        eventually(lambda: pidfile.exists() and pidfile.read_text() != "")
        child = psutil.Process(int(pidfile.read_text()))
        assert child.ppid() == parent.pid
        parent.kill()
        parent.wait()
        child.wait(timeout=10)
        assert not psutil.pid_exists(child.pid) or child.status() == psutil.STATUS_ZOMBIE
    finally:
        if parent.poll() is None:
            parent.kill()


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


def test_alert_sink_answers_like_telegram_and_a_webhook_receiver(tmp_path: Path) -> None:
    sink = AlertSink(tmp_path / "received.log").start()
    try:
        answer = requests.post(f"{sink.url}/bot123456:demo-token/sendMessage", timeout=5,
                               json={"chat_id": 1, "text": "🔥 CustomerSyncOneCDown\nfiring"})
        assert answer.status_code == 200
        body = answer.json()
        assert body["ok"] is True and body["result"]["chat"]["id"] == 1
        webhook = {"receiver": "page", "status": "firing", "alerts": [
            {"labels": {"alertname": "CustomerSyncOneCDown"}},
            {"labels": {"alertname": "CustomerSyncImportFailing"}}]}
        assert requests.post(f"{sink.url}/webhook", json=webhook, timeout=5).status_code == 200
    finally:
        sink.stop()
    lines = (tmp_path / "received.log").read_text(encoding="utf-8").splitlines()
    assert lines[0].endswith("telegram: 🔥 CustomerSyncOneCDown firing")
    assert lines[1].endswith("webhook page firing: CustomerSyncImportFailing, CustomerSyncOneCDown")


def test_demo_prometheus_and_alertmanager_configs_are_valid(tmp_path: Path) -> None:
    promtool, amtool = require_binary("promtool"), require_binary("amtool")
    sink = AlertSink(tmp_path / "received.log")
    config = _alertmanager_config(tmp_path / "am", sink)
    sink.server.server_close()  # only its address was needed
    text = config.read_text()
    assert sink.url in text and config.stat().st_mode & 0o077 == 0
    check = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    routes = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config}",
                             "--verify.receivers=page", "severity=critical"],
                            capture_output=True, text=True)
    assert routes.returncode == 0, routes.stdout + routes.stderr
    prometheus = _prometheus_config(tmp_path, "127.0.0.1:19999", 19093)
    assert prometheus is not None
    check = subprocess.run([promtool, "check", "config", str(prometheus)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    rendered = prometheus.read_text()
    assert "127.0.0.1:19999" in rendered and "127.0.0.1:19093" in rendered
