"""Child processes (``exporter/demo/processes.py``): they die with the demo even when it is
SIGKILLed, and a child that ignores SIGTERM is still stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from exporter.demo.processes import stop_process
from tests.exporter.demo.conftest import eventually


def test_children_die_with_the_demo_even_when_it_is_killed(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: a SIGKILLed demo cannot leave its worker or import processes behind."""
    pidfile = tmp_path / "child.pid"
    code = (
        "import sys, time\n"
        "from exporter.demo.processes import spawn_child\n"
        "p = spawn_child('exporter.demo.import_command',"
        " ['manage.py', 'import_customers_from_1c'], {'DEMO_IMPORT_MB': '1'})\n"
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


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_time() -> None:
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, sys, time\n"
         "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
         "time.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline().strip() == "ready"
        start = time.monotonic()
        stop_process(stubborn, timeout=0.5)
        assert stubborn.returncode == -signal.SIGKILL and time.monotonic() - start >= 0.5
        polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        stop_process(polite, timeout=10)
        assert polite.returncode == -signal.SIGTERM
        stop_process(polite)  # already gone: nothing to do
        stop_process(None)
    finally:
        if stubborn.poll() is None:
            stubborn.kill()
