"""Generate the three Grafana dashboards in grafana/dashboards/ from one description.

Why a generator: about fifty panels must share the same datasource variable, instance filter,
units, layout and runbook links; written by hand they drift. Thresholds are the alert rules'
numbers and runbook links are the alerts' own ``runbook_url`` values, read from
prometheus/rules/, so a changed threshold or anchor is picked up by regenerating.

    python3 grafana/build_dashboards.py          # rewrite grafana/dashboards/*.json
    python3 grafana/build_dashboards.py --check  # exit 1 if the committed files differ

tests/grafana/test_dashboards.py runs ``--check`` and sends every expression to a real
Prometheus that scraped the demo.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "grafana" / "dashboards"
RULES_DIR = ROOT / "prometheus" / "rules"

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job="customer_sync_exporter", instance=~"$instance"'
TAGS = ["customer-sync", "freesport", "1c"]
INSTANCES = (
    'label_values(customer_sync_exporter_build_info{job="customer_sync_exporter"}, instance)')

# Colours used for thresholds.
OK, WARN, CRIT, NEUTRAL = "green", "orange", "red", "blue"


def _rules() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        data = yaml.safe_load(path.read_text())
        out += [r for g in data["groups"] for r in g["rules"]]
    return out


def _alerts() -> list[dict[str, Any]]:
    return [r for r in _rules() if "alert" in r]


def runbook(alertname: str) -> str:
    """The runbook_url the alert itself carries, so dashboard and alert point at one anchor."""
    urls = {str(r["annotations"]["runbook_url"]) for r in _alerts() if r["alert"] == alertname}
    if len(urls) != 1:
        raise SystemExit(f"{RULES_DIR}: expected one runbook_url for {alertname}, got {urls}")
    return urls.pop()


def runbook_root() -> str:
    return runbook("CustomerSyncExporterDown").split("#", 1)[0]


def import_interval_seconds() -> float:
    """The recorded import schedule CustomerSyncImportStale multiplies by two."""
    for rule in _rules():
        if rule.get("record") == "customer_sync:customers_import_interval:seconds":
            expr = str(rule["expr"]).strip()
            assert expr.startswith("vector(") and expr.endswith(")"), expr
            return float(expr[len("vector("):-1])
    raise SystemExit(f"{RULES_DIR}: customer_sync:customers_import_interval:seconds not found")


# --- panel description ---------------------------------------------------------------------


@dataclass
class Q:
    """One PromQL query of a panel; ``{$SEL}`` / ``{$SEL, ...}`` become the shared filter."""

    expr: str
    legend: str = ""
    instant: bool = False

    def __post_init__(self) -> None:
        self.expr = self.expr.replace("{$SEL", "{" + SEL)


@dataclass
class Panel:
    title: str
    kind: str  # timeseries | stat | bargauge | table | state-timeline
    queries: list[Q]
    unit: str
    description: str
    width: int = 12
    height: int = 8
    # (colour, value) pairs above the base colour; the base colour is steps_base.
    steps: list[tuple[str, float]] = field(default_factory=list)
    steps_base: str = OK
    alert: str | None = None  # alert whose runbook section and thresholds this panel shows
    min: float | None = None
    max: float | None = None
    stack: bool = False
    mappings: list[dict[str, Any]] = field(default_factory=list)
    decimals: int | None = None


@dataclass
class Row:
    title: str


Item = Panel | Row


def _thresholds(p: Panel) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": p.steps_base, "value": None}]
    steps += [{"color": c, "value": v} for c, v in p.steps]
    return {"mode": "absolute", "steps": steps}


def _targets(p: Panel) -> list[dict[str, Any]]:
    out = []
    for i, q in enumerate(p.queries):
        instant = q.instant or p.kind in {"table"}
        out.append({
            "refId": chr(ord("A") + i),
            "datasource": DS,
            "expr": q.expr,
            "legendFormat": q.legend or "__auto",
            "range": not instant,
            "instant": instant,
            **({"format": "table"} if p.kind == "table" else {}),
        })
    return out


def _options(p: Panel) -> dict[str, Any]:
    reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    if p.kind == "stat":
        return {"reduceOptions": reduce, "colorMode": "background", "graphMode": "area",
                "justifyMode": "auto", "orientation": "auto", "textMode": "auto"}
    if p.kind == "bargauge":
        return {"reduceOptions": reduce, "displayMode": "gradient", "orientation": "horizontal",
                "showUnfilled": True}
    if p.kind == "table":
        return {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    if p.kind == "state-timeline":
        return {"showValue": "never", "mergeValues": True, "rowHeight": 0.8,
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "single", "sort": "none"}}
    return {"legend": {"displayMode": "table", "placement": "right", "showLegend": True,
                       "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"}}


def _panel_json(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": p.unit, "thresholds": _thresholds(p), "mappings": p.mappings}
    if p.min is not None:
        defaults["min"] = p.min
    if p.max is not None:
        defaults["max"] = p.max
    if p.decimals is not None:
        defaults["decimals"] = p.decimals
    if p.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if p.stack else "none", "group": "A"},
            "thresholdsStyle": {"mode": "line" if p.steps else "off"},
        }
    if p.kind in {"stat", "bargauge", "state-timeline"}:
        defaults["color"] = {"mode": "thresholds"}
    elif p.kind == "timeseries":
        defaults["color"] = {"mode": "palette-classic"}
    panel: dict[str, Any] = {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DS,
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": _options(p),
        "targets": _targets(p),
    }
    if p.alert:
        panel["links"] = [{"title": f"Runbook: {p.alert}", "url": runbook(p.alert),
                           "targetBlank": True}]
    return panel


def dashboard(uid: str, title: str, description: str, items: list[Item],
              window_var: bool = False) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    x = y = 0
    row_height = 0
    pid = 0
    for item in items:
        pid += 1
        if isinstance(item, Row):
            if x:
                y += row_height
            x, row_height = 0, 0
            panels.append({"id": pid, "type": "row", "title": item.title, "collapsed": False,
                           "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
            y += 1
            continue
        if x + item.width > 24:
            x, y, row_height = 0, y + row_height, 0
        panels.append(_panel_json(item, pid, x, y))
        x += item.width
        row_height = max(row_height, item.height)
    variables: list[dict[str, Any]] = [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "regex": "", "includeAll": False,
         "multi": False, "options": []},
        {"name": "instance", "label": "Exporter", "type": "query", "datasource": DS,
         "definition": INSTANCES,
         "query": {"query": INSTANCES, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
         "current": {}, "hide": 0, "refresh": 2, "regex": "", "sort": 1, "includeAll": True,
         "multi": True, "options": []},
    ]
    if window_var:
        windows = ["5m", "1h", "24h"]
        variables.append({
            "name": "window", "label": "Window", "type": "custom", "query": ",".join(windows),
            "current": {"selected": True, "text": "1h", "value": "1h"}, "hide": 0,
            "includeAll": False, "multi": False,
            "description": "A sliding window the exporter counts exactly "
                           "(collectors.synclog.windows).",
            "options": [{"selected": w == "1h", "text": w, "value": w} for w in windows],
        })
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard",
        }]},
        "links": [
            {"title": "Customer sync dashboards", "type": "dashboards", "tags": ["customer-sync"],
             "asDropdown": True, "includeVars": True, "keepTime": True, "icon": "external link",
             "targetBlank": False, "tooltip": "", "url": ""},
            {"title": "Runbook", "type": "link", "url": runbook_root(), "icon": "doc",
             "targetBlank": True, "asDropdown": False, "includeVars": False, "keepTime": False,
             "tags": [], "tooltip": "What each alert means and what to do"},
        ],
        "templating": {"list": variables},
        "panels": panels,
    }


UP_MAPPINGS = [{"type": "value", "options": {
    "0": {"text": "DOWN", "color": CRIT, "index": 0},
    "1": {"text": "UP", "color": OK, "index": 1},
}}]
OK_MAPPINGS = [{"type": "value", "options": {
    "0": {"text": "failing", "color": CRIT, "index": 0},
    "1": {"text": "ok", "color": OK, "index": 1},
}}]


# --- Sync operations ---------------------------------------------------------------------------

RATE = "[$__rate_interval]"


def sync_operations() -> dict[str, Any]:
    stale = 2 * import_interval_seconds()
    items: list[Item] = [
        Row("Now"),
        Panel("Operations per second", "stat",
              [Q("sum(rate(customer_sync_operations_total{$SEL}" + RATE + "))")],
              "ops", "Sync-log rows written per second, every operation type and status.",
              width=4, height=5, steps_base=NEUTRAL),
        Panel("Error ratio (1h)", "stat",
              [Q("max(instance:customer_sync_operations_errors:ratio_rate1h{$SEL})")],
              "percentunit", "Share of the last hour's operations with status failed or error. "
              "Ticket above 10 %, page above 20 % over 5 minutes.",
              width=4, height=5, steps=[(WARN, 0.10), (CRIT, 0.20)],
              alert="CustomerSyncErrorRatioHigh", min=0, max=1),
        Panel("Failed operations (exact, 1h)", "stat",
              [Q('sum(customer_sync_recent_operations{$SEL, window="1h", '
                 'status=~"failed|error"})')],
              "short", "Rows with status failed or error in the last hour, counted exactly by "
              "the exporter. Ticket above 50.", width=4, height=5, steps=[(CRIT, 50)],
              alert="CustomerSyncFailedOperationsHigh"),
        Panel("p95 duration (exact, 1h)", "stat",
              [Q('max(customer_sync_recent_duration_seconds{$SEL, window="1h", percentile="95", '
                 'operation_type!="batch_operation"})')],
              "s", "Slowest operation type's 95th percentile over the last hour (rows that "
              "record duration_ms; batch runs excluded). Ticket above 2 s.", width=4, height=5,
              steps=[(CRIT, 2)], alert="CustomerSyncOperationsSlow"),
        Panel("Last 1C customer import finished", "stat",
              [Q("time() - max(customer_sync_last_import_finished_timestamp_seconds"
                 '{$SEL, import_type="customers", status="completed"})')],
              "s", "Time since the last completed import_customers_from_1c session. Page when "
              "it exceeds two scheduled runs (customer_sync:customers_import_interval:seconds).",
              width=4, height=5, steps=[(CRIT, stale)], alert="CustomerSyncImportStale"),
        Panel("Import sessions running", "stat",
              [Q('sum(customer_sync_import_sessions{$SEL, '
                 'status=~"pending|started|in_progress"})')],
              "short", "1C import sessions not finished yet, every import type.",
              width=4, height=5, steps_base=NEUTRAL),

        Row("Operations"),
        Panel("Operations per second by type", "timeseries",
              [Q("sum by (operation_type) (rate(customer_sync_operations_total{$SEL}"
                 + RATE + "))", "{{operation_type}}")],
              "ops", "Throughput per operation type (created, updated, skipped and error come "
              "from the 1C import).", stack=True),
        Panel("Operations per second by status", "timeseries",
              [Q("sum by (status) (rate(customer_sync_operations_total{$SEL}" + RATE + "))",
                 "{{status}}")],
              "ops", "failed is written by the 1C import, error by the sync logger: both are "
              "failures.", stack=True),
        Panel("Error ratio", "timeseries", [
            Q("max by (instance) (instance:customer_sync_operations_errors:ratio_rate5m{$SEL})",
              "5m {{instance}}"),
            Q("max by (instance) (instance:customer_sync_operations_errors:ratio_rate1h{$SEL})",
              "1h {{instance}}")],
            "percentunit", "(failed + error) / all operations. The lines are the alert "
            "thresholds: 10 % over 1h (ticket), 20 % over 5m (page).",
            steps=[(WARN, 0.10), (CRIT, 0.20)], alert="CustomerSyncErrorRatioHigh", min=0),
        Panel("Error ratio by operation type (1h)", "timeseries",
              [Q("max by (operation_type) "
                 "(instance_operation_type:customer_sync_operations_errors:ratio_rate1h{$SEL})",
                 "{{operation_type}}")],
              "percentunit", "Which operation fails. operation_type=error is 100 % by "
              "definition (the 1C import logs failures under it).", min=0),
        Panel("Operations in the window by type and status", "bargauge",
              [Q('sum by (operation_type, status) '
                 '(customer_sync_recent_operations{$SEL, window="$window"})',
                 "{{operation_type}} / {{status}}", instant=True)],
              "short", "Exact counts over the selected sliding window, from the exporter's "
              "window gauges.", height=10, steps_base=NEUTRAL),
        Panel("Operations per day by type", "timeseries",
              [Q("max by (operation_type) "
                 "(instance_operation_type:customer_sync_operations:increase1d{$SEL})",
                 "{{operation_type}}")],
              "short", "Operations of the last 24 hours (recording rule over the counter).",
              height=10),

        Row("Durations"),
        Panel("Duration percentiles from the histogram", "timeseries", [
            Q(f"histogram_quantile({q}, sum by (le) (rate("
              'customer_sync_operation_duration_seconds_bucket{$SEL, '
              'operation_type!="batch_operation"}' + RATE + ")))", f"p{round(q * 100)}")
            for q in (0.5, 0.95, 0.99)],
            "s", "Estimated from histogram buckets, every operation type except whole batch "
            "runs. Only rows that record duration_ms count (the production 1C import does not).",
            steps=[(CRIT, 2)], alert="CustomerSyncOperationsSlow", min=0),
        Panel("p95 / p99 by operation type (histogram, 5m)", "timeseries", [
            Q(f"max by (operation_type) (instance_operation_type:"
              f"customer_sync_operation_duration_seconds:{p}_rate5m{{$SEL}})",
              f"{p} {{{{operation_type}}}}")
            for p in ("p95", "p99")],
            "s", "Recording rules over the histogram, per operation type.",
            steps=[(CRIT, 2)], alert="CustomerSyncOperationsSlow", min=0),
        Panel("Exact percentiles over the window", "timeseries",
              [Q("max by (operation_type, percentile) "
                 '(customer_sync_recent_duration_seconds{$SEL, window="$window"})',
                 "p{{percentile}} {{operation_type}}")],
              "s", "percentile_cont over every row of the selected window, computed by the "
              "exporter (the alert uses the 1h window, p95).", steps=[(CRIT, 2)],
              alert="CustomerSyncOperationsSlow", min=0),
        Panel("Average duration over the window", "timeseries",
              [Q("max by (operation_type) "
                 '(customer_sync_recent_duration_avg_seconds{$SEL, window="$window"})',
                 "{{operation_type}}")],
              "s", "Mean duration of the rows in the selected window.", min=0),

        Row("1C imports"),
        Panel("Time since the last successful 1C import row", "bargauge",
              [Q("time() - max by (operation_type) (customer_sync_last_operation_timestamp_seconds"
                 '{$SEL, operation_type=~"created|updated|skipped|import_from_1c", '
                 'status="success"})', "{{operation_type}}", instant=True)],
              "s", "Age of the newest successful sync-log row the 1C import writes, per "
              "operation type: the fallback CustomerSyncImportStale uses without import "
              "sessions.", height=9, steps=[(CRIT, stale)], alert="CustomerSyncImportStale"),
        Panel("Last finished import by type", "bargauge",
              [Q("time() - max by (import_type) "
                 '(customer_sync_last_import_finished_timestamp_seconds{$SEL, '
                 'status="completed"})', "{{import_type}}", instant=True)],
              "s", "Age of the newest completed import session per import type "
              "(import_sessions).", height=9, steps=[(CRIT, stale)],
              alert="CustomerSyncImportStale"),
        Panel("Import sessions by status", "timeseries",
              [Q("sum by (import_type, status) (customer_sync_import_sessions{$SEL})",
                 "{{import_type}} {{status}}")],
              "short", "Rows of import_sessions per type and status.", width=24, height=9),
    ]
    return dashboard(
        "customer-sync-operations", "Customer sync / Sync operations",
        "Sync-log operations between the FREESPORT shop and 1C: throughput, errors, durations, "
        "imports.", items, window_var=True)


# --- Business ---------------------------------------------------------------------------------


def business() -> dict[str, Any]:
    items: list[Item] = [
        Row("Now"),
        Panel("Conflicts auto-resolved", "stat",
              [Q("min(instance:customer_sync_conflicts_auto_resolved:ratio{$SEL})")],
              "percentunit", "Conflict records resolved automatically (onec_wins) / all "
              "conflict records (common_syncconflict).", width=6, height=5, min=0, max=1,
              steps_base=NEUTRAL),
        Panel("Customers synced (distinct, window)", "stat",
              [Q('sum(customer_sync_recent_customers_synced{$SEL, window="$window"})')],
              "short", "Distinct customers with a successful sync operation in the selected "
              "window.", width=6, height=5, steps_base=NEUTRAL),
        Panel("Export queue", "stat",
              [Q("sum(customer_sync_export_queue_customers{$SEL})")],
              "short", "Active users flagged needs_1c_export, waiting to be sent to 1C. Ticket "
              "above 1000 (the alert shows it as queue 1c_export).", width=6, height=5,
              steps=[(CRIT, 1000)], alert="CustomerSyncQueueBacklog"),
        Panel("Admin notifications failed (1h)", "stat",
              [Q('sum(increase(customer_sync_admin_notifications_total{$SEL, result="failed"}'
                 "[1h]))")],
              "short", "Conflict e-mails to the administrator that failed to send in the last "
              "hour. Any is a ticket.", width=6, height=5, steps_base=NEUTRAL,
              alert="CustomerSyncAdminNotificationsFailing", decimals=0),

        Row("Conflicts"),
        Panel("Conflicts per hour by source", "timeseries",
              [Q("sum by (source, status) (increase(customer_sync_conflicts_total{$SEL}[1h]))",
                 "{{source}} {{status}}")],
              "short", "conflict_resolution rows per conflict_source over the last hour "
              "(portal registration vs 1C data import).", stack=True),
        Panel("Auto-resolution ratio by conflict type", "timeseries",
              [Q("min by (conflict_type) "
                 "(instance_conflict_type:customer_sync_conflicts_auto_resolved:ratio{$SEL})",
                 "{{conflict_type}}")],
              "percentunit", "Share of conflict records resolved with onec_wins, per conflict "
              "type.", min=0, max=1),
        Panel("Conflict records by type, strategy and state", "bargauge",
              [Q("sum by (conflict_type, resolution_strategy, resolved) "
                 "(customer_sync_conflict_records{$SEL})",
                 "{{conflict_type}} / {{resolution_strategy}} / resolved={{resolved}}",
                 instant=True)],
              "short", "Rows of common_syncconflict.", width=24, height=7, steps_base=NEUTRAL),

        Row("Identification"),
        Panel("Identifications per hour by method", "timeseries",
              [Q("sum by (method, found) "
                 "(increase(customer_sync_identifications_total{$SEL}[1h]))",
                 "{{method}} found={{found}}")],
              "short", "Customer lookups over the last hour by search method (onec_id, "
              "onec_guid, tax_id, email; none = nothing matched).", stack=True),
        Panel("Identification success ratio by method (1d)", "timeseries",
              [Q("max by (method) "
                 "(instance_method:customer_sync_identifications_found:ratio_rate1d{$SEL})",
                 "{{method}}")],
              "percentunit", "Lookups that found a customer / all lookups, per method, over a "
              "day.", min=0, max=1),

        Row("Customers"),
        Panel("Registrations vs 1C imports (window)", "timeseries",
              [Q('sum by (origin) (customer_sync_recent_customers_created{$SEL, '
                 'window="$window"})', "{{origin}}")],
              "short", "New users in the selected window: portal registrations "
              "(created_in_1c=false) vs records created by the 1C import."),
        Panel("Customers by origin and role", "timeseries",
              [Q("sum by (origin, role) (customer_sync_customers{$SEL})",
                 "{{origin}} {{role}}")],
              "short", "All users, by origin and role.", stack=True),
        Panel("Admin notifications per hour", "timeseries",
              [Q("sum by (result) (increase(customer_sync_admin_notifications_total{$SEL}[1h]))",
                 "{{result}}")],
              "short", "Conflict notification e-mails sent and failed over the last hour.",
              alert="CustomerSyncAdminNotificationsFailing"),
        Panel("Export queue and customers synced", "timeseries", [
            Q("sum(customer_sync_export_queue_customers{$SEL})", "export queue"),
            Q("sum by (window) (customer_sync_recent_customers_synced{$SEL})",
              "synced in {{window}}")],
            "short", "The 1C export backlog against distinct customers synced per window. The "
            "line is the backlog threshold (1000).", steps=[(CRIT, 1000)],
            alert="CustomerSyncQueueBacklog"),
    ]
    return dashboard(
        "customer-sync-business", "Customer sync / Business",
        "Business outcomes of the customer sync: conflicts, identification, registrations, "
        "notifications, export backlog.", items, window_var=True)


# --- System health ----------------------------------------------------------------------------


def _up(title: str, metric: str, description: str, alert: str) -> Panel:
    return Panel(title, "stat", [Q(f"min({metric}{{$SEL}})")], "bool_on_off", description,
                 width=4, height=4, mappings=UP_MAPPINGS, steps_base=CRIT, steps=[(OK, 1)],
                 alert=alert)


def system_health() -> dict[str, Any]:
    two_weeks = 14 * 86400
    items: list[Item] = [
        Row("Up"),
        _up("Exporter scraped", "up", "Prometheus can scrape the exporter (up).",
            "CustomerSyncExporterDown"),
        _up("PostgreSQL", "customer_sync_postgres_up",
            "The exporter reaches the FREESPORT database.", "CustomerSyncPostgresDown"),
        _up("Redis", "customer_sync_redis_up", "The exporter reaches Redis, the Celery broker.",
            "CustomerSyncRedisDown"),
        _up("1C HTTP service", "customer_sync_onec_up",
            "The 1C HTTP-service probe answers as expected.", "CustomerSyncOneCDown"),
        Panel("1C certificate expires in", "stat",
              [Q("min(customer_sync_onec_tls_cert_expiry_timestamp_seconds{$SEL}) - time()")],
              "s", "Time left on the 1C HTTPS certificate. Ticket below 14 days.", width=4,
              height=4, steps_base=CRIT, steps=[(OK, two_weeks)],
              alert="CustomerSyncOneCCertificateExpiring"),
        Panel("Exporter version", "stat",
              [Q("max by (version, python_version) (customer_sync_exporter_build_info{$SEL})",
                 "{{version}} (Python {{python_version}})", instant=True)],
              "none", "customer_sync_exporter_build_info.", width=4, height=4,
              steps_base=NEUTRAL),

        Row("Collectors"),
        Panel("Collector success", "state-timeline",
              [Q("min by (collector) (customer_sync_exporter_collector_success{$SEL})",
                 "{{collector}}")],
              "bool_yes_no", "1 when the collector's last run succeeded. Ticket when a "
              "collector fails in more than half of the scrapes of 10 minutes.",
              mappings=OK_MAPPINGS, steps_base=CRIT, steps=[(OK, 0.5)],
              alert="CustomerSyncCollectorFailing"),
        Panel("Collector failures by reason", "timeseries",
              [Q("max by (collector, reason) (customer_sync_exporter_collector_failure{$SEL})",
                 "{{collector}}: {{reason}}")],
              "short", "1 for the reason of a collector's failing run (timeout, connect, auth, "
              "query, http, tls, io, ...), 0 otherwise.", alert="CustomerSyncCollectorFailing",
              min=0),
        Panel("Collector duration", "timeseries",
              [Q("max by (collector) (customer_sync_exporter_collector_duration_seconds{$SEL})",
                 "{{collector}}")],
              "s", "How long each collector's last run took.", min=0),
        Panel("Time since the collector last succeeded", "bargauge",
              [Q("time() - min by (collector) "
                 "(customer_sync_exporter_collector_last_success_timestamp_seconds{$SEL})",
                 "{{collector}}", instant=True)],
              "s", "A growing value means the collector's metrics are stale.",
              steps_base=NEUTRAL),

        Row("PostgreSQL and Redis"),
        Panel("PostgreSQL connection usage", "timeseries",
              [Q("max by (instance) "
                 "(instance:customer_sync_postgres_connections:usage_ratio{$SEL})",
                 "{{instance}}")],
              "percentunit", "Client connections / connections ordinary roles may open. "
              "Ticket above 80 %, page above 95 %.", steps=[(WARN, 0.80), (CRIT, 0.95)],
              alert="CustomerSyncPostgresConnectionsHigh", min=0, max=1),
        Panel("PostgreSQL connections by state", "timeseries", [
            Q("sum by (state) (customer_sync_postgres_connections{$SEL})", "{{state}}"),
            Q("max(customer_sync_postgres_connections_usable{$SEL})", "usable")],
            "short", "Connections by state, against what ordinary roles may open.", min=0),
        Panel("Redis memory", "timeseries", [
            Q("max by (instance) (customer_sync_redis_memory_used_bytes{$SEL})",
              "used {{instance}}")],
            "bytes", "Memory Redis uses (used_memory).", min=0),
        Panel("Redis queues", "timeseries",
              [Q("max by (queue) (customer_sync_redis_queue_length{$SEL})", "{{queue}}")],
              "short", "Celery messages waiting per queue (priority sub-queues summed). "
              "Ticket above 1000.", steps=[(CRIT, 1000)], alert="CustomerSyncQueueBacklog",
              min=0),

        Row("Log folders"),
        Panel("Log folder filesystem used", "timeseries",
              [Q("max by (dir) (1 - customer_sync_log_dir_filesystem_free_bytes{$SEL} "
                 "/ customer_sync_log_dir_filesystem_size_bytes{$SEL})", "{{dir}}")],
              "percentunit", "Share of the filesystem holding each log folder that is used. "
              "Ticket above 90 %, page above 95 %.", steps=[(WARN, 0.90), (CRIT, 0.95)],
              alert="CustomerSyncLogDiskAlmostFull", min=0, max=1),
        Panel("Log folder size", "timeseries",
              [Q("max by (dir) (customer_sync_log_dir_bytes{$SEL})", "{{dir}}")],
              "bytes", "Apparent size of the files in each configured log folder.", min=0),
        Panel("Log folder files", "timeseries",
              [Q("max by (dir) (customer_sync_log_dir_files{$SEL})", "{{dir}}")],
              "short", "Files in each log folder.", min=0),
        Panel("Log folder free space", "timeseries",
              [Q("max by (dir) (customer_sync_log_dir_filesystem_free_bytes{$SEL})",
                 "{{dir}}")],
              "bytes", "Bytes free on the filesystem of each log folder; a steady fall is what "
              "CustomerSyncLogDiskFillingUp predicts.", alert="CustomerSyncLogDiskFillingUp",
              min=0),

        Row("1C and processes"),
        Panel("1C probe latency by phase", "timeseries",
              [Q("max by (phase) (customer_sync_onec_probe_duration_seconds{$SEL})",
                 "{{phase}}")],
              "s", "DNS, connect, TLS, processing and transfer time of the last 1C probe.",
              alert="CustomerSyncOneCDown", min=0),
        Panel("1C HTTP status", "timeseries",
              [Q("max by (instance) (customer_sync_onec_http_status_code{$SEL})",
                 "{{instance}}")],
              "none", "HTTP status code of the last 1C probe (0 when no answer came).",
              steps=[(WARN, 300), (CRIT, 400)], alert="CustomerSyncOneCDown"),
        Panel("Worker process memory", "timeseries", [
            Q("sum by (group) (customer_sync_process_resident_memory_bytes{$SEL})", "{{group}}"),
            Q("max by (instance) (process_resident_memory_bytes{$SEL})",
              "exporter {{instance}}")],
            "bytes", "Resident memory of the Celery workers and 1C import commands, per group, "
            "and of the exporter itself.", min=0),
        Panel("Worker processes", "timeseries",
              [Q("sum by (group) (customer_sync_processes{$SEL})", "{{group}}")],
              "short", "Processes matched per group.", min=0),

        Row("Alerts"),
        Panel("Firing alerts", "table",
              [Q('sum by (alertname, severity, instance) (ALERTS{alertstate="firing", '
                 'alertname=~"CustomerSync.*"})', instant=True)],
              "short", "Customer-sync alerts firing now; each has a runbook section.",
              width=24, height=8, steps_base=NEUTRAL),
    ]
    return dashboard(
        "customer-sync-system-health", "Customer sync / System health",
        "Is everything the sync depends on up: the exporter and its collectors, PostgreSQL, "
        "Redis, log folders, the 1C HTTP service, worker processes, firing alerts.", items)

DASHBOARDS = {
    "customer-sync-operations.json": sync_operations,
    "customer-sync-business.json": business,
    "customer-sync-system-health.json": system_health,
}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
            for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if grafana/dashboards/ is not what this script generates")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"out of date, run python3 grafana/build_dashboards.py: {', '.join(stale)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
