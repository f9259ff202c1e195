"""Content negotiation: q-values honoured, and no header, however broken, gets anything but an answer.

Expected content types come from prometheus_client's ``choose_encoder`` fed a single, clean media
range (or from its constants), never from the code under test.
"""

from __future__ import annotations

import gzip

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS

from exporter.negotiate import choose_format, gzip_accepted, parse_preferences

TEXT = CONTENT_TYPE_PLAIN_0_0_4
PROMETHEUS_3 = ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
                "application/openmetrics-text;version=0.0.1;q=0.5,"
                "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
                "text/plain;version=0.0.4;q=0.3,*/*;q=0.2")


class _Families:
    def collect(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily("customer_sync_probe", "probe", value=3.0)]


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, TEXT),
        ("", TEXT),
        ("application/openmetrics-text", OPENMETRICS),
        ("text/plain", TEXT),
        # the cases
        ("text/plain;version=abc;q=zz", TEXT),
        ("text/plain;version=abc", TEXT),
        ("application/openmetrics-text;q=0, text/plain;q=1", TEXT),
        # q decides, then specificity, then the client's order
        ("text/plain;q=0.5, application/openmetrics-text;q=0.6", OPENMETRICS),
        ("text/plain, application/openmetrics-text", TEXT),
        ("application/openmetrics-text, text/plain", OPENMETRICS),
        ("*/*;q=1, application/openmetrics-text;q=0.5", TEXT),
        ("text/plain;q=0.3, */*", OPENMETRICS),  # */* gives OpenMetrics 1, text only 0.3
        ("text/plain;q=0, */*", OPENMETRICS),
        ("text/*;q=0, application/*;q=0.1", OPENMETRICS),
        ("*/*", TEXT),
        ("text/*", TEXT),
        ("application/*", OPENMETRICS),
        # nothing we serve, or everything refused: the text format all the same (no 406)
        ("application/json", TEXT),
        ("*/*;q=0", TEXT),
        ("application/openmetrics-text;q=0", TEXT),
        ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily", TEXT),
        # OpenMetrics 0.0.1 is not written by client_python: passed over, the next one taken
        ("application/openmetrics-text;version=0.0.1;q=0.9, text/plain;q=0.1", TEXT),
        # malformed elements are dropped, the rest still count
        ("application/openmetrics-text;q=abc, text/plain;q=0.1", TEXT),
        ("application/openmetrics-text;q=1.5", TEXT),
        ("openmetrics, application/openmetrics-text;q=0.2", OPENMETRICS),
        ('application/openmetrics-text;foo="a,b;q=0";q=0.9, text/plain;q=0.5', OPENMETRICS),
        ("\x00\xff;;,,==/", TEXT),
        ("APPLICATION/OPENMETRICS-TEXT;Q=0.9", OPENMETRICS),
    ],
)
def test_choose_format(accept: str | None, expected: str) -> None:
    encoder, content_type = choose_format(accept)
    assert content_type == expected
    assert b"customer_sync_probe" in encoder(_Families())


def test_versioned_ranges_get_exactly_what_client_python_writes_for_them() -> None:
    for clean in ("application/openmetrics-text; version=1.0.0; escaping=allow-utf-8",
                  "text/plain; version=1.0.0; escaping=underscores"):
        _, expected = choose_encoder(clean)
        assert choose_format(clean.replace(" ", "") + ";q=0.7, */*;q=0.1")[1] == expected
    # Prometheus 3's own Accept header: its first choice
    assert choose_format(PROMETHEUS_3)[1] == choose_encoder(
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8")[1]


@pytest.mark.parametrize(
    ("accept_encoding", "expected"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("GZIP", True),
        ("x-gzip", True),
        ("gzip;q=0", False),  # the case
        ("gzip;q=0.000", False),
        ("gzip;q=0.001", True),
        ("gzip;q=0.5", True),  # identity is acceptable, but not preferred unless rated
        ("deflate, br", False),
        ("*", True),
        ("*;q=0", False),
        ("gzip;q=0, *", False),  # an explicit entry beats the wildcard
        ("gzip;q=0.5, identity;q=1", False),  # identity preferred
        ("gzip;q=1, identity;q=0.5", True),
        ("gzip, identity", True),  # equal: the smaller answer
        ("identity;q=0", False),  # nothing acceptable: identity all the same (no 406)
        ("gzip;q=zz", False),
        ("gzipped", False),
        ("gzip;level=9", True),
    ],
)
def test_gzip_accepted(accept_encoding: str | None, expected: bool) -> None:
    assert gzip_accepted(accept_encoding) is expected


def test_parse_preferences_keeps_order_q_and_unquoted_params() -> None:
    prefs = parse_preferences('a/b;q=0.5;x="1,2", c/d , bad, e/f;q=0', media=True)
    assert [(p.value, p.params, p.q, p.position) for p in prefs] == [
        ("a/b", (("x", "1,2"),), 0.5, 0), ("c/d", (), 1.0, 1), ("e/f", (), 0.0, 3)]


@given(st.text(max_size=200))
def test_any_accept_header_gets_a_format_that_encodes(accept: str) -> None:
    encoder, content_type = choose_format(accept)
    assert content_type.split(";")[0] in ("text/plain", "application/openmetrics-text")
    assert b"customer_sync_probe" in encoder(_Families())


@given(st.text(max_size=200))
def test_any_accept_encoding_header_is_answered(accept_encoding: str) -> None:
    gzipped = gzip_accepted(accept_encoding)
    assert isinstance(gzipped, bool)
    if gzipped:
        assert gzip.decompress(gzip.compress(b"x")) == b"x"


RANGES = ["text/plain", "application/openmetrics-text", "*/*", "text/*", "application/*",
          "application/json"]
QVALUES = ["0", "0.1", "0.5", "0.999", "1"]


def _quality(elements: list[tuple[str, str]], offer: str) -> float:
    """Brute force RFC 9110 §12.5.1: the q of the most specific range matching ``offer``."""
    def specificity(rng: str) -> int:
        return 0 if rng == "*/*" else 1 if rng.endswith("/*") else 2

    matching = [(specificity(r), -i, float(q)) for i, (r, q) in enumerate(elements)
                if r == offer or r == "*/*" or (r.endswith("/*") and offer.startswith(r[:-1]))]
    return max(matching)[2] if matching else 0.0


@given(st.lists(st.tuples(st.sampled_from(RANGES), st.sampled_from(QVALUES)), max_size=6))
def test_the_chosen_format_is_one_the_client_rates_highest(
    elements: list[tuple[str, str]],
) -> None:
    header = ", ".join(f"{r};q={q}" for r, q in elements)
    _, content_type = choose_format(header)
    chosen = content_type.split(";")[0]
    qualities = {offer: _quality(elements, offer)
                 for offer in ("text/plain", "application/openmetrics-text")}
    if max(qualities.values()) == 0:
        assert chosen == "text/plain"  # everything refused or unmentioned: the default
    else:
        assert qualities[chosen] == max(qualities.values())
