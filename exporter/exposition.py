"""Exposition that re-encodes only the metric families whose content changed since last time.

prometheus_client's encoders write one family after another, each from that family alone, and
OpenMetrics adds ``# EOF`` once at the end; so a body is the concatenation of its families'
encodings (and the trailer). Encoding is most of a quiet scrape's CPU (label escaping runs a
Python function per character), yet between two scrapes most families are the same: the totals
of a quiet table, the zeros of known series. :class:`Exposition` keeps each family's encoding
per format and reuses it when the family is unchanged, asking the library's own encoder for the
others, one family at a time; the body is byte for byte what the encoder writes for the whole
list (tests/exporter/test_exposition.py checks that for generated families).

A family that changed is encoded again sample by sample where that is exact: each sample is one
line of its own (nothing in a line depends on the other samples), so only the samples that
differ from the last encoding at the same place are encoded again, and their lines replace the
old ones. A recent-operations family whose 5m window moved costs the few samples whose counts
moved, not its hundreds of labelled zeros. A sample whose name and labels are the ones last
encoded there only changed its value: its line is the old line's start (name and escaped
labels, which the encoder spends most of its time on) and the new value, printed by the
library's own ``floatToGoString`` as its encoders print it. That start is kept only where the
library's line was seen to be exactly start + value; any other sample goes to the encoder.

"Unchanged" is decided exactly. A family whose samples are the very objects last encoded
(collectors hand unchanged families again) is unchanged. Otherwise samples compare equal as
tuples (names, label dicts, values, timestamps), and the values also as the bits of the float
the encoder prints (``0.0 == -0.0`` but prints differently). A family with a timestamp, an
exemplar or a native histogram (whose equality is looser than their printing) is always encoded
afresh; we emit none.
"""

from __future__ import annotations

import operator
import threading
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString

from exporter.deflate import SegmentedGzip

Encoder = Callable[[Any], bytes]
# Level 1: as one stream an 80 kB body gzipped in 0.2 ms to 9.7 kB, against 0.44 ms and 8.6 kB at
# level 5; the CPU is the scarce side for a scrape every few seconds, not the kilobyte.
GZIP_LEVEL = 1


class _Families:
    """Adapts a list of families to the ``collect()`` interface the encoders expect."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Sequence[Metric]:
        return self._families


@dataclass(frozen=True)
class _Encoded:
    """One family as last encoded: what it was made of, and the bytes (as lines, one a sample,
    when the encoding is that: see :meth:`_Format.full`)."""

    meta: tuple[str, str, str, str]
    samples: tuple[Any, ...]
    bits: array[int]
    body: bytes
    header: bytes
    lines: list[bytes] | None
    # Per line, the line without its value (name, labels and the space), when it is exactly
    # that start and ``_value_text`` of the sample's value; else None.
    starts: list[bytes | None] | None


def _bits(samples: Sequence[Any]) -> array[int] | None:
    """The sample values as the bits of the float the encoders print (they print ``float(v)``),
    or None when the family must not be reused: a value that is no float, or a sample whose
    timestamp, exemplar or native histogram would be compared more loosely than it prints."""
    if any(s.timestamp is not None or s.exemplar is not None or s.native_histogram is not None
           for s in samples):
        return None
    try:
        floats = array("d", [s.value for s in samples])
    except (TypeError, OverflowError):
        return None
    bits = array("Q")
    bits.frombytes(floats.tobytes())
    return bits


def _same_objects(samples: tuple[Any, ...], before: tuple[Any, ...]) -> bool:
    """Every sample the very object it was (so its value prints as it did): a collector that
    hands its unchanged families again costs a pointer comparison a sample, not their bits."""
    return len(samples) == len(before) and all(map(operator.is_, samples, before))


def _value_text(sample: Any) -> bytes:
    """A sample's value and the line's end, as the library's encoders print them."""
    text: str = floatToGoString(sample.value)  # type: ignore[no-untyped-call]
    return text.encode() + b"\n"


def _start(line: bytes, sample: Any) -> bytes | None:
    """``line`` without the value it ends with, if it ends with exactly ``sample``'s."""
    end = b" " + _value_text(sample)
    return line[: len(line) - len(end) + 1] if line.endswith(end) else None


