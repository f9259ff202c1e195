"""A sorted multiset of 64-bit ints in packed arrays: the windows' durations, 8 bytes each.

The exact window percentiles need every duration of a window, sorted, with rank access. A
``SortedList`` of Python ints costs a pointer and an int object a value (about 36 bytes); at a
million rows in the 24h window that was 36 MB of the exporter's RSS. Here the values live in
sorted ``array('q')`` chunks, as ``sortedcontainers`` keeps its lists, so a value is 8 bytes.
Only what the window statistics ask for is offered: add, remove, length and the k-th smallest.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator
from itertools import accumulate

_LOAD = 2048  # a chunk is split at twice this; inserting moves at most that many values


class SortedInts:
    """Ints (``-2**63 <= v < 2**63``) kept sorted; duplicates allowed."""

    __slots__ = ("_chunks", "_ends", "_len", "_maxes")

    def __init__(self, values: Iterable[int] = ()) -> None:
        self._chunks: list[array[int]] = []
        self._maxes: list[int] = []  # the last (largest) value of each chunk
        self._ends: list[int] | None = None  # cumulative chunk lengths, for rank access
        self._len = 0
        self.update(values)

    def __len__(self) -> int:
        return self._len

    def update(self, values: Iterable[int]) -> None:
        """Add every value of ``values``."""
        new = sorted(values)
        if not new:
            return
        self._ends = None
        if not self._chunks:
            for start in range(0, len(new), _LOAD):
                chunk = array("q", new[start : start + _LOAD])
                self._chunks.append(chunk)
                self._maxes.append(chunk[-1])
            self._len = len(new)
            return
        for value in new:
            self._add(value)

    def add(self, value: int) -> None:
        self._ends = None
        self._add(value)

    def _add(self, value: int) -> None:
        if not self._chunks:
            self._chunks.append(array("q"))
            self._maxes.append(value)
        k = bisect_left(self._maxes, value)
        if k == len(self._maxes):  # beyond every value: the last chunk grows
            k -= 1
            self._chunks[k].append(value)
            self._maxes[k] = value
        else:
            insort(self._chunks[k], value)
        self._len += 1
        chunk = self._chunks[k]
        if len(chunk) > 2 * _LOAD:
            tail = chunk[_LOAD:]
            del chunk[_LOAD:]
            self._chunks.insert(k + 1, tail)
            self._maxes[k] = chunk[-1]
            self._maxes.insert(k + 1, tail[-1])

    def remove(self, value: int) -> None:
        """Remove one occurrence of ``value``; ``ValueError`` if there is none."""
        k = bisect_left(self._maxes, value)
        if k == len(self._maxes):
            raise ValueError(f"{value} not in SortedInts")
        chunk = self._chunks[k]
        i = bisect_left(chunk, value)
        if chunk[i] != value:
            raise ValueError(f"{value} not in SortedInts")
        del chunk[i]
        self._len -= 1
        self._ends = None
        if not chunk:
            del self._chunks[k]
            del self._maxes[k]
        elif i == len(chunk):
            self._maxes[k] = chunk[-1]

    def __getitem__(self, index: int) -> int:
        """The ``index``-th smallest value (0-based; negative counts from the end)."""
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError("SortedInts index out of range")
        if self._ends is None:
            self._ends = list(accumulate(map(len, self._chunks)))
        k = bisect_right(self._ends, index)
        return self._chunks[k][index - (self._ends[k - 1] if k else 0)]

    def __iter__(self) -> Iterator[int]:
        for chunk in self._chunks:
            yield from chunk
