"""The incremental exposition against prometheus_client's own encoders, byte for byte.

Scrapes are generated as sequences of family lists drawn from small pools, so that families
repeat exactly, repeat with one value changed, or repeat with a value that compares equal but
prints differently (``0.0``/``-0.0``, ``1``/``1.0``/``True``, a timestamp ``1``/``1.0``); every
body must be what the library writes for the whole list in one call.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable
from functools import partial
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest as text_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics import exposition as om
from prometheus_client.samples import Exemplar

from exporter.exposition import Exposition

ENCODERS: list[tuple[Callable[[Any], bytes], str]] = [
    choose_encoder(""),  # text 0.0.4
    choose_encoder("application/openmetrics-text"),
    choose_encoder("application/openmetrics-text; version=1.0.0"),
    choose_encoder("application/openmetrics-text; version=1.0.0; escaping=allow-utf-8"),
    choose_encoder("application/openmetrics-text; version=2.0.0; escaping=values"),
    choose_encoder("text/plain; version=1.0.0; escaping=dots"),
    choose_encoder("text/plain; version=1.0.0; escaping=allow-utf-8"),
]

NAMES = ["customer_sync_operations", "customer_sync_x", "customer.sync.dotted", "a:b"]
TYPES = ["gauge", "counter", "histogram", "summary", "info", "stateset", "gaugehistogram",
         "unknown"]
LABEL_NAMES = ["operation_type", "status", "le", "odd.name"]
LABEL_VALUES = ["", "a", "import", 'q"uote', "back\\slash", "new\nline", "юникод", "+Inf"]
# Values within a class compare equal; some print differently (0.0 and -0.0, timestamps 1 and
# 1.0), which is what a cache keyed on equality alone would get wrong.
VALUE_CLASSES = [[0, 0.0, -0.0, False], [1, 1.0, True], [2.5], [1e300], [123456789.0],
                 [math.inf], [-math.inf], [math.nan], [10**400]]
ZEROS = 0  # the class drawn most often: its members print differently
TIMESTAMP_CLASSES = [[None], [1, 1.0], [1700000000.5]]
SUFFIXES = ["", "_total", "_bucket", "_sum", "_count", "_created", "_info", "_gsum"]

Template = tuple[str, str, str, list[tuple[str, dict[str, str], int, int, bool]]]


@st.composite
def templates(draw: st.DrawFn) -> Template:
    """A family's shape: name, help, type and samples, each value as a class to draw from."""
    name = draw(st.sampled_from(NAMES))
    samples = [
        (name + draw(st.sampled_from(SUFFIXES)),
         draw(st.dictionaries(st.sampled_from(LABEL_NAMES), st.sampled_from(LABEL_VALUES),
                              max_size=3)),
         draw(st.one_of(st.just(ZEROS), st.integers(0, len(VALUE_CLASSES) - 1))),
         draw(st.sampled_from([0, 0, 0, 1, 2])),
         draw(st.integers(0, 19)) == 0)
        for _ in range(draw(st.integers(0, 5)))
    ]
    return (name, draw(st.sampled_from(["help", "help \\ with\nnewline", ""])),
            draw(st.sampled_from(TYPES)), samples)


def family(draw: st.DrawFn, template: Template) -> Metric:
    """One scrape's family of ``template``: each value drawn from its class, or now and then
    from another class (a value that changed)."""
    name, documentation, typ, shape = template
    out = Metric(name, documentation, typ)
    for sample_name, labels, value_class, ts_class, with_exemplar in shape:
        if draw(st.integers(0, 5)) == 0:
            value_class = draw(st.integers(0, len(VALUE_CLASSES) - 1))
        exemplar = None
        if with_exemplar:
            exemplar = Exemplar({"trace": "t"}, draw(st.sampled_from(VALUE_CLASSES[0])))
        out.add_sample(sample_name, dict(labels), draw(st.sampled_from(VALUE_CLASSES[value_class])),
                       draw(st.sampled_from(TIMESTAMP_CLASSES[ts_class])), exemplar)
    return out


@st.composite
def scrapes(draw: st.DrawFn) -> list[list[Metric]]:
    """Several scrapes of the same templates, a family now and then left out, and now and then
    handed again as the very object of the scrape before (as collectors hand unchanged ones)."""
    shapes = draw(st.lists(templates(), min_size=1, max_size=6))
    bodies: list[list[Metric]] = []
    last: dict[int, Metric] = {}
    for _ in range(draw(st.integers(2, 6))):
        body = []
        for i, t in enumerate(shapes):
            if not draw(st.integers(0, 7)):
                continue
            if i not in last or draw(st.integers(0, 2)):
                last[i] = family(draw, t)
            body.append(last[i])
        bodies.append(body)
    return bodies


