"""Size, file count and oldest-file age of each configured log folder, and room left on its disk.

node_exporter knows mounts, not folders; this says which folder grows. Walking a huge folder can
take long, so each walk has a time and file budget: when it runs out the folder reports what it
counted with ``walk_complete 0``. Sizes are apparent sizes (``st_size``) of regular files;
symlinks are not followed and not counted. A file or folder that disappears during the walk (log
rotation) is skipped silently; a folder we may not read fails the collector with reason ``io``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from exporter.collector import CollectorError, Deadline, Reason
from exporter.config import DiskConfig

_DEADLINE_MARGIN = 0.05  # seconds kept for building the answer after the last walk
_CHECK_EVERY = 64  # entries between two looks at the clock

Scandir = Callable[[Path], Any]  # os.scandir: a context manager yielding os.DirEntry objects


@dataclass
class WalkResult:
    """What one walk of one folder found."""

    bytes: int = 0
    files: int = 0
    oldest_mtime: float | None = None
    complete: bool = True
    error: str | None = None
    root_readable: bool = True


def walk(
    root: Path,
    *,
    budget_end: float,
    max_files: int,
    monotonic: Callable[[], float] = time.monotonic,
    scandir: Scandir = os.scandir,
) -> WalkResult:
    """Sum regular files under ``root`` until done, ``budget_end`` (monotonic) or ``max_files``."""
    result = WalkResult()
    stack = [root]
    seen = 0
    while stack:
        folder = stack.pop()
        if monotonic() >= budget_end:
            result.complete = False
            return result
        try:
            with scandir(folder) as entries:
                for entry in entries:
                    seen += 1
                    if seen % _CHECK_EVERY == 0 and monotonic() >= budget_end:
                        result.complete = False
                        return result
                    _visit(entry, stack, result)
                    if result.files >= max_files:
                        result.complete = not stack and _exhausted(entries)
                        return result
        except FileNotFoundError:
            if folder == root:
                result.complete = result.root_readable = False
                result.error = f"{root}: no such folder"
                return result
            # a subfolder removed while we walked (log rotation): nothing left to count
        except OSError as exc:
            result.complete = False
            reason = exc.strerror or type(exc).__name__
            if folder == root:
                result.root_readable = False
                result.error = f"{root}: cannot read: {reason}"
                return result
            if result.error is None:  # keep walking the rest; report the first problem
                result.error = f"{root}: cannot read subfolder {folder}: {reason}"
    return result


def _exhausted(entries: Iterator[os.DirEntry[str]]) -> bool:
    """True if the directory iterator has nothing more (so hitting max_files was exact)."""
    return next(entries, None) is None


def _visit(entry: os.DirEntry[str], stack: list[Path], result: WalkResult) -> None:
    try:
        if entry.is_dir(follow_symlinks=False):
            stack.append(Path(entry.path))
        elif entry.is_file(follow_symlinks=False):
            st = entry.stat(follow_symlinks=False)
            result.bytes += st.st_size
            result.files += 1
            if result.oldest_mtime is None or st.st_mtime < result.oldest_mtime:
                result.oldest_mtime = st.st_mtime
    except FileNotFoundError:
        pass  # rotated away between listing and stat


class DiskCollector:
    """One bounded walk per configured folder, plus statvfs of the filesystem holding it."""

    name = "disk"

    def __init__(
        self,
        config: DiskConfig,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        scandir: Scandir = os.scandir,
        statvfs: Callable[[Path], os.statvfs_result] = os.statvfs,
    ) -> None:
        self.config = config
        self._clock = clock
        self._monotonic = monotonic
        self._scandir = scandir
        self._statvfs = statvfs

    def collect(self, deadline: Deadline) -> list[Metric]:
        f = _families()
        errors: list[str] = []
        dirs = self.config.dirs
        for i, d in enumerate(dirs):
            # Each folder gets its share of what is left, so one huge folder cannot starve the rest.
            left = max(0.0, deadline.remaining() - _DEADLINE_MARGIN)
            share = min(self.config.walk_timeout, left / (len(dirs) - i))
            result = walk(
                d.path,
                budget_end=self._monotonic() + share,
                max_files=self.config.max_files,
                monotonic=self._monotonic,
                scandir=self._scandir,
            )
            label = [d.name]
            f["walk_complete"].add_metric(label, 1.0 if result.complete else 0.0)
            try:
                st = self._statvfs(d.path)
                f["fs_free"].add_metric(label, st.f_bavail * st.f_frsize)
                f["fs_size"].add_metric(label, st.f_blocks * st.f_frsize)
            except OSError as exc:
                if result.error is None:
                    result.error = f"{d.path}: statvfs failed: {exc.strerror}"
            if result.error is not None:
                errors.append(f"dir {d.name!r}: {result.error}")
                if not result.root_readable:
                    continue  # nothing was readable: no numbers rather than a false 0
            f["bytes"].add_metric(label, result.bytes)
            f["files"].add_metric(label, result.files)
            age = 0.0 if result.oldest_mtime is None else self._clock() - result.oldest_mtime
            f["oldest"].add_metric(label, max(0.0, age))
        families: list[Metric] = list(f.values())
        if errors:
            raise CollectorError(Reason.IO, "; ".join(errors), families)
        return families


def _families() -> dict[str, GaugeMetricFamily]:
    def g(name: str, help_text: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"customer_sync_log_dir_{name}", help_text, labels=["dir"])

    return {
        "bytes": g("bytes", "Apparent size of the regular files in the log folder (a partial "
                            "sum when walk_complete is 0)."),
        "files": g("files", "Regular files in the log folder (a partial count when "
                            "walk_complete is 0)."),
        "oldest": g("oldest_file_age_seconds", "Age of the least recently modified file in the "
                                               "log folder by mtime; 0 when it has no files."),
        "walk_complete": g("walk_complete", "1 if the folder walk finished within its time and "
                                            "file budget, 0 if it stopped early or failed."),
        "fs_free": g("filesystem_free_bytes", "Bytes available to unprivileged users on the "
                                              "filesystem holding the folder (statvfs f_bavail)."),
        "fs_size": g("filesystem_size_bytes", "Size of the filesystem holding the folder."),
    }  # fmt: skip
