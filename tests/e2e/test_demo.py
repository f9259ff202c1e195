"""``customer-sync-exporter demo`` as a user runs it: a real subprocess with real PostgreSQL,
Redis, 1C stand-in, a real Celery worker and beat, and child processes; the metrics it serves
pass ``promtool check metrics`` and move, the Celery ones too; SIGTERM stops it with exit code 0
and leaves no process behind, the worker's pool processes included.
The demo's parts are tested one by one in ``tests/exporter/demo/test_run.py``.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
import requests

from exporter.demo.ports import free_port
from tests.conftest import require_binary
from tests.exposition import samples


def exporter_binary() -> Path:
    path = Path(sys.executable).with_name("customer-sync-exporter")
    if not path.exists():
        pytest.fail(f"{path} is missing: pip install -e . into this venv")
    return path


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path, Path]]:
    port = free_port()
    data_dir = tmp_path / "demo"
    output = tmp_path / "demo.log"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [str(exporter_binary()), "demo", "--web.listen-address", f"127.0.0.1:{port}",
             "--data-dir", str(data_dir), "--seed", "1", "--rate", "20"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        yield proc, port, data_dir, output
    finally:
        if proc.poll() is None:  # the test failed before its own SIGTERM: do not leak
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait()


def wait_for_metrics(proc: subprocess.Popen[bytes], port: int, output: Path) -> str:
    """The first scrape in which the sync-log collector has finished its start-up read."""
    end = time.monotonic() + 45
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"demo exited with {proc.returncode}:\n{output.read_text()[-3000:]}")
        try:
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=12).text
        except requests.ConnectionError:
            time.sleep(0.3)
            continue
        success = samples(text, "customer_sync_exporter_collector_success", by="collector")
        if success.get("synclog") == 1.0:
            return text
        time.sleep(0.3)
    pytest.fail(f"/metrics not ready in 45 s:\n{output.read_text()[-3000:]}")


@pytest.mark.e2e
def test_demo_serves_clean_moving_metrics_and_stops_cleanly(
    demo: tuple[subprocess.Popen[bytes], int, Path, Path],
) -> None:
    promtool = require_binary("promtool")
    proc, port, data_dir, output = demo
    first = wait_for_metrics(proc, port, output)

    success = samples(first, "customer_sync_exporter_collector_success", by="collector")
    collectors = {"synclog", "business", "postgres", "redis", "disk", "onec", "process", "celery"}
    assert set(success) == collectors
    assert samples(first, "process_resident_memory_bytes")[()] > 0
    assert samples(first, "customer_sync_exporter_build_info")

    check = subprocess.run([promtool, "check", "metrics"], input=first.encode(),
                           capture_output=True, timeout=30)
    assert (check.returncode, check.stdout + check.stderr) == (0, b"")

    ops_before = sum(samples(first, "customer_sync_operations_total").values())
    password = (data_dir / "postgres" / "password").read_text()
    postgres_port = re.search(r"PostgreSQL: +postgresql://postgres@127\.0\.0\.1:(\d+)/",
                              output.read_text())
    assert postgres_port, output.read_text()[-2000:]
    dsn = f"postgresql://postgres:{password}@127.0.0.1:{postgres_port.group(1)}/freesport"
    with psycopg.connect(dsn) as conn:
        rows_now = conn.execute("SELECT count(*) FROM common_customersynclog").fetchone()
    assert rows_now is not None and ops_before <= rows_now[0]  # the traffic may not have begun

    time.sleep(2.5)  # 20 rows/s
    second = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=12).text
    ops_after = sum(samples(second, "customer_sync_operations_total").values())
    assert ops_after >= ops_before + 20
    check = subprocess.run([promtool, "check", "metrics"], input=second.encode(),
                           capture_output=True, timeout=30)
    assert (check.returncode, check.stdout + check.stderr) == (0, b"")

    assert_celery_moves(port, data_dir, psutil.Process(proc.pid))

    children = psutil.Process(proc.pid).children(recursive=True)
    names = {c.name() for c in children}
    assert "redis-server" in names and "postgres" in names
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, output.read_text()[-3000:]

    time.sleep(0.2)
    left = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert left == [], [(c.pid, c.cmdline()) for c in left]
    mentioning = []
    for p in psutil.process_iter(["pid", "ppid", "cmdline"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if p.info["ppid"] == proc.pid or str(data_dir) in cmdline:
            mentioning.append((p.info["pid"], cmdline))
    assert mentioning == []


def succeeded(text: str) -> float:
    """Celery task executions the exporter counted as succeeded, every task name together."""
    return sum(v for (name, labels), v in samples(text).items()
               if name == "customer_sync_celery_tasks_total" and ("state", "succeeded") in labels)


def assert_celery_moves(port: int, data_dir: Path, demo: psutil.Process) -> None:
    """Within a minute the real worker is up and its task counters move; the pool size is the
    kernel's, and the exporter never counts more successes than the worker logged."""
    worker = f"celery@{socket.gethostname()}"
    end = time.monotonic() + 60
    first: str | None = None
    while True:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=12).text
        up = samples(text, "customer_sync_celery_worker_up", by="worker").get(worker)
        # The pool size comes with the worker's answer to inspect stats (every 10 s, 1 s timeout).
        pool = samples(text, "customer_sync_celery_worker_pool_processes", by="worker").get(worker)
        if first is None and up == 1.0 and succeeded(text) > 0:
            first = text
        elif first is not None and succeeded(text) > succeeded(first) and pool is not None:
            break
        assert time.monotonic() < end, f"celery not moving in 60 s:\n{text[-3000:]}"
        time.sleep(1.0)
    assert samples(text, "customer_sync_exporter_collector_success", by="collector")["celery"] == 1
    assert samples(text, "customer_sync_celery_worker_task_events_enabled", by="worker") == {
        worker: 1.0}  # turned on by the exporter: the worker runs without -E, like the shop's
    (main,) = [c for c in demo.children() if "worker" in c.cmdline() and "celery" in c.cmdline()]
    assert pool == len(main.children()) == 2
    logged = (data_dir / "logs" / "celery.log").read_text().count("] succeeded in ")
    assert succeeded(text) <= logged
