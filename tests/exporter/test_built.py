"""Families are made again exactly when their inputs changed."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.core import GaugeMetricFamily, Metric

from exporter.built import Built


@given(st.lists(st.one_of(st.none(), st.integers(-2, 2), st.tuples(st.integers(0, 1))),
                min_size=1, max_size=20))
def test_made_again_exactly_when_the_inputs_differ_from_the_last(inputs: list[object]) -> None:
    built = Built()
    made: list[object] = []

    def build(value: object) -> list[Metric]:
        made.append(value)
        return [GaugeMetricFamily("customer_sync_x", "x", value=0.0)]

    previous: list[Metric] | None = None
    for i, value in enumerate(inputs):
        families = built.get(value, lambda v=value: build(v))  # type: ignore[misc]
        again = i > 0 and inputs[i - 1] == value
        assert (families is previous) == again  # the very objects, or new ones
        assert made[-1] == value
        previous = families
    assert len(made) == 1 + sum(a != b for a, b in itertools.pairwise(inputs))
