"""The three Grafana dashboards, each a list of rows (mixin/dashboards/panels.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mixin.dashboards import business, operations, system_health
from mixin.dashboards.panels import Context

DASHBOARDS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "customer-sync-operations.json": operations.build,
    "customer-sync-business.json": business.build,
    "customer-sync-system-health.json": system_health.build,
}


def dashboard_files(ctx: Context) -> dict[str, str]:
    """``{file name: JSON text}`` of every dashboard."""
    return {name: json.dumps(build(ctx), indent=2, ensure_ascii=False) + "\n"
            for name, build in DASHBOARDS.items()}