class _Format:
    """The cache of one format (one encoder)."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.trailer = encoder(_Families([]))  # b"# EOF\n" for OpenMetrics, b"" for text
        self.last: dict[str, _Encoded] = {}
        self.gzip = SegmentedGzip(GZIP_LEVEL)

    def encode_one(self, family: Metric) -> bytes:
        body = self.encoder(_Families([family]))
        return body[: len(body) - len(self.trailer)]

    def parts(self, families: Sequence[Metric]) -> list[tuple[str | None, bytes]]:
        """The body as its parts in order: each family's encoding (keyed by its name where it
        is kept for the next call, else None) and the trailer."""
        last, now = self.last, {}
        parts: list[tuple[str | None, bytes]] = []
        for family in families:
            meta = (family.name, family.type, family.documentation, family.unit)
            samples = tuple(family.samples)  # a collector may reuse its list
            old = last.get(family.name)
            if old is not None and old.meta == meta and _same_objects(samples, old.samples):
                now[family.name] = old  # the very samples last encoded (a family handed again)
                parts.append((family.name, old.body))
                continue
            bits = _bits(samples)
            if bits is None:
                parts.append((None, self.encode_one(family)))
                continue
            if old is None or old.meta != meta:
                entry = self.full(meta, samples, bits)
            elif old.bits == bits and old.samples == samples:
                entry = old
            else:
                entry = self.changed(old, samples, bits) or self.full(meta, samples, bits)
            now[family.name] = entry
            parts.append((family.name, entry.body))
        self.last = now
        parts.append((None, self.trailer))
        return parts

    def _family(self, meta: tuple[str, str, str, str], samples: Sequence[Any]) -> Metric:
        family = Metric(meta[0], meta[2], meta[1], meta[3])
        family.samples = list(samples)
        return family

    def full(self, meta: tuple[str, str, str, str], samples: tuple[Any, ...],
             bits: array[int]) -> _Encoded:
        """The family encoded whole. Its lines are kept when they are one a sample, in order
        (not so in the text format when it moves ``_created``/``_gsum``/``_gcount`` samples to
        families of their own: then there are more lines than samples)."""
        body = self.encode_one(self._family(meta, samples))
        header = self.encode_one(self._family(meta, ()))
        lines: list[bytes] | None = None
        starts: list[bytes | None] | None = None
        if body.startswith(header):
            lines = [line + b"\n" for line in body[len(header):].split(b"\n")[:-1]]
            if len(lines) == len(samples):
                starts = [_start(line, s) for line, s in zip(lines, samples, strict=True)]
            else:
                lines = None
        return _Encoded(meta, samples, bits, body, header, lines, starts)

    def changed(self, old: _Encoded, samples: tuple[Any, ...],
                bits: array[int]) -> _Encoded | None:
        """The family with only the samples that differ from ``old``'s at the same place
        encoded again (a sample's line depends on that sample alone); None if it cannot be."""
        if old.lines is None or old.starts is None or len(samples) != len(old.samples):
            return None
        before, old_bits = old.samples, old.bits
        lines, starts = list(old.lines), list(old.starts)
        others = []  # changed beyond their value, or whose start is not known: the encoder's
        for i, s in enumerate(samples):
            if bits[i] == old_bits[i] and s == before[i]:
                continue
            start = starts[i]
            if start is not None and s.name == before[i].name and s.labels == before[i].labels:
                lines[i] = start + _value_text(s)
            else:
                others.append(i)
        if others:
            encoded = self.encode_one(self._family(old.meta, [samples[i] for i in others]))
            if not encoded.startswith(old.header):
                return None
            new_lines = encoded[len(old.header):].split(b"\n")[:-1]
            if len(new_lines) != len(others):
                return None
            for i, line in zip(others, new_lines, strict=True):
                lines[i] = line + b"\n"
                starts[i] = _start(lines[i], samples[i])
        return _Encoded(old.meta, samples, bits, old.header + b"".join(lines), old.header, lines,
                        starts)


class Exposition:
    """Encodes lists of families, each format remembering its families from the last call."""

    def __init__(self) -> None:
        self._formats: dict[tuple[str, object], _Format] = {}
        self._lock = threading.Lock()

    def encode(self, families: Sequence[Metric], encoder: Encoder, content_type: str,
               gzipped: bool = False) -> bytes:
        """What ``encoder`` writes for ``families`` (gzipped if asked: :mod:`exporter.deflate`
        compresses only the families that changed); ``content_type`` names its format."""
        key = (content_type, _identity(encoder))
        with self._lock:
            fmt = self._formats.get(key)
            if fmt is None:
                fmt = self._formats[key] = _Format(encoder)
            parts = fmt.parts(families)
            if gzipped:
                return fmt.gzip.compress(parts)
            return b"".join(data for _, data in parts)


def _identity(encoder: Encoder) -> object:
    """What makes two encoders the same: ``choose_encoder`` returns a new ``partial`` per call."""
    func = getattr(encoder, "func", encoder)
    keywords = getattr(encoder, "keywords", None) or {}
    args = getattr(encoder, "args", ())
    return (func, args, tuple(sorted(keywords.items())))
