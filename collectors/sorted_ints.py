"""A sorted multiset of 64-bit ints in packed arrays: the windows' durations, 8 bytes each.

The exact window percentiles need every duration of a window, sorted, with rank access. A
``SortedList`` of Python ints costs a pointer and an int object a value (about 36 bytes); at a
million rows in the 24h window that was 36 MB of the exporter's RSS. Here the values live in
sorted ``array('q')`` chunks, as ``sortedcontainers`` keeps its lists, so a value is 8 bytes.
Only what the window statistics ask for is offered: adding and removing many values at a time
(a scrape adds and removes a window's new and old durations in bulk), length and the k-th
smallest.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate

_LOAD = 2048  # a chunk is split at twice this; inserting moves at most that many values
_MERGE_SHIFT = 4  # more new values than 1/16 of a chunk's are merged in, not inserted one by one
_MIN, _MAX = -(2**63), 2**63 - 1


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
        """Add every value of ``values``: sorted, then a run at a time into the chunk it falls
        in, one search of the chunks per run instead of one per value."""
        new = sorted(values)
        if not new:
            return
        if new[0] < _MIN or new[-1] > _MAX:  # refused before anything changes
            raise OverflowError("SortedInts holds 64-bit signed ints")
        self._ends = None
        chunks, maxes = self._chunks, self._maxes
        if not chunks:
            chunks.append(array("q"))
            maxes.append(new[0])
        i, n = 0, len(new)
        while i < n:
            k = bisect_left(maxes, new[i])
            if k == len(maxes):  # beyond every value: the last chunk grows
                chunks[-1].extend(array("q", new[i:]))
                self._len += n - i
                self._fit(k - 1)
                return
            # Every value up to this chunk's largest goes into it (which stays its largest).
            j = bisect_right(new, maxes[k], i)
            chunk = chunks[k]
            if j == i + 1:
                insort(chunk, new[i])
            elif (j - i) << _MERGE_SHIFT > len(chunk):  # many: one merge (of two runs, in C)
                chunk = chunks[k] = array("q", sorted(chunk + array("q", new[i:j])))
            else:
                for value in new[i:j]:
                    insort(chunk, value)
            self._len += j - i
            if len(chunk) > 2 * _LOAD:
                self._fit(k)
            i = j

    def _fit(self, k: int) -> None:
        """Chunk ``k``'s largest value noted, and the chunk split if it grew past ``2 * _LOAD``."""
        chunk = self._chunks[k]
        if len(chunk) <= 2 * _LOAD:
            self._maxes[k] = chunk[-1]
            return
        pieces = [chunk[start : start + _LOAD] for start in range(0, len(chunk), _LOAD)]
        self._chunks[k : k + 1] = pieces
        self._maxes[k : k + 1] = [piece[-1] for piece in pieces]

    def remove_many(self, values: Sequence[int]) -> None:
        """Remove one occurrence of each of ``values`` (sorted ascending), a run at a time per
        chunk; ``ValueError`` at the first that is not there, the ones before it removed."""
        self._ends = None
        chunks, maxes = self._chunks, self._maxes
        i, n = 0, len(values)
        while i < n:
            k = bisect_left(maxes, values[i])
            if k == len(maxes):
                raise ValueError(f"{values[i]} not in SortedInts")
            chunk, top, start = chunks[k], maxes[k], i
            while i < n and values[i] <= top:
                at = bisect_left(chunk, values[i])
                if at == len(chunk) or chunk[at] != values[i]:
                    break
                del chunk[at]
                i += 1
            self._len -= i - start
            if not chunk:
                del chunks[k]
                del maxes[k]
            else:
                maxes[k] = chunk[-1]
            # Not here although within this chunk's range: not anywhere (a value equal to the
            # last one left in a chunk can be first in the next, so that one is looked for there).
            if i < n and values[i] <= top and chunk and values[i] <= chunk[-1]:
                raise ValueError(f"{values[i]} not in SortedInts")

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
