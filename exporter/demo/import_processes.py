"""Import processes and the import log, following the import sessions the traffic writes.

One ``manage.py import_customers_from_1c`` stand-in process (:mod:`exporter.demo.import_command`)
per running import session, and a line in ``import_customers.log`` when it ends, as the shop's
import command writes.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Sequence

from exporter.demo.logfolder import LogFolder
from exporter.demo.processes import spawn_child, stop_process
from exporter.demo.traffic import Op, SessionRow, SessionUpdate

IMPORT_ARGV = ("manage.py", "import_customers_from_1c", "--data-dir", "/srv/1c/out")


def import_summary(op: SessionUpdate) -> str:
    """The log line's verdict: the session's totals, or its error."""
    if op.status != "completed":
        return f"ошибка: {op.error_message}"
    report = op.report_details or {}
    return (
        f"создано={report.get('created', 0)}, обновлено={report.get('updated', 0)}, "
        f"пропущено={report.get('skipped', 0)}, ошибок={report.get('errors', 0)}"
    )


class ImportProcesses:
    """The traffic's ``on_batch`` callback: a process per session from start to finish."""

    def __init__(self, folder: LogFolder, rng: random.Random) -> None:
        self.folder = folder
        self.rng = rng
        self.running: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def on_batch(self, ops: Sequence[Op]) -> None:
        for op in ops:
            if isinstance(op, SessionRow) and op.import_type == "customers":
                self._start(op.id)
            elif isinstance(op, SessionUpdate) and op.finished:
                self._finish(op)

    def _start(self, sid: int) -> None:
        megabytes = self.rng.randint(20, 80)
        proc = spawn_child(
            "exporter.demo.import_command", IMPORT_ARGV, {"DEMO_IMPORT_MB": str(megabytes)}
        )
        with self._lock:
            self.running[sid] = proc

    def _finish(self, op: SessionUpdate) -> None:
        with self._lock:
            proc = self.running.pop(op.id, None)
        stop_process(proc)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.folder.append(
            "import_customers.log",
            f"{stamp} Сессия импорта #{op.id}: {op.status}; {import_summary(op)}\n",
        )

    def stop(self) -> None:
        with self._lock:
            procs, self.running = list(self.running.values()), {}
        for proc in procs:
            stop_process(proc)
