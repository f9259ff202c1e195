"""The disk collector on real folders, checked against an independent os.walk."""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.core import Metric

from collectors.disk import DiskCollector
from exporter.collector import CollectorError, Deadline, Reason
from exporter.config import DiskConfig

NOW = 1_750_000_000.0
T = TypeVar("T")


def metric_of(families: list[Metric], dir_name: str) -> dict[str, float]:
    """Every customer_sync_log_dir_* sample of one folder, keyed by the name's suffix."""
    prefix = "customer_sync_log_dir_"
    return {
        s.name[len(prefix) :]: s.value
        for f in families
        for s in f.samples
        if s.labels.get("dir") == dir_name
    }


def independent(root: Path) -> dict[str, float]:
    """What the collector should report, computed with os.walk and lstat."""
    size = files = 0
    oldest: float | None = None
    for folder, _dirs, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(folder, name))
            if stat.S_ISREG(st.st_mode):
                size += st.st_size
                files += 1
                oldest = st.st_mtime if oldest is None else min(oldest, st.st_mtime)
    return {
        "bytes": size,
        "files": files,
        "oldest_file_age_seconds": 0.0 if oldest is None else NOW - oldest,
    }


def write(path: Path, size: int, age: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (NOW - age, NOW - age))


def make_tree(base: Path) -> Path:
    write(base / "app.log", 1000, 100)
    write(base / "old" / "app.log.1", 2500, 3 * 86400)
    write(base / "old" / "deeper" / "app.log.2.gz", 123, 3600)
    (base / "empty").mkdir()
    (base / "link-to-log").symlink_to(base / "app.log")  # not followed, not counted
    (base / "link-to-dir").symlink_to(base / "old")
    return base


def collector(dirs: dict[str, Path], **kwargs: Any) -> DiskCollector:
    extra = {k: kwargs.pop(k) for k in ("walk_timeout", "max_files") if k in kwargs}
    config = DiskConfig(
        dirs=[{"name": n, "path": p} for n, p in dirs.items()],  # type: ignore[misc]
        **extra,
    )
    return DiskCollector(config, clock=lambda: NOW, **kwargs)


def test_sizes_counts_and_ages_equal_os_walk(tmp_path: Path) -> None:
    a = make_tree(tmp_path / "a")
    b = tmp_path / "b"
    for i in range(40):
        write(b / f"sub{i % 4}" / f"f{i}.log", 10 * i + 1, 60 * i)
    families = collector({"django": a, "celery": b}).collect(Deadline.after(5))
    for name, root in (("django", a), ("celery", b)):
        got = metric_of(families, name)
        expected = independent(root)
        assert {k: got[k] for k in expected} == expected
        assert got["walk_complete"] == 1
        usage = shutil.disk_usage(root)
        assert got["filesystem_size_bytes"] == usage.total
        assert abs(got["filesystem_free_bytes"] - usage.free) < 64 * 1024 * 1024
    # Ground truth written by this test, not only os.walk: 1000 + 2500 + 123 bytes, 3 days old.
    assert metric_of(families, "django")["bytes"] == 3623
    assert metric_of(families, "django")["oldest_file_age_seconds"] == 3 * 86400


