"""A gzip member made of per-part DEFLATE blocks is the body, for any gzip reader."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter import deflate
from exporter.deflate import SegmentedGzip

# Parts as a scrape's families are: repeated text (so blocks refer back within a part), empty,
# and one byte; drawn from a small pool so bodies repeat parts from one call to the next.
POOL = [b"", b"x", b"# HELP a b\n# TYPE a gauge\n" + b'a{l="v"} 1.0\n' * 300,
        bytes(range(256)) * 8, b"customer_sync_x 0.0\n", "юникод\n".encode() * 50]


def inflate(member: bytes) -> bytes:
    """Strictly: one member, nothing after it."""
    d = zlib.decompressobj(wbits=31)
    out = d.decompress(member) + d.flush()
    assert d.eof and not d.unused_data
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from(["a", "b", "c", None]),
                                   st.integers(0, len(POOL) - 1)), max_size=8),
                min_size=1, max_size=5),
       st.sampled_from([1, 6, 9]))
def test_every_member_inflates_to_the_body(calls: list[list[tuple[str | None, int]]],
                                           level: int) -> None:
    gz = SegmentedGzip(level)
    for call in calls:
        parts = [(key, POOL[i]) for key, i in call]
        body = b"".join(data for _, data in parts)
        member = gz.compress(parts)
        assert inflate(member) == body
        assert gzip.decompress(member) == body


def test_an_unchanged_part_is_not_compressed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    compressed: list[bytes] = []
    own = deflate._blocks

    def counted(data: bytes, level: int) -> bytes:
        compressed.append(data)
        return own(data, level)

    monkeypatch.setattr(deflate, "_blocks", counted)
    gz = SegmentedGzip(1)
    same, first, second = b"same\n" * 100, b"first\n", b"second\n"
    gz.compress([("s", same), ("v", first)])
    compressed.clear()
    member = gz.compress([("s", same), ("v", second)])
    assert compressed == [second]  # "s" is the very bytes it was: its blocks are reused
    assert inflate(member) == same + second
