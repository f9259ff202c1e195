"""Label values from data: which are exported as they are, and how many get a place."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.labels import OTHER, LabelSet, label_value_ok


@pytest.mark.parametrize(("value", "ok"), [
    ("created", True), ("кириллица", True), ('quote"back\\slash', True), ("a b", True),
    ("x" * 100, True), ("x" * 101, False), ("", False), (None, False), ("\x01", False),
    ("tab\there", False), ("line\nbreak", False), ("\x1b[31m", False), ("zero\u200bwidth", False),
    ("no\u00a0break", False), ("\u2028", False), (42, False),
])
def test_label_value_ok(value: object, ok: bool) -> None:
    assert label_value_ok(value) is ok


def printable(value: str) -> bool:
    return all(unicodedata.category(c)[0] not in "CZ" or c == " " for c in value)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=120), st.sampled_from(["created", ""])),
                max_size=40), st.integers(1, 5))
def test_label_set_gives_each_exportable_value_a_place_up_to_the_cap(values: list[str | None],
                                                                     cap: int) -> None:
    labels = LabelSet(["created"], cap)
    placed: dict[str, int] = {}
    for v in values:
        code = labels.code(v)
        assert code == labels.code(v)  # stable
        assert labels.canonical(v) == labels.values[code]
        exportable = v is not None and 1 <= len(v) <= 100 and printable(v)
        if exportable and (v in placed or v in ("created", OTHER) or len(placed) < cap):
            assert labels.values[code] == v
            if v not in ("created", OTHER):
                placed[v] = code
        else:
            assert code == labels.other and labels.canonical(v) == OTHER
    assert len(labels.values) == 2 + len(placed) <= 2 + cap
