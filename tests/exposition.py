"""Reading collector output in tests: samples by labels, single values, promtool's verdict."""

from __future__ import annotations

import subprocess

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

from tests.conftest import require_binary


def samples(families: list[Metric], name: str) -> dict[tuple[str, ...], float]:
    """Every sample of ``name`` keyed by its label values."""
    return {
        tuple(s.labels.values()): s.value for f in families for s in f.samples if s.name == name
    }


def value(families: list[Metric], name: str) -> float:
    (only,) = samples(families, name).values()
    return only


def promtool_problems(families: list[Metric]) -> str:
    """What ``promtool check metrics`` says about these families ('' when clean)."""
    promtool = require_binary("promtool")

    class Fixed:
        def collect(self) -> list[Metric]:
            return families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())  # type: ignore[arg-type]
    text = generate_latest(registry)
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
    return "" if proc.returncode == 0 else (proc.stdout + proc.stderr).decode()
