"""Prometheus rules as tested code: promtool checks and unit tests, and their coverage.

promtool (Debian's 2.42) does the evaluating; this module runs it and also proves the unit tests
cover every alert both ways (fires / must not fire), every recording rule, and that each alert
carries what an on-call person needs (severity, summary, description with the value, a
runbook_url whose section exists, a `for:`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_binary

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "prometheus" / "rules"
ALERTS_FILE = RULES / "customer_sync.alerts.yml"
RECORDING_FILE = RULES / "customer_sync.rules.yml"
TESTS = sorted((ROOT / "prometheus" / "tests").glob("*_test.yml"))
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/freesport/customer-sync-exporter/blob/main/docs/runbook.md"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in load(ALERTS_FILE)["groups"] for r in g["rules"] if "alert" in r]


def recording_rules() -> list[dict[str, Any]]:
    return [
        r for f in (RECORDING_FILE, ALERTS_FILE) for g in load(f)["groups"] for r in g["rules"]
        if "record" in r
    ]  # fmt: skip


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


# --- promtool ---------------------------------------------------------------------------------


def test_promtool_check_rules_is_clean() -> None:
    result = promtool("check", "rules", str(RECORDING_FILE), str(ALERTS_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 11 rules found" in result.stdout  # recording
    assert f"SUCCESS: {len(alert_rules()) + 1} rules found" in result.stdout  # + the parameter


def test_promtool_check_config_is_clean() -> None:
    result = promtool("check", "config", str(ROOT / "prometheus" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout


@pytest.mark.parametrize("test_file", TESTS, ids=[t.name for t in TESTS])
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_unit_tests_fail_when_a_threshold_moves(tmp_path: Path) -> None:
    """The unit tests pin the story's thresholds: a changed 10 % makes them fail."""
    rules = tmp_path / "rules"
    tests = tmp_path / "tests"
    shutil.copytree(RULES, rules)
    shutil.copytree(ROOT / "prometheus" / "tests", tests)
    alerts = rules / ALERTS_FILE.name
    text = alerts.read_text()
    assert text.count(") > 0.10  # THRESHOLD (story: 10 %)") == 1
    alerts.write_text(text.replace(") > 0.10  # THRESHOLD", ") > 0.16  # THRESHOLD"))
    result = promtool("test", "rules", str(tests / "customer_sync.alerts_test.yml"))
    assert result.returncode != 0
    assert "CustomerSyncErrorRatioHigh" in result.stdout + result.stderr


# --- coverage of the unit tests ---------------------------------------------------------------


