"""Prometheus rules as tested code: promtool checks and unit tests, and their coverage.

promtool (Debian's 2.42) does the evaluating; this module runs it and also proves the unit tests
cover every alert both ways (fires / must not fire), every recording rule, and that each alert
carries what an on-call person needs (severity, summary, a description that names the shop and
prints the value, a runbook_url whose section exists, a `for:`). The rule files are generated
from mixin/config.yml (tests/mixin/ checks they are current); the thresholds are only there.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mixin.build import outputs
from mixin.config import load as load_mixin_config
from tests.conftest import require_binary

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "prometheus" / "rules"
RULE_FILES = sorted(RULES.glob("*.yml"))
TEMPLATES = sorted((ROOT / "mixin" / "rules").glob("*.yml"))
TESTS = sorted((ROOT / "prometheus" / "tests").glob("*_test.yml"))
HA_CONFIGS = sorted((ROOT / "prometheus" / "ha").glob("*.yml"))
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/freesport/customer-sync-exporter/blob/main/docs/runbook.md"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    return [r for f in RULE_FILES for g in load(f)["groups"] for r in g["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


def recording_rules() -> list[dict[str, Any]]:
    return [r for r in rules() if "record" in r]


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


# --- promtool ---------------------------------------------------------------------------------


def test_promtool_check_rules_is_clean() -> None:
    assert {p.name for p in RULE_FILES} >= {
        "customer_sync.alerts.yml", "customer_sync.rules.yml", "customer_sync.slo.yml"}
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    for path in RULE_FILES:
        count = sum(len(g["rules"]) for g in load(path)["groups"])
        assert f"Checking {path}\n  SUCCESS: {count} rules found" in result.stdout


@pytest.mark.parametrize(
    "config", [ROOT / "prometheus" / "prometheus.yml", *HA_CONFIGS],
    ids=lambda p: str(p.relative_to(ROOT)),
)  # fmt: skip
def test_promtool_check_config_is_clean(config: Path) -> None:
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    rule_files = load(config).get("rule_files", [])
    if rule_files:  # every replica loads every rule file
        assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout


@pytest.mark.parametrize("test_file", TESTS, ids=[t.name for t in TESTS])
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _rules_generated_with(tmp_path: Path, **changes: Any) -> Path:
    """prometheus/ in tmp_path: the unit tests, and rules generated from a changed config."""
    config = load_mixin_config()
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        part = getattr(config, section).model_copy(update={key: value})
        config = config.model_copy(update={section: part})
    shutil.copytree(ROOT / "prometheus" / "tests", tmp_path / "prometheus" / "tests")
    for path, text in outputs(config, tmp_path).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "prometheus"


@pytest.mark.parametrize(
    ("change", "test_file", "alert"),
    [
        ({"thresholds__error_ratio_1h": 0.16}, "customer_sync.alerts_test.yml", "CustomerSyncErrorRatioHigh"),
        ({"thresholds__queue_items": 1200}, "customer_sync.alerts_test.yml", "CustomerSyncQueueBacklog"),
        ({"slo__target": 0.995}, "customer_sync.slo_test.yml", "CustomerSyncErrorBudgetBurn"),
        ({"thresholds__celery_import_failure_ratio": 0.2}, "customer_sync.celery_test.yml",
         "CustomerSyncCeleryImportTaskFailing"),
        ({"thresholds__celery_clear_abandoned_carts_period_seconds": 5400},
         "customer_sync.celery_test.yml", "CustomerSyncCeleryScheduledTaskMissed"),
        ({"thresholds__export_queue_oldest_age_seconds": 90000}, "customer_sync.alerts_test.yml",
         "CustomerSyncExportQueueStale"),
    ],
)  # fmt: skip
def test_unit_tests_fail_when_a_configured_threshold_moves(
    tmp_path: Path, change: dict[str, Any], test_file: str, alert: str
) -> None:
    """A number changed in mixin/config.yml reaches the rules, and the unit tests catch it."""
    prometheus = _rules_generated_with(tmp_path, **change)
    same = promtool("test", "rules", str(prometheus / "tests" / test_file))
    unchanged = _rules_generated_with(tmp_path / "same")
    assert promtool("test", "rules", str(unchanged / "tests" / test_file)).returncode == 0
    assert same.returncode != 0
    assert alert in same.stdout + same.stderr


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
        assert {"severity", "shop"} <= set(a["exp_labels"]) or name.endswith("Absent")
    silent = [
        c for c in cases
        if not any(a["exp_labels"].get("severity") == severity for a in c.get("exp_alerts") or [])
    ]  # fmt: skip
    assert silent, f"no test where {name} ({severity}) must stay silent"


# Recorded constants from mixin/config.yml that rules read: they select no series.
PARAMETERS = {"customer_sync:customers_import_interval:seconds",
              "customer_sync:celery_task_schedule_period:seconds"}


def test_every_recording_rule_is_unit_tested() -> None:
    tested = [
        case["expr"]
        for path in TESTS
        for test in load(path)["tests"]
        for case in test.get("promql_expr_test", [])
    ]
    for rule in recording_rules():
        if rule["record"] == "customer_sync:customers_import_interval:seconds":
            # a constant; the stale-import tests read it through the alert description
            continue
        name = re.compile(rf"(?<![\w:]){re.escape(rule['record'])}(?![\w:])")
        assert any(name.search(expr) for expr in tested), f"{rule['record']} has no promql_expr_test"


def normalise(expr: str) -> str:
    expr = re.sub(r"#[^\n]*", "", expr)
    return re.sub(r"\s+", " ", expr).strip()


@pytest.mark.parametrize(
    ("record", "alert", "threshold"),
    [
        ("instance:customer_sync_operations_errors:ratio_rate1h", "CustomerSyncErrorRatioHigh", "0.1"),
        ("instance:customer_sync_operations_errors:ratio_rate5m", "CustomerSyncErrorRatioHigh", "0.2"),
        ("instance:customer_sync_postgres_connections:usage_ratio", "CustomerSyncPostgresConnectionsHigh", "0.8"),
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
    if not rule["alert"].endswith("Absent"):  # absent() is always 1 and has no shop
        assert "$value" in annotations["description"]
        # a page names the shop first, so Telegram's cut description still says which one
        assert annotations["description"].startswith("Shop {{ $labels.shop }}: ")
        if "by (job, shop)" not in rule["expr"] and "shop:" not in rule["expr"]:
            assert "$labels.instance" in annotations["description"]
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


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_thresholds_live_only_in_the_config(template: Path) -> None:
    """No alert compares against a literal number: it is a ${...} from mixin/config.yml.

    The exceptions are structural: == 0 / > 0 / < 0 (down, any failure, growing, full) and the
    "two scheduled runs" of the import schedule (beat's periods are doubled the same way, as
    ``2 * customer_sync:celery_task_schedule_period:seconds``).
    """
    for rule in (r for g in yaml.safe_load(template.read_text())["groups"] for r in g["rules"]):
        if "alert" not in rule:
            continue
        for match in re.finditer(r"(?<![=!<>])(==|>=|<=|>|<)\s*(\d[\d.]*)(\s*\*\s*scalar)?",
                                 rule["expr"]):
            literal = match.group(2)
            assert literal == "0" or (literal == "2" and match.group(3)), (
                f"{template.name}: {rule['alert']}: literal threshold {match.group(0)!r}")


def test_every_selector_is_the_configured_one() -> None:
    """Rules read only the series of mixin/config.yml's selector (mixin convention), so a
    second exporter job on the same Prometheus is never mixed in."""
    selector = load_mixin_config().selector
    for rule in rules():
        expr = str(rule["expr"])
        if rule.get("record") in PARAMETERS:
            continue
        selections = re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^{}]*)\}", expr)
        assert selections, rule
        for _name, matchers in selections:
            assert matchers.startswith(selector), (rule.get("alert") or rule["record"], matchers)
