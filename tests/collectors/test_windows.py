"""Sliding windows against a brute-force recount, for arbitrary arrival orders and clock moves."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from collectors import windows
from collectors.windows import Row, RowStore, SlidingWindows

LENGTHS = [5, 60, 600]


class Multiset:
    def __init__(self) -> None:
        self.rows: list[Counter[Row]] = [Counter() for _ in LENGTHS]

    def enter(self, windows: Sequence[int], rows: Sequence[Row]) -> None:
        assert len(set(windows)) == len(windows) and rows
        for window in windows:
            self.rows[window].update(rows)

    def leave(self, windows: Sequence[int], rows: Sequence[Row]) -> None:
        assert len(set(windows)) == len(windows) and rows
        for window in windows:
            self.rows[window].subtract(rows)
            assert min(self.rows[window].values(), default=0) >= 0, "a row left that never entered"

    def reset(self) -> None:
        self.rows = [Counter() for _ in LENGTHS]


steps = st.lists(
    st.tuples(
        st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 3)), max_size=40),  # new rows
        st.integers(-5, 300),  # how far the clock moves (negative: a clock stepping back)
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 2000), max_size=60), steps)
def test_windows_hold_exactly_the_rows_in_range(history: list[int], plan) -> None:
    consumer = Multiset()
    windows = SlidingWindows(LENGTHS, [consumer])
    every: list[Row] = [(t, 1, -1, -1) for t in history]
    windows.add(every)
    now = 1000
    windows.advance(now)
    for new, step in plan:
        rows = [(t, code, -1, -1) for t, code in new]
        every += rows
        windows.add(rows)
        now = max(now, now + step)  # the windows ignore a backwards step; so does the oracle
        windows.advance(now + step if step < 0 else now)
        for i, length in enumerate(LENGTHS):
            expected = Counter(r for r in every if now - length < r[0] <= now)
            assert +consumer.rows[i] == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10_000), max_size=300), st.integers(0, 10_000),
       st.integers(0, 10_000))
def test_row_store_range_and_drop(stamps: list[int], lo: int, cut: int) -> None:
    store = RowStore()
    half = len(stamps) // 2
    store.insert_many([(t, 0, 0, 0) for t in stamps[:half]])
    for t in stamps[half:]:
        store.insert((t, 0, 0, 0))
    hi = lo + 2500
    assert sorted(r[0] for r in store.range(lo, hi)) == sorted(t for t in stamps if lo < t <= hi)
    store.drop_through(cut)
    assert sorted(r[0] for r in store.range(-1, 10**9)) == sorted(t for t in stamps if t > cut)
    assert len(store) == sum(1 for t in stamps if t > cut)


def test_row_store_across_many_chunks() -> None:
    import random

    rng = random.Random(7)
    stamps = [rng.randint(0, 1_000_000) for _ in range(30_000)]
    store = RowStore()
    store.insert_many([(t, 0, 0, 0) for t in sorted(stamps[:15_000])])  # appended in bulk
    for t in stamps[15_000:]:  # out of order: inserted into the middle, chunks split
        store.insert((t, 0, 0, 0))
    for lo in (0, 123_456, 500_000, 999_000):
        hi = lo + 77_777
        assert [r[0] for r in store.range(lo, hi)] == sorted(t for t in stamps if lo < t <= hi)
    store.drop_through(600_000)
    assert len(store) == sum(1 for t in stamps if t > 600_000)


WIDE = st.one_of(st.integers(-1, 5), st.integers(-(2**63), 2**63 - 1))  # narrow, and beyond 32 bits


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3000), WIDE, WIDE, WIDE), max_size=200),
       st.integers(0, 200))
def test_row_store_keeps_every_value_whole(rows: list[Row], bulk: int) -> None:
    """Durations, codes and customer ids past 32 bits widen their column, in bulk or one by
    one, across chunk splits, and come back as they went in."""
    with patch.object(windows, "_CHUNK", 4):  # chunks split at 8 rows
        store = RowStore()
        store.insert_many(rows[:bulk])
        for row in rows[bulk:]:
            store.insert(row)
        assert sorted(store.range(-1, 10**9)) == sorted(rows)
        store.drop_through(1500)
        assert sorted(store.range(-1, 10**9)) == sorted(r for r in rows if r[0] > 1500)