def alert_cases() -> list[tuple[str, dict[str, Any]]]:
    """(alertname, one alert_rule_test entry) for every entry of every test file."""
    cases = []
    for path in TESTS:
        for test in load(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.append((case["alertname"], case))
    return cases


@pytest.mark.parametrize(
    ("name", "severity"),
    sorted({(r["alert"], r["labels"]["severity"]) for r in alert_rules()}),
)
def test_every_alert_level_has_a_firing_and_a_silent_case(name: str, severity: str) -> None:
    cases = [c for n, c in alert_cases() if n == name]
    firing = [
        a for c in cases for a in c.get("exp_alerts") or []
        if a["exp_labels"].get("severity") == severity
    ]  # fmt: skip
    assert firing, f"no test where {name} ({severity}) fires"
    for a in firing:
        assert set(a["exp_annotations"]) == {"summary", "description", "runbook_url"}
        assert {"severity", "instance"} <= set(a["exp_labels"]) or name.endswith("Absent")
    silent = [
        c for c in cases
        if not any(a["exp_labels"].get("severity") == severity for a in c.get("exp_alerts") or [])
    ]  # fmt: skip
    assert silent, f"no test where {name} ({severity}) must stay silent"


def test_every_recording_rule_is_unit_tested() -> None:
    tested = {
        case["expr"]
        for path in TESTS
        for test in load(path)["tests"]
        for case in test.get("promql_expr_test", [])
    }
    for rule in recording_rules():
        if rule["record"] == "customer_sync:customers_import_interval:seconds":
            # a constant; the stale-import tests read it through the alert description
            continue
        assert rule["record"] in tested, f"{rule['record']} has no promql_expr_test"


def normalise(expr: str) -> str:
    expr = re.sub(r"#[^\n]*", "", expr)
    return re.sub(r"\s+", " ", expr).strip()


@pytest.mark.parametrize(
    ("record", "alert", "threshold"),
    [
        ("instance:customer_sync_operations_errors:ratio_rate1h", "CustomerSyncErrorRatioHigh", "0.10"),
        ("instance:customer_sync_operations_errors:ratio_rate5m", "CustomerSyncErrorRatioHigh", "0.20"),
        ("instance:customer_sync_postgres_connections:usage_ratio", "CustomerSyncPostgresConnectionsHigh", "0.80"),
        ("instance:customer_sync_postgres_connections:usage_ratio", "CustomerSyncPostgresConnectionsHigh", "0.95"),
    ],
)  # fmt: skip
def test_alerts_spell_out_the_recorded_ratio_identically(
    record: str, alert: str, threshold: str
) -> None:
    """Alerts inline the ratio (see the alerts file header); it must stay the recorded one."""
    recorded = normalise(next(r["expr"] for r in recording_rules() if r["record"] == record))
    rule = next(r for r in alert_rules() if r["alert"] == alert and f"> {threshold}" in r["expr"])
    assert recorded in normalise(rule["expr"])


# --- what every alert carries -----------------------------------------------------------------


def runbook_anchors() -> set[str]:
    """GitHub's anchors for the runbook's headings (lower case, spaces to '-', no punctuation)."""
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        m = re.match(r"^#{1,6}\s+(.*)$", line)
        if m:
            anchor = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            anchors.add(anchor)
    return anchors


@pytest.mark.parametrize(
    "rule", alert_rules(), ids=[f"{r['alert']}-{r['labels']['severity']}" for r in alert_rules()]
)
def test_alert_carries_severity_summary_value_runbook_and_for(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert re.fullmatch(r"CustomerSync[A-Z][A-Za-z]+", rule["alert"])
    assert "for" in rule and rule["for"] != "0s"
    annotations = rule["annotations"]
    assert annotations["summary"].endswith(".")
    assert "{{" not in annotations["summary"], "summary heads a grouped message: keep it static"
    if not rule["alert"].endswith("Absent"):  # absent() is always 1: nothing to print
        assert "$value" in annotations["description"]
    assert "$labels.instance" in annotations["description"] or rule["alert"].endswith("Absent")
    url = annotations["runbook_url"]
    base, _, anchor = url.partition("#")
    assert base == RUNBOOK_URL
    assert anchor == rule["alert"].lower()
    assert anchor in runbook_anchors(), f"docs/runbook.md has no section {rule['alert']}"


def test_critical_alerts_fire_within_three_minutes_of_the_condition() -> None:
    """The runbook's delivery budget assumes `for:` <= 3m on every critical alert.

    Exception: the predictive disk alert, which by design fires hours before the failure.
    """
    for rule in alert_rules():
        if (
            rule["labels"]["severity"] != "critical"
            or rule["alert"] == "CustomerSyncLogDiskFillingUp"
        ):
            continue
        assert rule["for"] in {"1m", "2m", "3m"}, rule["alert"]


def test_thresholds_are_marked_where_they_live() -> None:
    text = ALERTS_FILE.read_text()
    for threshold in ("> 0.10", "> 0.20", "> 50", "> 2 ", "> 0.80", "> 0.95", "> 1000", "> 0.90"):
        lines = [line for line in text.splitlines() if threshold in line]
        assert lines and all("# THRESHOLD" in line for line in lines), threshold
