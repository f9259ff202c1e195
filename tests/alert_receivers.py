"""The real Alertmanager for tests, started the production way, and the stand-ins it delivers to.

The stand-ins for the webhook receiver and the Telegram Bot API are the demo's
(:mod:`exporter.demo.alertsink`: one loopback HTTP server that rejects what Telegram would
reject); this module renders the repository's config with ``alertmanager/render-config`` and lets
it exec Alertmanager, as in production, pointed at them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.demo.alertsink import AlertSink
from exporter.demo.ports import free_port
from exporter.demo.processes import stop_process


def wait_ready(
    name: str, url: str, process: subprocess.Popen[bytes], log_path: Path, *, timeout: float,
    on_timeout: Callable[[], None],
) -> None:
    """Poll ``url`` until it answers 200; fail with the log if the process exits or time runs
    out (calling ``on_timeout`` first, so nothing is left running)."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(
                f"{name} exited with {process.returncode}:\n{log_path.read_text(errors='replace')}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            on_timeout()
            raise AssertionError(
                f"{name} not ready after {timeout:g}s:\n{log_path.read_text(errors='replace')}"
            )
        time.sleep(0.1)


# --- the real Alertmanager, started through alertmanager/render-config -------------------------

TEST_BOT_TOKEN = "123456:TEST-token_for-the_stand-in"
TEST_CHAT_ID = -1001234567890


@dataclass
class RunningAlertmanager:
    """An Alertmanager process and where it logs; ``stop()`` ends it."""

    process: subprocess.Popen[bytes]
    url: str
    config_path: Path
    log_path: Path

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Push alerts the way Prometheus does (API v2)."""
        body = json.dumps(alerts).encode()
        req = urllib.request.Request(
            f"{self.url}/api/v2/alerts", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200, resp.status

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process, timeout=10)


def short_timer_template(
    repo_root: Path, workdir: Path, group_wait: str, group_interval: str
) -> Path:
    """The repository's config template with only the route timers shortened for tests."""
    text = (repo_root / "alertmanager" / "alertmanager.yml.tmpl").read_text()
    for old, new, count in (
        (r"(?m)^(\s+group_wait:) 30s$", rf"\1 {group_wait}", 1),
        (r"(?m)^(\s+group_interval:) (5m|1m)$", rf"\1 {group_interval}", 2),
    ):
        text, n = re.subn(old, new, text)
        assert n == count, f"alertmanager.yml.tmpl: expected {count} x {old!r}, found {n}"
    path = workdir / "alertmanager.yml.tmpl"
    path.write_text(text)
    return path


def start_alertmanager(
    repo_root: Path,
    workdir: Path,
    sink: AlertSink,
    *,
    group_wait: str = "1s",
    group_interval: str = "2s",
    url_path: str = "",
    cluster: Sequence[str] = ("--cluster.listen-address=",),
) -> RunningAlertmanager:
    """Render the config with render-config (as in production) and let it exec Alertmanager.

    ``cluster`` are its ``--cluster.*`` flags; the default runs it alone (no gossip port).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    out = workdir / "rendered" / "alertmanager.yml"
    env = {
        **os.environ,
        "TELEGRAM_BOT_TOKEN": TEST_BOT_TOKEN,
        "TELEGRAM_CHAT_ID": str(TEST_CHAT_ID),
        "WEBHOOK_URL": f"{sink.url}/webhook",
        "TELEGRAM_API_URL": sink.url,
        "ALERTMANAGER_TEMPLATE": str(
            short_timer_template(repo_root, workdir, group_wait, group_interval)
        ),
        "ALERTMANAGER_CONFIG_OUT": str(out),
    }
    log_path = workdir / "alertmanager.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(repo_root / "alertmanager" / "render-config"),
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.external-url=http://127.0.0.1:{port}{url_path}",
                *cluster,
                f"--storage.path={workdir / 'data'}",
                "--log.level=debug",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    am = RunningAlertmanager(process, f"http://127.0.0.1:{port}{url_path}", out, log_path)
    wait_ready("alertmanager", f"{am.url}/-/ready", process, log_path, timeout=15,
               on_timeout=am.stop)
    return am
