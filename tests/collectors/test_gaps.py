"""The gap set against a brute-force model that keeps every id on its own (what the tail did
before), for arbitrary sequences of skips, sightings, settling, expiry and limited re-reads."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from collectors.gaps import ABOVE_ALL, GapSet

SETTLE = 1.0


class Model:
    """One entry per id: which ``add`` it came from, when, and its horizon."""

    def __init__(self, max_ranges: int) -> None:
        self.max_ranges = max_ranges
        self.ids: dict[int, list[Any]] = {}  # id -> [add number, detected, horizon]

    def ranges(self, ids: dict[int, list[Any]] | None = None) -> int:
        """Runs of consecutive ids from the same ``add``: what a range can hold."""
        ids = self.ids if ids is None else ids
        return sum(1 for i, v in ids.items() if i - 1 not in ids or ids[i - 1][0] != v[0])

    def discard(self, seen: Sequence[int]) -> int:
        for k, x in enumerate(seen):
            if x in self.ids:
                after = {i: v for i, v in self.ids.items() if i != x}
                if self.ranges(after) > self.max_ranges:
                    return k
                self.ids = after
        return len(seen)

    def note_horizons(self, now: float, xmax: int) -> None:
        for v in self.ids.values():
            if v[2] is None and now - v[1] >= SETTLE:
                v[2] = xmax

    def expire(self, xmin: int, below: int) -> int:
        gone = [i for i, v in self.ids.items() if v[2] is not None and xmin >= v[2] and i < below]
        for i in gone:
            del self.ids[i]
        return len(gone)


def tracked(gaps: GapSet) -> set[int]:
    return {i for lo, hi in gaps for i in range(lo, hi + 1)}


class GapMachine(RuleBasedStateMachine):
    @initialize(max_ranges=st.integers(1, 8))
    def start(self, max_ranges: int) -> None:
        self.gaps = GapSet(max_ranges)
        self.model = Model(max_ranges)
        self.top = 0  # the tail's cursor: ranges are added above it
        self.adds = 0
        self.now = 0.0
        self.xid = 10  # the next transaction id; xmin <= xmax <= xid
        self.visible: set[int] = set()  # ids whose rows have been committed since
        self.handed_out: list[int] = []

    @rule(skip=st.integers(0, 4), size=st.integers(1, 12))
    def tail_skips(self, skip: int, size: int) -> None:
        lo = self.top + 1 + skip
        added = self.gaps.add(lo, lo + size - 1, self.now)
        assert added == (self.model.ranges() < self.model.max_ranges)
        if added:
            self.adds += 1
            for i in range(lo, lo + size):
                self.model.ids[i] = [self.adds, self.now, None]
        self.top = lo + size  # the row that made the tail skip

    @rule(dt=st.sampled_from([0.0, 0.3, 1.0, 2.5]))
    def time_passes(self, dt: float) -> None:
        self.now += dt

    @rule(data=st.data())
    def rows_seen(self, data: st.DataObject) -> None:
        seen = sorted(data.draw(st.sets(st.integers(0, self.top + 2), max_size=12)))
        taken = self.gaps.discard(seen)
        assert taken == self.model.discard(seen)

    @rule(data=st.data())
    def rows_commit(self, data: st.DataObject) -> None:
        """Some tracked ids get a visible row (a transaction committed)."""
        pending = sorted(self.model.ids)
        if pending:
            self.visible |= set(data.draw(st.lists(st.sampled_from(pending), max_size=15)))

    @rule(ended=st.integers(0, 3), started=st.integers(0, 3))
    def snapshot(self, ended: int, started: int) -> None:
        self.xid += started
        xmax = self.xid
        self.gaps.note_horizons(self.now, xmax, SETTLE)
        self.model.note_horizons(self.now, xmax)
        self.xid += ended

    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        xmin = data.draw(st.integers(0, self.xid))
        below = data.draw(st.one_of(st.just(ABOVE_ALL), st.integers(0, self.top + 2)))
        assert self.gaps.expire(xmin, below) == self.model.expire(xmin, below)

    @rule(budget=st.integers(1, 9), per_query=st.integers(1, 4), queries=st.integers(1, 5))
    def reread(self, budget: int, per_query: int, queries: int) -> None:
        """A re-read with a row budget and a time limit: every visible id is handed out once."""
        left = [queries]

        def fetch(plan: list[tuple[int, int, int]]) -> list[tuple[int]]:
            assert sum(limit for _, _, limit in plan) <= budget and len(plan) <= per_query
            rows: list[tuple[int]] = []
            for lo, hi, limit in plan:
                assert 1 <= limit <= hi - lo + 1
                rows += [(i,) for i in sorted(self.visible) if lo <= i <= hi][:limit]
            left[0] -= 1
            return rows[::-1]  # any order

        def consume(rows: Sequence[Sequence[Any]]) -> None:
            self.handed_out += [r[0] for r in rows]

        before, handed = tracked(self.gaps), len(self.handed_out)
        result = self.gaps.reread(fetch, consume, budget=budget, ranges_per_query=per_query,
                                  more=lambda: left[0] > 0)
        gone = sorted(before - tracked(self.gaps))
        assert sorted(self.handed_out[handed:]) == gone  # what left the set was handed out
        assert self.model.discard(gone) == len(gone)
        # Everything visible below ``covered`` was handed out, so an expiry limited to ids
        # below it can never forget a row that exists.
        assert not {i for i in before & self.visible if i < result.covered} & tracked(self.gaps)
        if result.complete:
            assert result.covered == ABOVE_ALL and not (before & self.visible) & tracked(self.gaps)

    @invariant()
    def same_ids(self) -> None:
        assert tracked(self.gaps) == set(self.model.ids)
        assert self.gaps.ids == len(self.model.ids)
        assert self.gaps.ranges == self.model.ranges() <= self.model.max_ranges

    @invariant()
    def sorted_and_disjoint(self) -> None:
        pairs = list(self.gaps)
        assert all(lo <= hi for lo, hi in pairs)
        assert all(a[1] < b[0] for a, b in itertools.pairwise(pairs))

    @invariant()
    def nothing_handed_out_twice(self) -> None:
        assert len(self.handed_out) == len(set(self.handed_out))
        assert set(self.handed_out) <= self.visible


GapMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_gap_set_matches_the_model = GapMachine.TestCase


# --- plain cases -------------------------------------------------------------------------------


def test_a_million_ids_in_flight_are_one_range_each_interruption() -> None:
    gaps = GapSet(10)
    gaps.add(1, 400_000, 0.0)
    gaps.add(400_002, 1_000_001, 0.0)  # another writer committed id 400_001 in between
    assert (gaps.ranges, gaps.ids) == (2, 1_000_000)


def test_limit_refuses_a_new_range_and_a_split() -> None:
    gaps = GapSet(2)
    assert gaps.add(1, 10, 0.0) and gaps.add(20, 30, 0.0)
    assert not gaps.add(40, 41, 0.0)
    assert gaps.discard([1, 5, 30]) == 1  # 1 trims; 5 would split into a third range
    assert list(gaps) == [(2, 10), (20, 30)]
    assert gaps.discard([2, 10, 20]) == 3  # trimming ends never needs a new range


def test_generations_settle_and_expire_by_horizon() -> None:
    gaps = GapSet(10)
    gaps.add(1, 5, detected=0.0)
    gaps.add(8, 9, detected=0.9)
    gaps.note_horizons(now=1.0, xmax=100, settle_seconds=SETTLE)  # only the first has settled
    assert gaps.expire(xmin=99) == 0
    assert gaps.expire(xmin=100, below=4) == 3  # ids 1..3: looked at after the horizon
    assert list(gaps) == [(4, 5), (8, 9)]
    gaps.note_horizons(now=2.0, xmax=120, settle_seconds=SETTLE)
    assert gaps.expire(xmin=119) == 2
    assert gaps.expire(xmin=120) == 2
    assert (gaps.ranges, gaps.ids) == (0, 0)


def test_ranges_must_be_added_in_id_order() -> None:
    gaps = GapSet(10)
    gaps.add(10, 20, 0.0)
    with pytest.raises(ValueError):
        gaps.add(15, 30, 0.0)
    with pytest.raises(ValueError):
        gaps.add(40, 39, 0.0)


def test_huge_ranges_cost_nothing() -> None:
    gaps = GapSet(10)
    gaps.add(1, 2**63 - 2, 0.0)  # a row inserted with the largest bigint id
    assert gaps.ids == 2**63 - 2
    assert gaps.plan(0, 50_000, 100) == [(1, 2**63 - 2, 50_000)]
    assert gaps.discard([7]) == 1 and list(gaps) == [(1, 6), (8, 2**63 - 2)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 30)), min_size=1, max_size=20),
       st.integers(0, 400), st.integers(1, 200), st.integers(1, 8))
def test_plan_covers_ranges_in_order_within_budget(spans: list[tuple[int, int]], start: int,
                                                   budget: int, per_query: int) -> None:
    gaps = GapSet(100)
    top = 0
    for skip, size in spans:
        gaps.add(top + 1 + skip, top + skip + size, 0.0)
        top += skip + size + 1
    plan = gaps.plan(start, budget, per_query)
    assert sum(limit for _, _, limit in plan) <= budget and len(plan) <= per_query
    wanted = [(max(lo, start), hi) for lo, hi in gaps if hi >= start][:len(plan)]
    assert [(lo, hi) for lo, hi, _ in plan] == wanted
    # Every range but the last gets one row per id; the last gets what is left.
    assert all(limit == hi - lo + 1 for lo, hi, limit in plan[:-1])