def test_empty_folder_reports_zeros(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    got = metric_of(collector({"logs": tmp_path / "logs"}).collect(Deadline.after(2)), "logs")
    assert got["bytes"] == got["files"] == got["oldest_file_age_seconds"] == 0
    assert got["walk_complete"] == 1


def test_file_budget_reports_what_it_counted(tmp_path: Path) -> None:
    for i in range(25):
        write(tmp_path / "logs" / f"{i}.log", 100, i)
    got = metric_of(
        collector({"logs": tmp_path / "logs"}, max_files=10).collect(Deadline.after(2)), "logs"
    )
    assert got["files"] == 10 and got["bytes"] == 1000
    assert got["walk_complete"] == 0
    exact = collector({"logs": tmp_path / "logs"}, max_files=25).collect(Deadline.after(2))
    assert metric_of(exact, "logs")["files"] == 25
    assert metric_of(exact, "logs")["walk_complete"] == 1


def test_time_budget_and_scrape_deadline_stop_the_walk(tmp_path: Path) -> None:
    for i in range(300):
        write(tmp_path / "logs" / f"d{i % 7}" / f"{i}.log", 10, i)
    full = independent(tmp_path / "logs")
    got = metric_of(
        collector({"logs": tmp_path / "logs"}, walk_timeout=1e-6).collect(Deadline.after(5)),
        "logs",
    )
    assert got["walk_complete"] == 0
    assert got["files"] < full["files"]
    start = time.monotonic()
    nearly_over = collector({"logs": tmp_path / "logs"}).collect(Deadline.after(0.02))
    assert time.monotonic() - start < 0.02 + 0.05
    assert metric_of(nearly_over, "logs")["walk_complete"] == 0


def test_missing_folder_and_file_fail_with_io_others_still_reported(tmp_path: Path) -> None:
    good = make_tree(tmp_path / "good")
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(CollectorError) as caught:
        collector(
            {"gone": tmp_path / "missing", "good": good, "file": tmp_path / "a-file"}
        ).collect(Deadline.after(2))
    assert caught.value.reason is Reason.IO
    assert "'gone'" in caught.value.message and "'file'" in caught.value.message
    partial = caught.value.partial
    got = metric_of(partial, "good")
    assert {k: got[k] for k in independent(good)} == independent(good)
    assert got["walk_complete"] == 1
    assert metric_of(partial, "gone") == {"walk_complete": 0}
    assert metric_of(partial, "file")["walk_complete"] == 0
    assert "bytes" not in metric_of(partial, "file")


def test_subfolder_removed_mid_walk_is_skipped(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "logs")
    real_scandir = os.scandir

    def rotating_scandir(path: Path) -> Any:
        """The real os.scandir; right after the root is listed, a real rmtree removes 'old'."""
        it = real_scandir(path)
        if Path(path) == root:
            shutil.rmtree(root / "old")
        return it

    families = collector({"logs": root}, scandir=rotating_scandir).collect(Deadline.after(2))
    got = metric_of(families, "logs")
    assert not (root / "old").exists()
    assert {k: got[k] for k in independent(root)} == independent(root)
    assert got["bytes"] == 1000
    assert got["walk_complete"] == 1


def run_unprivileged(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread whose filesystem uid/gid is 'nobody'.

    We run as root, and root reads everything. setfsuid is per thread in Linux and dropping it
    from 0 clears CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH for that thread, so the kernel really
    denies access to the collector code running there, as for an unprivileged exporter.
    """
    nobody = pwd.getpwnam("nobody")
    libc = ctypes.CDLL(None, use_errno=True)
    out: dict[str, Any] = {}

    def target() -> None:
        libc.setfsgid(nobody.pw_gid)
        libc.setfsuid(nobody.pw_uid)
        try:
            assert libc.setfsuid(-1) == nobody.pw_uid  # -1 is invalid: returns the current one
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc
        finally:
            libc.setfsuid(0)
            libc.setfsgid(0)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(10)
    if "error" in out:
        raise out["error"]
    return out["value"]  # type: ignore[no-any-return]


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A folder 'nobody' can traverse (pytest's tmp_path lives under a root-only 0700 folder)."""
    base = Path(tempfile.mkdtemp(prefix="disk-test-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base)


def test_permission_denied_root_and_subfolder(public_dir: Path) -> None:
    open_logs = make_tree(public_dir / "open")
    (open_logs / "old").chmod(0o700)  # owned by root: 'nobody' cannot list it
    closed = make_tree(public_dir / "closed")
    closed.chmod(0o700)
    for path in public_dir.rglob("*"):
        if not path.is_symlink() and path.is_file():
            path.chmod(0o644)
    for path in (public_dir, open_logs):
        path.chmod(0o755)

    # The mechanism itself: in that thread the kernel refuses to list the folder.
    with pytest.raises(PermissionError):
        run_unprivileged(lambda: os.listdir(open_logs / "old"))

    c = collector({"open": open_logs, "closed": closed})
    with pytest.raises(CollectorError) as caught:
        run_unprivileged(lambda: c.collect(Deadline.after(2)))
    assert caught.value.reason is Reason.IO
    assert "Permission denied" in caught.value.message
    got = metric_of(caught.value.partial, "open")
    readable = independent(open_logs)
    hidden = independent(open_logs / "old")
    assert got["bytes"] == readable["bytes"] - hidden["bytes"] == 1000
    assert got["files"] == readable["files"] - hidden["files"] == 1
    assert got["walk_complete"] == 0
    closed_got = metric_of(caught.value.partial, "closed")
    assert closed_got["walk_complete"] == 0 and "bytes" not in closed_got
    # As root (no restriction) the same collector reads both folders completely.
    assert c.collect(Deadline.after(2))
