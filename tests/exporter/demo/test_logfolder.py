"""The demo's log folder (``exporter/demo/logfolder.py``): old rotated files, and rotation."""

from __future__ import annotations

import time
from pathlib import Path

from exporter.demo.logfolder import LogFolder


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
