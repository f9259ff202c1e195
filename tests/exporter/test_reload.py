"""Config reload: a changed valid file is applied, garbage is rejected and the old config serves."""

from __future__ import annotations

import time
from pathlib import Path

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


def test_changed_file_applies_garbage_keeps_old_and_says_so(tmp_path: Path, capsys) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD.format(timeout="7s"))
    applied: list[Config] = []
    status = ReloadStatus()
    watcher = ConfigWatcher(path, prepare=lambda c: c, apply=applied.append, status=status,
                            interval=0.05).start()
    try:
        time.sleep(0.2)
        assert applied == []  # nothing changed yet: nothing reloaded
        path.write_text(GOOD.format(timeout="3s"))
        assert wait_for(lambda: len(applied) == 1)
        assert applied[0].scrape_timeout == 3.0
        assert status.successful
        path.write_text("scrape_timeout: [\n  garbage: {{{\n")
        assert wait_for(lambda: not status.successful)
        assert len(applied) == 1  # the 3 s config is still the one serving
        families = {f.name: f.samples[0].value for f in status.families()}
        assert families["customer_sync_exporter_config_last_reload_successful"] == 0
        path.write_text(GOOD.format(timeout="4s"))
        assert wait_for(lambda: status.successful and len(applied) == 2)
        assert applied[1].scrape_timeout == 4.0
    finally:
        watcher.stop()
    err = capsys.readouterr()
    assert "config.yaml" in err.out + err.err  # the rejected file is named in the log


def test_sighup_style_request_reloads_an_unchanged_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD.format(timeout="7s"))
    applied: list[Config] = []
    watcher = ConfigWatcher(path, prepare=lambda c: c, apply=applied.append,
                            status=ReloadStatus(), interval=60).start()
    try:
        watcher.request_reload()
        assert wait_for(lambda: len(applied) == 1)
    finally:
        watcher.stop()
