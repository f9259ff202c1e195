"""Config reload: a changed valid file is applied, garbage is rejected and the old config serves."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import exporter.reload
from exporter.config import Config
from exporter.reload import ConfigWatcher, ReloadStatus

GOOD = """
scrape_timeout: {timeout}
collectors:
  synclog: {{enabled: false}}
  business: {{enabled: false}}
  postgres: {{enabled: false}}
  onec: {{enabled: false}}
  redis: {{enabled: false}}
"""


def wait_for(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@dataclass
class Watched:
    """A config file at 7 s under a running watcher, and what the watcher applied."""

    path: Path
    status: ReloadStatus = field(default_factory=ReloadStatus)
    applied: list[Config] = field(default_factory=list)
    watcher: ConfigWatcher | None = None


@contextmanager
def watching(tmp_path: Path, *, interval: float = 0.05,
             prepare: Callable[[Config], Config] = lambda c: c) -> Iterator[Watched]:
    w = Watched(tmp_path / "config.yaml")
    w.path.write_text(GOOD.format(timeout="7s"))
    w.watcher = ConfigWatcher(w.path, prepare=prepare, apply=w.applied.append, status=w.status,
                              interval=interval).start()
    try:
        yield w
    finally:
        w.watcher.stop()


def test_changed_file_applies_garbage_keeps_old_and_says_so(tmp_path: Path, capsys) -> None:
    with watching(tmp_path) as w:
        time.sleep(0.2)
        assert w.applied == []  # nothing changed yet: nothing reloaded
        w.path.write_text(GOOD.format(timeout="3s"))
        assert wait_for(lambda: len(w.applied) == 1)
        assert w.applied[0].scrape_timeout == 3.0
        assert w.status.successful
        w.path.write_text("scrape_timeout: [\n  garbage: {{{\n")
        assert wait_for(lambda: not w.status.successful)
        assert len(w.applied) == 1  # the 3 s config is still the one serving
        families = {f.name: f.samples[0].value for f in w.status.families()}
        assert families["customer_sync_exporter_config_last_reload_successful"] == 0
        w.path.write_text(GOOD.format(timeout="4s"))
        assert wait_for(lambda: w.status.successful and len(w.applied) == 2)
        assert w.applied[1].scrape_timeout == 4.0
    err = capsys.readouterr()
    assert "config.yaml" in err.out + err.err  # the rejected file is named in the log


def test_sighup_style_request_reloads_an_unchanged_file(tmp_path: Path) -> None:
    with watching(tmp_path, interval=60) as w:
        assert w.watcher is not None
        w.watcher.request_reload()
        assert wait_for(lambda: len(w.applied) == 1)


def _bomb() -> str:
    lines = ["x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _huge(path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        f.write(GOOD.format(timeout="9s") + "    queues:\n")
        while f.tell() < 52_000_000:
            f.write("      - some-queue-name\n")
    os.replace(tmp, path)


@pytest.mark.parametrize("bad", ["latin1", "nul", "alias_bomb", "52mb"])
def test_any_bad_file_is_a_rejected_reload_and_the_next_good_one_applies(
    tmp_path: Path, bad: str
) -> None:
    with watching(tmp_path) as w:
        path, applied, status, watcher = w.path, w.applied, w.status, w.watcher
        assert watcher is not None
        with capture_logs() as logs:
            if bad == "latin1":
                _write(path, GOOD.format(timeout="3s").encode() + "# Prüfung\n".encode("latin-1"))
            elif bad == "nul":
                _write(path, GOOD.format(timeout="3s").encode() + b"# \x00\n")
            elif bad == "alias_bomb":
                _write(path, _bomb().encode())
            else:
                _huge(path)
            assert wait_for(lambda: not status.successful)
        assert applied == []
        errors = [e for e in logs if e["log_level"] == "error"]
        assert len(errors) == 1, errors
        assert re.match(rf"{re.escape(str(path))}:\d+: \((file|syntax|size)\): ", errors[0]["error"])
        assert watcher._thread.is_alive()
        _write(path, GOOD.format(timeout="4s").encode())
        assert wait_for(lambda: status.successful and len(applied) == 1)
        assert applied[0].scrape_timeout == 4.0
        # And SIGHUP is still acted on.
        watcher.request_reload()
        assert wait_for(lambda: len(applied) == 2)


def test_an_unexpected_error_is_a_rejected_reload_and_the_watcher_keeps_going(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = iter([RuntimeError("a loader bug quoting hunter22")])

    def prepare(config: Config) -> Config:
        for exc in failures:
            raise exc
        return config

    with watching(tmp_path, prepare=prepare) as w:
        path, applied, status = w.path, w.applied, w.status
        with capture_logs() as logs:
            path.write_text(GOOD.format(timeout="3s"))
            assert wait_for(lambda: not status.successful)
            # The polling itself failing once (here: hashing the file) is survived the same way.
            real_digest = exporter.reload._digest
            calls = iter([OSError])

            def digest(p: Path) -> bytes | None:
                for _ in calls:
                    raise MemoryError
                return real_digest(p)

            monkeypatch.setattr(exporter.reload, "_digest", digest)
            path.write_text(GOOD.format(timeout="4s"))
            assert wait_for(lambda: len(applied) == 1)
        assert applied[0].scrape_timeout == 4.0 and status.successful
        messages = [(e["event"], e["error"]) for e in logs if e["log_level"] == "error"]
        assert messages[0][0] == "config reload rejected, the previous config keeps serving"
        assert re.fullmatch(rf"{re.escape(str(path))}:0: \(internal\): RuntimeError at "
                            r"test_reload\.py:\d+", messages[0][1])
        assert messages[1] == ("config watch failed, the previous config keeps serving",
                               f"MemoryError at test_reload.py:{_line_of('raise MemoryError')}")
        assert "hunter22" not in str(logs)  # the message of an unexpected error is not logged


def _line_of(text: str) -> int:
    lines = Path(__file__).read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.strip() == text)
