"""``python -m mixin.build --check``: the checked-in rules and dashboards are what it generates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mixin import build
from mixin.build import ROOT, outputs, stale
from mixin.config import load


def test_checked_in_rules_and_dashboards_are_current() -> None:
    proc = subprocess.run([sys.executable, "-m", "mixin.build", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = {p.relative_to(ROOT).as_posix() for p in outputs(load())}
    assert names == {
        "prometheus/rules/customer_sync.alerts.yml", "prometheus/rules/customer_sync.rules.yml",
        "prometheus/rules/customer_sync.slo.yml", "prometheus/rules/customer_sync.celery.yml",
        "grafana/dashboards/customer-sync-operations.json",
        "grafana/dashboards/customer-sync-business.json",
        "grafana/dashboards/customer-sync-system-health.json"}


def test_a_hand_edit_a_missing_file_and_an_orphan_are_all_stale(tmp_path: Path) -> None:
    files = outputs(load(), tmp_path)
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    folders = (tmp_path / "prometheus" / "rules", tmp_path / "grafana" / "dashboards")
    assert stale(files, folders) == []
    edited = tmp_path / "prometheus" / "rules" / "customer_sync.alerts.yml"
    edited.write_text(edited.read_text().replace("for: 2m", "for: 20m", 1))
    missing = tmp_path / "grafana" / "dashboards" / "customer-sync-business.json"
    missing.unlink()
    orphan = tmp_path / "prometheus" / "rules" / "old.yml"
    orphan.write_text("groups: []\n")
    assert sorted(stale(files, folders)) == sorted([edited, missing, orphan])


def test_check_fails_with_the_file_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--check against a stale tree: exit 1, the stale file and the command to run; then a
    plain run rewrites it and --check passes."""
    for path, text in outputs(load(), tmp_path).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    rules = tmp_path / "prometheus" / "rules" / "customer_sync.rules.yml"
    rules.write_text(rules.read_text() + "# edited by hand\n")
    monkeypatch.setattr(build, "ROOT", tmp_path)
    assert build.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "prometheus/rules/customer_sync.rules.yml" in err
    assert "python -m mixin.build" in err
    assert build.main([]) == 0
    assert build.main(["--check"]) == 0
