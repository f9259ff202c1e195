"""Exposition that re-encodes only the metric families whose content changed since last time.

prometheus_client's encoders write one family after another, each from that family alone, and
OpenMetrics adds ``# EOF`` once at the end; so a body is the concatenation of its families'
encodings (and the trailer). Encoding is most of a quiet scrape's CPU (label escaping runs a
Python function per character), yet between two scrapes most families are the same: the totals
of a quiet table, the zeros of known series. :class:`Exposition` keeps each family's encoding
per format and reuses it when the family is unchanged, asking the library's own encoder for the
others, one family at a time; the body is byte for byte what the encoder writes for the whole
list (tests/exporter/test_exposition.py checks that for generated families).

"Unchanged" is decided exactly. Samples compare equal as tuples (names, label dicts, values,
timestamps), and the values also as the bits of the float the encoder prints (``0.0 == -0.0``
but prints differently). A family with a timestamp, an exemplar or a native histogram (whose
equality is looser than their printing) is always encoded afresh; we emit none.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import Metric

Encoder = Callable[[Any], bytes]


class _Families:
    """Adapts a list of families to the ``collect()`` interface the encoders expect."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Sequence[Metric]:
        return self._families


@dataclass(frozen=True)
class _Encoded:
    """One family as last encoded: what it was made of, and the bytes."""

    meta: tuple[str, str, str, str]
    samples: tuple[Any, ...]
    values: bytes
    body: bytes


def _values(samples: Sequence[Any]) -> bytes | None:
    """The sample values as the float bits the encoders print (they print ``float(v)``), or
    None when the family must not be reused: a value that is no float, or a sample whose
    timestamp, exemplar or native histogram would be compared more loosely than it prints."""
    if any(s.timestamp is not None or s.exemplar is not None or s.native_histogram is not None
           for s in samples):
        return None
    try:
        return array("d", [s.value for s in samples]).tobytes()
    except (TypeError, OverflowError):
        return None


class _Format:
    """The cache of one format (one encoder)."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.trailer = encoder(_Families([]))  # b"# EOF\n" for OpenMetrics, b"" for text
        self.last: dict[str, _Encoded] = {}

    def encode_one(self, family: Metric) -> bytes:
        body = self.encoder(_Families([family]))
        return body[: len(body) - len(self.trailer)]

    def encode(self, families: Sequence[Metric]) -> bytes:
        last, now = self.last, {}
        parts = []
        for family in families:
            meta = (family.name, family.type, family.documentation, family.unit)
            samples = tuple(family.samples)  # a collector may reuse its list
            values = _values(samples)
            old = last.get(family.name)
            if (values is not None and old is not None and old.meta == meta
                    and old.values == values and old.samples == samples):
                body = old.body
            else:
                body = self.encode_one(family)
            if values is not None:
                now[family.name] = _Encoded(meta, samples, values, body)
            parts.append(body)
        self.last = now
        parts.append(self.trailer)
        return b"".join(parts)


class Exposition:
    """Encodes lists of families, each format remembering its families from the last call."""

    def __init__(self) -> None:
        self._formats: dict[tuple[str, object], _Format] = {}
        self._lock = threading.Lock()

    def encode(self, families: Sequence[Metric], encoder: Encoder, content_type: str) -> bytes:
        """What ``encoder`` writes for ``families``; ``content_type`` names its format."""
        key = (content_type, _identity(encoder))
        with self._lock:
            fmt = self._formats.get(key)
            if fmt is None:
                fmt = self._formats[key] = _Format(encoder)
            return fmt.encode(families)


def _identity(encoder: Encoder) -> object:
    """What makes two encoders the same: ``choose_encoder`` returns a new ``partial`` per call."""
    func = getattr(encoder, "func", encoder)
    keywords = getattr(encoder, "keywords", None) or {}
    args = getattr(encoder, "args", ())
    return (func, args, tuple(sorted(keywords.items())))
