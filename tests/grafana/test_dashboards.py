"""The Grafana dashboards: well-formed, portable, consistent with the alerts, and proven on data.

The live test runs the demo (``customer-sync-exporter demo``) and a second exporter probing a
TLS 1C stand-in (the demo's stand-in speaks plain HTTP, so it has no certificate to report),
lets a real Prometheus (Debian's binary, 1 s scrape and rule interval, our recording and alert
rules loaded) scrape them, then sends every panel expression, with the template variables
substituted the way Grafana does, to that Prometheus: each must parse and return at least one
series. A renamed metric or recording rule therefore fails the build.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.demo.onec import OneCStandIn
from exporter.demo.postgres import free_port
from tests.conftest import require_binary
from tests.tls_certs import issue, make_ca

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "grafana" / "dashboards"
RULES_DIR = REPO / "prometheus" / "rules"
README = REPO / "README.md"
RUNBOOK = REPO / "docs" / "runbook.md"
DS = {"type": "prometheus", "uid": "${datasource}"}
JOB = "customer_sync_exporter"
# Series Prometheus itself makes; every other name must be in the README metrics table.
PROMETHEUS_BUILTINS = {"up", "ALERTS"}
LIVE_BUDGET_SECONDS = 150.0


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries() -> list[tuple[str, str, str, str]]:
    """(dashboard file, panel title, refId, expr) of every panel target."""
    out = []
    for name, dash in load_dashboards().items():
        for panel in panels(dash):
            for target in panel.get("targets", []):
                out.append((name, panel["title"], target["refId"], target["expr"]))
    return out


def rules() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        out += [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]
    return out


# --- PromQL names -------------------------------------------------------------------------------

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
             "unless", "offset", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """Metric and recording-rule names an expression selects (strings, labels, ranges removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name in _KEYWORDS:
            continue
        names.add(name)
    return names


def test_metric_names_extraction() -> None:
    expr = ('sum by (operation_type) (rate(customer_sync_operations_total{job="x", '
            'instance=~"$instance"}[$__rate_interval])) / on (job) group_left '
            'max(instance:customer_sync_operations_errors:ratio_rate5m) > bool 0.1 '
            'and ALERTS{alertstate="firing"}')
    assert metric_names(expr) == {"customer_sync_operations_total", "ALERTS",
                                  "instance:customer_sync_operations_errors:ratio_rate5m"}


# --- the files ----------------------------------------------------------------------------------


def test_dashboards_are_generated_and_current() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "grafana" / "build_dashboards.py"),
                           "--check"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert set(load_dashboards()) == {
        "customer-sync-operations.json", "customer-sync-business.json",
        "customer-sync-system-health.json"}


