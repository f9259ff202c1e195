"""SortedInts against a plain sorted list, through random adds, bulk updates and removals."""

from __future__ import annotations

from bisect import insort

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors import sorted_ints
from collectors.sorted_ints import SortedInts

INT64 = st.integers(-(2**63), 2**63 - 1)
SMALL = st.integers(-5, 5)  # many duplicates


@pytest.fixture(autouse=True, params=[4, 0], ids=["merge-many", "insert-few"])
def small_chunks(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Chunks of 4 (split at 8), so a few dozen values exercise splits and emptied chunks; new
    values are merged into a chunk when they are more than 1/16 of it (every time, at this
    size) or, the second time, only when more than all of it (else inserted one by one)."""
    monkeypatch.setattr(sorted_ints, "_LOAD", 4)
    monkeypatch.setattr(sorted_ints, "_MERGE_SHIFT", request.param)


Op = tuple[str, list[int]]
OPS = st.lists(st.one_of(
    st.tuples(st.just("update"), st.lists(st.one_of(SMALL, INT64), max_size=30)),
    st.tuples(st.just("add"), st.lists(st.one_of(SMALL, INT64), min_size=1, max_size=1)),
    st.tuples(st.just("remove"), st.lists(st.integers(0, 10**6), min_size=1, max_size=8)),
    st.tuples(st.just("remove_many"), st.lists(st.integers(0, 10**6), max_size=30)),
    st.tuples(st.just("remove_missing"), st.lists(SMALL, min_size=1, max_size=1)),
), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(SMALL, INT64), max_size=30), OPS)
def test_matches_a_sorted_list(initial: list[int], ops: list[Op]) -> None:
    model = sorted(initial)
    got = SortedInts(initial)
    for op, values in ops:
        if op == "update":
            got.update(values)
            model = sorted(model + values)
        elif op == "add":  # one value: the insert path, not the merge
            got.update(values)
            insort(model, values[0])
        elif op == "remove":  # values pick existing elements by position
            for pick in values:
                if model:
                    value = model[pick % len(model)]
                    got.remove_many([value])
                    model.remove(value)
        elif op == "remove_many":  # values pick distinct positions, removed all at once
            picked = sorted(model[i] for i in {pick % len(model) for pick in values}) if model \
                else []
            got.remove_many(picked)
            for value in picked:
                model.remove(value)
        elif values[0] not in model:
            with pytest.raises(ValueError):
                got.remove_many(values)
        assert len(got) == len(model)
        assert list(got) == model
        assert [got[i] for i in range(len(model))] == model
        if model:
            assert got[-1] == model[-1]
    with pytest.raises(IndexError):
        got[len(model)]


@given(st.lists(SMALL, max_size=30), st.lists(SMALL, min_size=1, max_size=10))
def test_removing_many_stops_at_the_first_missing_value(initial: list[int],
                                                       values: list[int]) -> None:
    """Every value is removed, one occurrence each, up to the first that is not there."""
    got, model = SortedInts(initial), sorted(initial)
    values.sort()
    for value in values:
        if value not in model:
            with pytest.raises(ValueError):
                got.remove_many(values)
            break
        model.remove(value)
    else:
        got.remove_many(values)
    assert list(got) == model and len(got) == len(model)


def test_a_value_outside_64_bits_is_refused() -> None:
    got = SortedInts([1, 2])
    for values in ([2**63], [-(2**63) - 1, 0], [0, 2**63]):
        with pytest.raises(OverflowError):
            got.update(values)
        assert list(got) == [1, 2] and len(got) == 2  # nothing of it went in
    with pytest.raises(OverflowError):
        SortedInts([2**63])
