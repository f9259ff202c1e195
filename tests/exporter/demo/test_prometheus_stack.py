"""``demo --with-prometheus`` (``exporter/demo/prometheus_stack.py``): the configs it renders from
the checkout pass promtool and amtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

from exporter.demo.alertsink import AlertSink
from exporter.demo.prometheus_stack import alertmanager_config, prometheus_config, source_tree
from tests.conftest import require_binary


def test_the_checkout_is_found_beside_the_package(repo_root: Path) -> None:
    assert source_tree() == repo_root


def test_demo_prometheus_and_alertmanager_configs_are_valid(
    tmp_path: Path, repo_root: Path
) -> None:
    promtool, amtool = require_binary("promtool"), require_binary("amtool")
    sink = AlertSink(tmp_path / "received.log")
    config = alertmanager_config(repo_root, tmp_path / "am", sink)
    sink.stop()  # only its address was needed
    text = config.read_text()
    assert sink.url in text and config.stat().st_mode & 0o077 == 0
    check = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    routes = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config}",
                             "--verify.receivers=page", "severity=critical"],
                            capture_output=True, text=True)
    assert routes.returncode == 0, routes.stdout + routes.stderr
    prometheus = prometheus_config(repo_root, tmp_path, "127.0.0.1:19999", 19093)
    check = subprocess.run([promtool, "check", "config", str(prometheus)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    rendered = prometheus.read_text()
    assert "127.0.0.1:19999" in rendered and "127.0.0.1:19093" in rendered
