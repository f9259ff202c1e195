"""Child processes of the demo: started so they die with it, stopped terminate-then-kill.

The demo's programs (the Celery worker and beat, the import command stand-in) are real modules
run with ``python -m``; they only get secrets through the environment, never on the command
line, and ask for a signal when the demo dies first (:func:`die_with_parent`, or the Celery app's
:func:`signal_on_parent_death` at ``worker_init``), so a SIGKILLed demo cannot leave them behind
(PR_SET_PDEATHSIG; note it fires when the spawning *thread* ends, which for import processes is
the traffic thread, stopped only at shutdown).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

PARENT_PID = "DEMO_PARENT_PID"
PR_SET_PDEATHSIG = 1


def spawn_child(
    module: str, argv: Sequence[str], env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """``python -m module *argv`` with ``env`` added to ours; the command line looks like the
    shop's (``celery -A ... worker``, ``manage.py import_customers_from_1c``), which the process
    collector matches."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *argv],
        env={**os.environ, PARENT_PID: str(os.getpid()), **env},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # a terminal's Ctrl-C reaches the demo only; it stops them
    )


def die_with_parent() -> None:
    """In a child: get SIGTERM when the demo dies, and exit quietly on SIGTERM."""
    signal_on_parent_death(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


def signal_on_parent_death(signum: int) -> None:
    """In a child: the kernel sends ``signum`` when the demo dies; exit now if it already has."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signum)
    if os.getppid() != int(os.environ[PARENT_PID]):  # the demo died before prctl took effect
        sys.exit(0)


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds; reaps it."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
