"""Reading collector output in tests: samples by labels, single values, promtool's verdict."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from typing import Any, overload

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import require_binary

Source = Iterable[Metric] | str  # collector output, or an exposition as a scrape returns it
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@overload
def samples(source: Source) -> Samples: ...
@overload
def samples(source: Source, name: str) -> dict[tuple[str, ...], float]: ...
@overload
def samples(source: Source, name: str, *, by: str) -> dict[str, float]: ...


def samples(source: Source, name: str | None = None, *, by: str | None = None) -> dict[Any, float]:
    """Sample values, keyed for the question at hand.

    * ``samples(source)``: every sample, by ``(sample name, sorted (label, value) pairs)``;
    * ``samples(source, name)``: the samples of ``name``, by their label values in order;
    * ``samples(source, name, by="dir")``: the samples of ``name``, by the one label that tells
      them apart.

    ``source`` is a collector's families or the text of a scrape (parsed by client_python).
    """
    families = text_string_to_metric_families(source) if isinstance(source, str) else source
    found = [s for f in families for s in f.samples if name is None or s.name == name]
    if name is None:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in found}
    if by is None:
        return {tuple(s.labels.values()): s.value for s in found}
    return {s.labels[by]: s.value for s in found}


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