def _datasource_refs(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield f"{path}.{key}", value
            yield from _datasource_refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _datasource_refs(value, f"{path}[{i}]")


@pytest.mark.parametrize("name", sorted(load_dashboards()))
def test_dashboard_structure(name: str) -> None:
    dash = load_dashboards()[name]
    assert "__inputs" not in dash, "export-for-sharing format cannot be provisioned"
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    assert dash["uid"] and len(dash["uid"]) <= 40
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["type"] == "query"
    assert variables["instance"]["datasource"] == DS
    assert f'job="{JOB}"' in variables["instance"]["definition"]
    # No hard-coded datasource uid anywhere: every reference is the variable.
    for where, ref in _datasource_refs(dash):
        if where.startswith(".annotations"):
            assert ref == {"type": "grafana", "uid": "-- Grafana --"}, where
        elif where.startswith(".templating") and ref == "prometheus":
            continue
        else:
            assert ref == DS, f"{name}{where}: {ref}"
    for panel in panels(dash):
        if panel["type"] == "row":
            continue
        title = panel["title"]
        assert panel["datasource"] == DS, title
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        assert panel.get("description"), f"{title}: no description"
        assert panel["targets"], f"{title}: no query"
        for target in panel["targets"]:
            assert target["datasource"] == DS, title
            assert "$instance" in target["expr"] or "ALERTS" in target["expr"], (
                f"{title}: query ignores the instance variable")


def _alert_constants() -> dict[str, set[float]]:
    """Per runbook URL, the numbers the alerts compare against with <, >, <=, >=."""
    interval = next(float(str(r["expr"]).strip()[len("vector("):-1]) for r in rules()
                    if r.get("record") == "customer_sync:customers_import_interval:seconds")
    out: dict[str, set[float]] = {}
    for rule in rules():
        if "alert" not in rule:
            continue
        expr = str(rule["expr"]).replace(
            "scalar(customer_sync:customers_import_interval:seconds)", repr(interval))
        found = out.setdefault(rule["annotations"]["runbook_url"], set())
        for match in re.finditer(r"(?<![=!])[<>]=?\s*([\d.]+(?:\s*\*\s*[\d.]+)*)", expr):
            product = 1.0
            for factor in match.group(1).split("*"):
                product *= float(factor)
            found.add(product)
    return out


def test_thresholds_are_the_alert_thresholds() -> None:
    """A panel linked to an alert colours at that alert's numbers, and only at those."""
    constants = _alert_constants()
    checked = 0
    for name, dash in load_dashboards().items():
        for panel in panels(dash):
            for link in panel.get("links", []):
                numbers = constants.get(link["url"])
                assert numbers is not None, f"{name}: {panel['title']}: {link['url']} is no alert's"
                steps = [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
                         if s["value"] is not None]
                if not numbers:  # an equality alert (== 0): no ordering threshold to show
                    continue
                assert set(steps) <= numbers, (
                    f"{name}: {panel['title']}: thresholds {steps} are not among the alert's "
                    f"{sorted(numbers)}")
                checked += bool(steps)
    assert checked >= 15


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_runbook_links_point_at_runbook_sections() -> None:
    urls = {link["url"] for dash in load_dashboards().values() for p in panels(dash)
            for link in p.get("links", [])}
    urls |= {link["url"] for dash in load_dashboards().values() for link in dash["links"]
             if link["type"] == "link"}
    alert_urls = {r["annotations"]["runbook_url"] for r in rules() if "alert" in r}
    assert urls - {u.split("#")[0] for u in alert_urls} <= alert_urls
    assert RUNBOOK.exists(), f"{RUNBOOK.relative_to(REPO)} is missing: the panels link to it"
    anchors = {_slug(m.group(1)) for m in
               re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", RUNBOOK.read_text(), re.M)}
    anchors |= set(re.findall(r'<a\s+(?:name|id)="([^"]+)"', RUNBOOK.read_text()))
    missing = sorted({u.split("#", 1)[1] for u in urls if "#" in u} - anchors)
    assert not missing, f"docs/runbook.md has no section for: {missing}"


def readme_metric_names() -> set[str]:
    assert README.exists(), "README.md is missing: its metrics table lists every metric"
    names = set()
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and cells:
            names.update(re.findall(r"`?\b([a-z_:][a-z0-9_:]*_[a-z0-9_]+)\b`?", cells[0]))
    assert names, "README.md has no metrics table (| name | type | labels | meaning |)"
    return names


def test_every_panel_metric_is_in_the_readme_table() -> None:
    table = readme_metric_names()
    recorded = {r["record"] for r in rules() if "record" in r}
    missing = set()
    for name, title, ref, expr in queries():
        for metric in metric_names(expr) - PROMETHEUS_BUILTINS:
            if metric in recorded:
                continue
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            if metric not in table and base not in table:
                missing.add(f"{metric} ({name}: {title} {ref})")
    assert not missing, "not in README.md's metrics table:\n" + "\n".join(sorted(missing))


def test_recording_rules_used_exist() -> None:
    recorded = {r["record"] for r in rules() if "record" in r}
    used = {m for _, _, _, e in queries() for m in metric_names(e) if ":" in m}
    assert used, "the dashboards use no recording rule"
    assert used <= recorded, f"unknown recording rules: {sorted(used - recorded)}"


def test_provisioning_matches_compose_mounts() -> None:
    datasources = yaml.safe_load(
        (REPO / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    assert [(d["type"], d["url"]) for d in datasources] == [
        ("prometheus", "http://prometheus:9090")]
    providers = yaml.safe_load(
        (REPO / "grafana/provisioning/dashboards/customer-sync.yml").read_text())["providers"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = dict(v.rsplit(":", 2)[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == providers[0]["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).name in load_dashboards()


# --- live: every expression against a Prometheus that scraped the demo -------------------------


def _get(url: str, timeout: float = 10.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


class Live:
    def __init__(self, url: str, started: float) -> None:
        self.url = url
        self.deadline = started + LIVE_BUDGET_SECONDS
        self.instances: list[str] = []

    def query(self, expr: str) -> tuple[int, Any]:
        return _get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    prometheus = require_binary("prometheus")
    tmp = tmp_path_factory.mktemp("dashboards")
    started = time.monotonic()
    procs: list[subprocess.Popen[bytes]] = []
    ca = make_ca()
    cert, key = issue(ca, "1c.test").write(tmp / "tls", "onec")
    (tmp / "tls" / "ca.crt").write_text(ca.cert_pem)
    onec = OneCStandIn(certfile=cert, keyfile=key).start()
    try:
        demo_port, tls_port, prom_port = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "exporter", "demo", "--web.listen-address",
             f"127.0.0.1:{demo_port}", "--data-dir", str(tmp / "demo"), "--seed", "1"],
            stdout=open(tmp / "demo.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True))
        (tmp / "tls.yaml").write_text(yaml.safe_dump({"collectors": {
            **{n: {"enabled": False}
               for n in ("synclog", "business", "postgres", "redis", "disk", "process")},
            "onec": {"url": onec.url, "ca_file": str(tmp / "tls" / "ca.crt")}}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "exporter", "serve", "--config.file", str(tmp / "tls.yaml"),
             "--web.listen-address", f"127.0.0.1:{tls_port}"],
            stdout=open(tmp / "tls.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True))
        (tmp / "always.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard-test",
            "rules": [{"alert": "CustomerSyncDashboardTestAlwaysFiring", "expr": "vector(1)",
                       "labels": {"severity": "info"}}]}]}))
        (tmp / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in sorted(RULES_DIR.glob("*.yml"))]
            + [str(tmp / "always.yml")],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [
                f"127.0.0.1:{demo_port}", f"127.0.0.1:{tls_port}"]}]}],
        }))
        procs.append(subprocess.Popen(
            [prometheus, f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
             "--log.level=warn"],
            stdout=open(tmp / "prometheus.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True))
        live = Live(f"http://127.0.0.1:{prom_port}", started)
        # Both targets up, so the instance variable has its two values.
        while time.monotonic() < live.deadline:
            for p in procs:
                if p.poll() is not None:
                    logs = "\n".join(f.read_text()[-2000:] for f in tmp.glob("*.log"))
                    pytest.fail(f"{p.args!r} exited {p.returncode}:\n{logs}")
            try:
                status, body = live.query(f'up{{job="{JOB}"}} == 1')
            except OSError:
                status, body = 0, {}
            if status == 200 and len(body["data"]["result"]) == 2:
                break
            time.sleep(0.5)
        else:
            pytest.fail("Prometheus never saw both exporters up")
        status, body = _get(f"{live.url}/api/v1/label/instance/values?" + urllib.parse.urlencode(
            {"match[]": f'customer_sync_exporter_build_info{{job="{JOB}"}}'}))
        live.instances = body["data"]
        assert len(live.instances) == 2
        yield live
    finally:
        for proc in reversed(procs):
            _stop(proc)
        onec.stop()


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Grafana's interpolation for the variables our dashboards use."""
    for name, value in sorted(variables.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def _window_values(dashboard: str) -> list[str]:
    for var in load_dashboards()[dashboard]["templating"]["list"]:
        if var["name"] == "window":
            return [o["value"] for o in var["options"]]
    return []


@pytest.mark.e2e
@pytest.mark.parametrize(("dashboard", "title", "ref", "expr"), queries(),
                         ids=[f"{d.split('.')[0]}:{t}:{r}" for d, t, r, _ in queries()])
def test_panel_query_returns_series(live: Live, dashboard: str, title: str, ref: str,
                                    expr: str) -> None:
    # Grafana escapes regex characters, then doubles the backslashes for the PromQL string.
    instance = "(" + "|".join(re.escape(i).replace("\\", "\\\\") for i in live.instances) + ")"
    base = {"instance": instance, "__rate_interval": "1m", "__interval": "15s",
            "__range": "1h"}
    windows = _window_values(dashboard) if "$window" in expr else [""]
    for window in windows:
        promql = substitute(expr, base | ({"window": window} if window else {}))
        while True:
            status, body = live.query(promql)
            assert status == 200 and body.get("status") == "success", (
                f"Prometheus rejected {promql}: {body.get('error')}")
            if body["data"]["result"]:
                break
            if time.monotonic() > live.deadline:
                pytest.fail(f"no series for {promql} after {LIVE_BUDGET_SECONDS:.0f}s of data")
            time.sleep(1.0)
