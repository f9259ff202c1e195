"""Import processes (``exporter/demo/import_processes.py``): a real stand-in process per running
import session, holding memory, ended with a line in the import log."""

from __future__ import annotations

import random
import re
from pathlib import Path

import psutil

from exporter.demo.import_processes import ImportProcesses
from exporter.demo.logfolder import LogFolder
from exporter.demo.traffic import SessionRow, SessionUpdate
from tests.exporter.demo.conftest import eventually


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
