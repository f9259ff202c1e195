"""mixin/config.yml as a validated model, and the ``${...}`` values the rule templates use.

Every value is required here (no defaults), so config.yml stays the only place a number lives.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

CONFIG_FILE = Path(__file__).resolve().parent / "config.yml"

_MATCHER = r'[a-zA-Z_][a-zA-Z0-9_]*\s*(?:=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"'


def _selector(value: str) -> str:
    if not re.fullmatch(rf"\s*{_MATCHER}(?:\s*,\s*{_MATCHER})*\s*", value):
        raise ValueError('expected PromQL label matchers such as job="customer_sync_exporter"')
    return value.strip()


def _http_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s#]+", value):
        raise ValueError("expected an http(s) URL without a #fragment")
    return value


Ratio = Annotated[float, Field(gt=0, lt=1)]
Positive = Annotated[float, Field(gt=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Model):
    error_ratio_1h: Ratio
    error_ratio_5m: Ratio
    error_ratio_min_failures: Positive
    failed_operations_1h: Positive
    duration_p95_seconds: Positive
    customers_import_interval_seconds: Positive
    collector_success_ratio: Ratio
    postgres_connections_warning: Ratio
    postgres_connections_critical: Ratio
    queue_items: Positive
    log_disk_used_warning: Ratio
    log_disk_used_critical: Ratio
    log_disk_fill_hours_warning: Positive
    log_disk_free_guard_warning: Ratio
    log_disk_fill_hours_critical: Positive
    log_disk_free_guard_critical: Ratio
    onec_certificate_days: Positive
    export_queue_oldest_age_seconds: Positive
    celery_import_failure_ratio: Ratio
    celery_import_runtime_p95_seconds: Positive
    celery_cleanup_stale_import_sessions_period_seconds: Positive
    celery_clear_abandoned_carts_period_seconds: Positive
    celery_monitor_pending_verification_period_seconds: Positive


class BurnRates(_Model):
    page_1h_5m: Positive
    page_6h_30m: Positive
    ticket_1d_2h: Positive
    ticket_3d_6h: Positive


class SLO(_Model):
    target: Ratio
    burn_rates: BurnRates

    @property
    def error_budget(self) -> float:
        """1 - target, exactly as written (0.99 gives 0.01, not 0.010000000000000009)."""
        return float(1 - Decimal(str(self.target)))


class MixinConfig(_Model):
    selector: Annotated[str, AfterValidator(_selector)]
    runbook_url: Annotated[str, AfterValidator(_http_url)]
    thresholds: Thresholds
    slo: SLO

    def values(self) -> dict[str, float | str]:
        """Every ``${name}`` a template may use: the config's leaves by dotted path, plus
        ``slo.error_budget``."""
        out: dict[str, float | str] = {}

        def walk(prefix: str, node: Any) -> None:
            for key, value in node.items():
                if isinstance(value, dict):
                    walk(f"{prefix}{key}.", value)
                else:
                    out[f"{prefix}{key}"] = value

        walk("", self.model_dump())
        out["slo.error_budget"] = self.slo.error_budget
        return out


class ConfigError(Exception):
    """config.yml is not valid; the message names the file, line and key of every problem."""


def _line(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the key at ``loc`` (or of its nearest existing parent)."""
    node, line = root, None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if k.value == part), None)
        if match is None:
            break
        line = match[0].start_mark.line + 1
        node = match[1]
    return line


def load(path: Path = CONFIG_FILE) -> MixinConfig:
    """The validated config; every problem as ``file:line: dotted.key: message``."""
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        return MixinConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            line = _line(root, tuple(error["loc"]))
            where = f"{path}:{line}" if line else str(path)
            key = ".".join(str(p) for p in error["loc"]) or "(top)"
            problems.append(f"{where}: {key}: {error['msg']}")
        raise ConfigError("\n".join(problems)) from exc
