"""A real ``celery worker`` and ``celery beat`` for the demo's Celery app, started like the shop's.

``celery -A exporter.demo.celery_app worker -l info -c 2`` (no ``-E``: the exporter turns task
events on) logging into the demo's log folder, where the disk collector sees it grow, and
``celery beat`` with its schedule file in the demo's data folder, so a kept ``--data-dir``
continues the schedule. Stopping does not wait for running tasks (an import runs for tens of
seconds): the worker gets SIGQUIT, Celery's cold shutdown, and whatever of it is left after
the grace time is killed, pool processes included.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

from exporter.demo.processes import spawn_child

APP = "exporter.demo.celery_app"
WORKER_ARGV = ("-A", APP, "worker", "-l", "info", "-c", "2")
WORKER_COMMAND = " ".join(("celery", *WORKER_ARGV))  # as the banner shows it
WORKER_LOG = "celery.log"
BEAT_LOG = "celerybeat.log"
SCHEDULE_FILE = "celerybeat-schedule"


@dataclass(frozen=True)
class CelerySettings:
    """What the worker needs to reach, given to it through the environment (secrets)."""

    broker_url: str
    dsn: str
    onec_url: str
    onec_username: str
    onec_password: str
    beat_speedup: float = 60.0
    retry_seconds: float = 10.0

    def environment(self) -> dict[str, str]:
        return {
            "DEMO_BROKER_URL": self.broker_url, "DEMO_DSN": self.dsn,
            "DEMO_ONEC_URL": self.onec_url, "DEMO_ONEC_USERNAME": self.onec_username,
            "DEMO_ONEC_PASSWORD": self.onec_password,
            "DEMO_BEAT_SPEEDUP": f"{self.beat_speedup:g}",
            "DEMO_RETRY_SECONDS": f"{self.retry_seconds:g}",
        }


@dataclass
class CeleryProcesses:
    """The worker and beat processes; ``stop`` ends both and every process they started."""

    settings: CelerySettings
    log_dir: Path
    state_dir: Path
    worker: subprocess.Popen[bytes] | None = None
    beat: subprocess.Popen[bytes] | None = None

    def start(self) -> CeleryProcesses:
        env = self.settings.environment()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.worker = spawn_child(
            "celery", [*WORKER_ARGV, "--logfile", str(self.log_dir / WORKER_LOG)], env
        )
        self.beat = spawn_child(
            "celery", ["-A", APP, "beat", "-l", "info", "-s", str(self.state_dir / SCHEDULE_FILE),
                       "--logfile", str(self.log_dir / BEAT_LOG)], env,
        )
        return self

    def stop(self, timeout: float = 10.0) -> None:
        _stop(self.beat, signal.SIGTERM, timeout)
        _stop(self.worker, signal.SIGQUIT, timeout)


def _stop(proc: subprocess.Popen[bytes] | None, signum: int, timeout: float) -> None:
    """``signum`` to the main process, SIGKILL after ``timeout``; then its children left
    behind (the worker's pool processes) are killed too."""
    if proc is None:
        return
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if proc.poll() is None:
        proc.send_signal(signum)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
