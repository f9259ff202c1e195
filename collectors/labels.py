"""Label values taken from data: each gets a small integer code, and the set is bounded.

A value read from a table becomes a label only if a dashboard or an alert message can show it
(:func:`label_value_ok`), and only up to a cap per label: past it, and for every value that is
not fit, the label is ``other``. So a writer that logs junk cannot grow the series count.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_LABEL_LENGTH = 100
OTHER = "other"


def label_value_ok(value: object) -> bool:
    """A value we export as a label as is: 1 to 100 printable characters (no control, format
    or separator characters, which would garble a dashboard or an alert message)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_LABEL_LENGTH and value.isprintable()


class LabelSet:
    """Interns label values: known ones first, then up to ``cap`` unknown ones, then ``other``.

    A value that is not :func:`label_value_ok` is ``other`` too, and never takes a place."""

    def __init__(self, known: Sequence[str], cap: int) -> None:
        self.values: list[str] = [*known, OTHER]
        self._index = {v: i for i, v in enumerate(self.values)}
        self.other = self._index[OTHER]
        self._cap = cap
        self._unknown = 0
        self.known_count = len(known)

    def code(self, value: str | None) -> int:
        i = self._index.get(value) if value is not None else None
        if i is not None:
            return i
        if self._unknown >= self._cap or not label_value_ok(value):
            return self.other
        assert value is not None
        self._unknown += 1
        self.values.append(value)
        self._index[value] = len(self.values) - 1
        return len(self.values) - 1

    def canonical(self, value: str | None) -> str:
        """The label ``value`` is exported under: itself, or ``other``."""
        return self.values[self.code(value)]
