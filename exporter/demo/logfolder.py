"""A log folder like the shop's: rotated old files plus files that grow while the demo runs.

The disk collector watches it; old rotated files give its oldest-file age something to show.
"""

from __future__ import annotations

import gzip
import os
import threading
import time
from pathlib import Path

DAY = 86400.0


class LogFolder:
    """Creates the old rotated files once; ``append`` writes a line and rotates at 1 MiB."""

    MAX_BYTES = 1024 * 1024

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.mkdir(parents=True, exist_ok=True)
        now = time.time()
        old = {
            "import_customers.log.1": (1, "ИТОГ: создано=31, обновлено=4120, пропущено=380\n"),
            "celery.log.1": (2, "[INFO/MainProcess] celery@freesport ready.\n"),
            "sync.log.2.gz": (7, "customer sync report\n"),
        }
        for name, (days, text) in old.items():
            file = path / name
            if not file.exists():
                data = text.encode() * 200
                file.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
                os.utime(file, (now - days * DAY, now - days * DAY))

    def append(self, name: str, line: str) -> None:
        with self._lock:
            file = self.path / name
            if file.exists() and file.stat().st_size > self.MAX_BYTES:
                file.replace(self.path / f"{name}.1")
            with file.open("a", encoding="utf-8") as out:
                out.write(line)
