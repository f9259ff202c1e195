"""Panels, rows and the dashboard JSON they become.

A dashboard is a list of rows; a row is a title and its panels (``Row``). Queries write
``{$SEL}`` / ``{$SEL, more="matchers"}`` for one exporter's series (the config's selector and the
``shop`` and ``instance`` variables) and ``{$SHOP}`` / ``{$SHOP, ...}`` for series recorded per shop
(the SLO). Everything about layout, units, variables and links is decided here, once, so about
sixty panels cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mixin.config import MixinConfig, Thresholds
from mixin.render import number

DS = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ["customer-sync", "freesport", "1c"]
RATE = "[$__rate_interval]"

# Colours used for thresholds.
OK, WARN, CRIT, NEUTRAL = "green", "orange", "red", "blue"

UP_MAPPINGS = [{"type": "value", "options": {
    "0": {"text": "DOWN", "color": CRIT, "index": 0},
    "1": {"text": "UP", "color": OK, "index": 1},
}}]  # fmt: skip
OK_MAPPINGS = [{"type": "value", "options": {
    "0": {"text": "failing", "color": CRIT, "index": 0},
    "1": {"text": "ok", "color": OK, "index": 1},
}}]  # fmt: skip


def pct(ratio: float) -> str:
    """A ratio as the text of a panel description: 0.1 -> "10 %"."""
    return f"{number(ratio * 100)} %"


@dataclass(frozen=True)
class Context:
    """What every row needs: the mixin config and the alert names the rule files define."""

    config: MixinConfig
    alerts: frozenset[str]

    @property
    def t(self) -> Thresholds:
        """The thresholds, as ``ctx.t.error_ratio_1h``."""
        return self.config.thresholds

    def runbook(self, alert: str) -> str:
        if alert not in self.alerts:
            raise ValueError(f"a panel links alert {alert!r}, which no rule file defines")
        return f"{self.config.runbook_url}#{alert.lower()}"

    def selectors(self) -> dict[str, str]:
        base = self.config.selector
        return {"$SEL": f'{base}, shop=~"$shop", instance=~"$instance"',
                "$SHOP": f'{base}, shop=~"$shop"'}


@dataclass
class Q:
    """One PromQL query of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False


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
    """A dashboard row: its title and panels, laid out left to right, 24 units a line."""

    title: str
    panels: Sequence[Panel]


def _expr(expr: str, selectors: dict[str, str]) -> str:
    for name, matchers in selectors.items():
        expr = expr.replace("{" + name, "{" + matchers)
    return expr


def _thresholds(p: Panel) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": p.steps_base, "value": None}]
    steps += [{"color": c, "value": v} for c, v in p.steps]
    return {"mode": "absolute", "steps": steps}


def _targets(p: Panel, selectors: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for i, q in enumerate(p.queries):
        instant = q.instant or p.kind in {"table"}
        out.append({
            "refId": chr(ord("A") + i),
            "datasource": DS,
            "expr": _expr(q.expr, selectors),
            "legendFormat": q.legend or "__auto",
            "range": not instant,
            "instant": instant,
            **({"format": "table"} if p.kind == "table" else {}),
        })  # fmt: skip
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


def _panel_json(ctx: Context, p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
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
        "targets": _targets(p, ctx.selectors()),
    }
    if p.alert:
        panel["links"] = [{"title": f"Runbook: {p.alert}", "url": ctx.runbook(p.alert),
                           "targetBlank": True}]
    return panel


def _layout(ctx: Context, rows: Sequence[Row]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    y = 0
    pid = 0
    for row in rows:
        pid += 1
        panels.append({"id": pid, "type": "row", "title": row.title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        y += 1
        x = line_height = 0
        for panel in row.panels:
            pid += 1
            if x + panel.width > 24:
                x, y, line_height = 0, y + line_height, 0
            panels.append(_panel_json(ctx, panel, pid, x, y))
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return panels


def _variables(ctx: Context, window_var: bool) -> list[dict[str, Any]]:
    base = ctx.config.selector
    shops = f"label_values(customer_sync_exporter_build_info{{{base}}}, shop)"
    instances = (
        f'label_values(customer_sync_exporter_build_info{{{base}, shop=~"$shop"}}, instance)')
    variables: list[dict[str, Any]] = [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "regex": "", "includeAll": False,
         "multi": False, "options": []},
        {"name": "shop", "label": "Shop", "type": "query", "datasource": DS,
         "definition": shops,
         "query": {"query": shops, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
         "current": {}, "hide": 0, "refresh": 2, "regex": "", "sort": 1, "includeAll": True,
         "multi": True, "options": [],
         "description": "The target label `shop`: one exporter and database per shop."},
        {"name": "instance", "label": "Exporter", "type": "query", "datasource": DS,
         "definition": instances,
         "query": {"query": instances, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
         "current": {}, "hide": 0, "refresh": 2, "regex": "", "sort": 1, "includeAll": True,
         "multi": True, "options": []},
    ]  # fmt: skip
    if window_var:
        windows = ["5m", "1h", "24h"]
        variables.append({
            "name": "window", "label": "Window", "type": "custom", "query": ",".join(windows),
            "current": {"selected": True, "text": "1h", "value": "1h"}, "hide": 0,
            "includeAll": False, "multi": False,
            "description": "A sliding window the exporter counts exactly "
                           "(collectors.synclog.windows).",
            "options": [{"selected": w == "1h", "text": w, "value": w} for w in windows],
        })  # fmt: skip
    return variables


def dashboard(ctx: Context, uid: str, title: str, description: str, rows: Sequence[Row],
              window_var: bool = False) -> dict[str, Any]:
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
            {"title": "Runbook", "type": "link", "url": ctx.config.runbook_url, "icon": "doc",
             "targetBlank": True, "asDropdown": False, "includeVars": False, "keepTime": False,
             "tags": [], "tooltip": "What each alert means and what to do"},
        ],
        "templating": {"list": _variables(ctx, window_var)},
        "panels": _layout(ctx, rows),
    }  # fmt: skip