def encodable(encoder: Callable[[Any], bytes], fams: list[Metric]) -> bool:
    """Whether the library encodes these at all (it rejects exemplars on some types)."""
    try:
        encoder(_Registry(fams))
    except (ValueError, OverflowError):
        return False
    return True


class _Registry:
    def __init__(self, fams: list[Metric]) -> None:
        self.fams = fams

    def collect(self) -> list[Metric]:
        return self.fams


@settings(max_examples=300, deadline=None)
@given(scrapes(), st.sampled_from(range(len(ENCODERS))))
def test_every_body_is_what_the_library_writes(bodies: list[list[Metric]], which: int) -> None:
    encoder, content_type = ENCODERS[which]
    exposition = Exposition()
    for fams in bodies:
        if not encodable(encoder, fams):
            continue
        expected = encoder(_Registry(fams))
        assert exposition.encode(fams, encoder, content_type) == expected
        assert gzip.decompress(exposition.encode(fams, encoder, content_type, True)) == expected


def test_an_unchanged_family_is_not_encoded_again() -> None:
    calls: list[int] = []

    def counting(registry: Any) -> bytes:
        fams = list(registry.collect())
        calls.append(len(fams))
        return om.generate_latest(_Registry(fams))

    exposition = Exposition()

    def scrape(value: float) -> bytes:
        fams = [GaugeMetricFamily("customer_sync_a", "a", value=1.0),
                GaugeMetricFamily("customer_sync_b", "b", value=value)]
        return exposition.encode(fams, counting, "application/openmetrics-text")

    first = scrape(2.0)
    calls.clear()
    assert scrape(2.0) == first
    assert calls == []  # neither family encoded again
    # Equal to 0.0 but printed "-0.0": printed anew, as its value alone (the line's start is
    # the one the encoder wrote), so without the encoder.
    changed = scrape(-0.0)
    assert b"customer_sync_b -0.0\n" in changed
    assert b"customer_sync_b 0.0\n" in scrape(0.0)
    assert calls == []


def test_formats_are_cached_apart() -> None:
    exposition = Exposition()
    fams = [GaugeMetricFamily("customer_sync_a", "a", value=1.0)]
    text_encoder, om_encoder = text_latest, partial(om.generate_latest, version="1.0.0")
    for _ in range(2):
        assert exposition.encode(fams, text_encoder, "text/plain") == text_latest(_Registry(fams))
        assert (exposition.encode(fams, om_encoder, "application/openmetrics-text")
                == om.generate_latest(_Registry(fams)))


def counting_scrape(seen: list[int]) -> Callable[[list[tuple[str, float]]], tuple[bytes, bytes]]:
    """A scrape of one family with these (label, value) samples: the exposition's body and the
    library's; ``seen`` gets how many samples each family handed to the encoder has."""
    def counting(registry: Any) -> bytes:
        fams = list(registry.collect())
        seen.extend(len(f.samples) for f in fams)
        return om.generate_latest(_Registry(fams))

    exposition = Exposition()

    def scrape(samples: list[tuple[str, float]]) -> tuple[bytes, bytes]:
        family = GaugeMetricFamily("customer_sync_a", "a", labels=["n"])
        for label, value in samples:
            family.add_metric([label], value)
        body = exposition.encode([family], counting, "application/openmetrics-text")
        return body, om.generate_latest(_Registry([family]))

    return scrape


def test_a_changed_family_is_encoded_again_only_where_it_changed() -> None:
    seen: list[int] = []
    counted = counting_scrape(seen)

    def scrape(values: list[float]) -> tuple[bytes, bytes]:
        return counted([(str(i), value) for i, value in enumerate(values)])

    values = [0.0] * 100
    scrape(values)
    seen.clear()
    values[7], values[42] = 1.0, -0.0
    body, expected = scrape(values)
    assert body == expected
    assert seen == []  # only values changed: each line is its old start and the new value


def test_a_sample_whose_labels_changed_goes_to_the_encoder_alone() -> None:
    seen: list[int] = []
    counted = counting_scrape(seen)

    def scrape(labels: list[str]) -> tuple[bytes, bytes]:
        return counted([(label, float(i)) for i, label in enumerate(labels)])

    labels = [str(i) for i in range(50)]
    scrape(labels)
    seen.clear()
    labels[3] = 'q"uote'
    body, expected = scrape(labels)
    assert body == expected
    assert seen == [1]
    seen.clear()
    assert scrape(labels)[0] == expected  # its start is known now
    assert seen == []
