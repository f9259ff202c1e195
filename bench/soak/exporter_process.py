"""The exporter under soak: its config and the exporter as its own process.

Its own process so the RSS measured is the exporter's alone; the config is the demo's with the
soak's short windows and secrets in ``*_file`` keys, validated here so a wrong shape fails in
the soak rather than in the child.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.soak.plan import label
from exporter.config import Config
from exporter.demo.celery_app import QUEUE as CELERY_QUEUE
from exporter.demo.onec import OneCStandIn
from exporter.demo.ports import free_port
from exporter.demo.postgres import EmbeddedPostgres

POOL_MAX_SIZE = 3  # the exporter's default database.pool_max_size
APP_NAME = "customer-sync-exporter"


def _secret(path: Path, value: str) -> Path:
    path.write_text(value, encoding="utf-8")
    path.chmod(0o600)
    return path


def exporter_config(
    root: Path, pg: EmbeddedPostgres, redis_port: int, redis_password: str, onec: OneCStandIn,
    onec_password: str, log_dir: Path, windows: list[float],
) -> Path:
    """The demo's config (``exporter/demo/run.py`` ``build_config``: every collector on) with
    short windows, and secrets in ``*_file`` keys rather than in the file."""
    secrets_dir = root / "secrets"
    secrets_dir.mkdir(mode=0o700)
    data: dict[str, Any] = {
        "scrape_timeout": "10s",
        "database": {
            "dsn": pg.dsn("freesport", with_password=False),
            "password_file": str(_secret(secrets_dir / "pg", pg.password)),
            "pool_max_size": POOL_MAX_SIZE,
            "application_name": APP_NAME,
        },
        "collectors": {
            "synclog": {"enabled": True, "windows": [label(w) for w in windows]},
            "business": {"enabled": True},
            "postgres": {"enabled": True,
                         "application_names": ["freesport-demo-traffic", APP_NAME]},
            "redis": {"enabled": True, "url": f"redis://127.0.0.1:{redis_port}/0",
                      "password_file": str(_secret(secrets_dir / "redis", redis_password)),
                      "queues": [CELERY_QUEUE]},
            "disk": {"enabled": True, "dirs": [{"name": "freesport_logs", "path": str(log_dir)}]},
            "onec": {"enabled": True, "url": onec.url, "username": onec.username,
                     "password_file": str(_secret(secrets_dir / "onec", onec_password)),
                     "json_field": "status", "json_value": "ok"},
            "process": {"enabled": True},
        },
    }
    Config.model_validate(data)  # fail here, not in the child, if the shape is wrong
    path = root / "exporter.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: no orphan if we are killed


@dataclass
class ExporterProcess:
    """``customer-sync-exporter serve`` as its own process, so the RSS measured is its alone;
    ``stop`` keeps the exit code SIGTERM got, which the verdict checks."""

    proc: subprocess.Popen[bytes]
    port: int
    exit_code: int | None = None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.exit_code = self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_exporter(root: Path, config: Path) -> ExporterProcess:
    exe = Path(sys.executable).parent / "customer-sync-exporter"
    if not exe.exists():
        raise RuntimeError(f"{exe} is missing: install the project (pip install -e .)")
    port = free_port()
    with (root / "exporter.log").open("ab") as err:
        proc = subprocess.Popen(
            [str(exe), "serve", "--config.file", str(config),
             "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warning"],
            stdin=subprocess.DEVNULL, stdout=err, stderr=err, preexec_fn=_die_with_parent,
        )
    return ExporterProcess(proc, port)
