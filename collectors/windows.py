"""Sliding time windows over the sync log, kept in memory and updated incrementally.

Rows live in a compact columnar store sorted by ``created_at`` (microseconds). When time moves
from ``t0`` to ``t1`` a window of length ``w`` loses the rows in ``(t0 - w, t1 - w]`` and gains the
rows in ``(t0, t1]``; a row that arrives late (an out-of-order commit) enters every window that
already covers its timestamp. So a scrape touches only the rows that crossed a boundary since the
last one, never the whole window. Consumers see batches of :data:`Row` and keep their own
aggregates.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import Protocol

Row = tuple[int, int, int, int]
"""One sync-log row as the windows keep it: created_at (Unix µs), label code (:func:`pack`),
duration_ms and customer_id (``-1`` for NULL). A plain tuple: millions of them are made."""


STATUS_MASK = 0xFFFF
"""``code & STATUS_MASK`` is the status code of a label code."""


def pack(op: int, status: int) -> int:
    """The label code of a row: its operation type and status codes in one int."""
    return (op << 16) | status


def unpack(code: int) -> tuple[int, int]:
    """The operation type and status codes a label code was packed from."""
    return code >> 16, code & STATUS_MASK


_TS = itemgetter(0)  # rows are ordered by time alone
_CHUNK = 4096
_NARROW = "i"  # 32-bit C int; a column holding a value beyond it is widened to "q"


class WindowConsumer(Protocol):
    """Keeps aggregates of the windows' rows. New rows mostly enter every window at once: they
    come as one call for all those windows, so a consumer aggregates them once."""

    def enter(self, windows: Sequence[int], rows: Sequence[Row]) -> None: ...

    def leave(self, windows: Sequence[int], rows: Sequence[Row]) -> None: ...

    def reset(self) -> None: ...


class _Chunk:
    """Up to ``2 * _CHUNK`` rows as parallel columns. Timestamps take 64 bits; the label code,
    duration (an ``integer`` column) and customer id (``bigint``, but a shop's ids are far
    below 2**31) take 32 until a value does not fit, when that column of this chunk alone is
    widened to 64: 20 bytes a row instead of 32, and no value is ever cut."""

    __slots__ = ("code", "cust", "dur", "ts")

    def __init__(self) -> None:
        self.ts = array("q")
        self.code = array(_NARROW)
        self.dur = array(_NARROW)
        self.cust = array(_NARROW)

    def _widened(self, name: str) -> array[int]:
        col: array[int] = array("q", getattr(self, name))
        setattr(self, name, col)
        return col

    def insert(self, i: int, row: Row) -> None:
        self.ts.insert(i, row[0])
        self._insert("code", i, row[1])
        self._insert("dur", i, row[2])
        self._insert("cust", i, row[3])

    def _insert(self, name: str, i: int, value: int) -> None:
        try:
            getattr(self, name).insert(i, value)  # checks the value before it moves anything
        except OverflowError:
            self._widened(name).insert(i, value)

    def extend(self, name: str, values: Sequence[int]) -> None:
        """Append ``values`` to column ``name``, widening it first if one does not fit."""
        col = getattr(self, name)
        try:
            more = array(col.typecode, values)
        except OverflowError:
            col, more = self._widened(name), array("q", values)
        col.extend(more)

    def split(self) -> _Chunk:
        half = len(self.ts) // 2
        tail = _Chunk()
        for name in self.__slots__:
            col = getattr(self, name)
            setattr(tail, name, col[half:])  # a slice keeps the column's width
            del col[half:]
        return tail

    def drop_prefix(self, n: int) -> None:
        for name in self.__slots__:
            del getattr(self, name)[:n]

    def rows(self, lo: int, hi: int) -> Iterator[Row]:
        return zip(self.ts[lo:hi], self.code[lo:hi], self.dur[lo:hi], self.cust[lo:hi], strict=True)


class RowStore:
    """Rows sorted by timestamp in chunks of parallel arrays (20 bytes a row, see _Chunk)."""

    def __init__(self) -> None:
        self._chunks: list[_Chunk] = []
        self._firsts: list[int] = []  # first timestamp of each chunk, for bisect

    def __len__(self) -> int:
        return sum(len(c.ts) for c in self._chunks)

    def insert(self, row: Row) -> None:
        ts = row[0]
        if not self._chunks:
            self._chunks.append(_Chunk())
            self._firsts.append(ts)
        k = max(0, bisect_right(self._firsts, ts) - 1)
        chunk = self._chunks[k]
        if chunk.ts and ts >= chunk.ts[-1]:
            chunk.insert(len(chunk.ts), row)
        else:
            chunk.insert(bisect_right(chunk.ts, ts), row)
        self._firsts[k] = chunk.ts[0]
        if len(chunk.ts) > 2 * _CHUNK:
            tail = chunk.split()
            self._chunks.insert(k + 1, tail)
            self._firsts.insert(k + 1, tail.ts[0])

    def insert_many(self, rows: Sequence[Row]) -> None:
        """Insert a batch; rows at or after the newest stored one are appended column-wise."""
        ordered = sorted(rows, key=_TS)
        self.insert_sorted(ordered, [r[0] for r in ordered])

    def insert_sorted(self, ordered: Sequence[Row], stamps: Sequence[int]) -> None:
        """:meth:`insert_many` of rows already sorted by time, with their times."""
        if not ordered:
            return
        tail = self._chunks[-1] if self._chunks else None
        if tail is None or not tail.ts:
            tail = _Chunk()
            self._chunks[-1:] = [tail]
            self._firsts[-1:] = [ordered[0][0]]
        # Rows older than the newest stored one go in one by one; the rest are appended.
        split = bisect_left(stamps, tail.ts[-1]) if tail.ts else 0
        for row in ordered[:split]:
            self.insert(row)
        ordered, stamps = ordered[split:], stamps[split:]
        tail = self._chunks[-1]
        for start in range(0, len(ordered), _CHUNK):
            if len(tail.ts) >= 2 * _CHUNK:
                tail = _Chunk()
                self._chunks.append(tail)
                self._firsts.append(ordered[start][0])
            part = ordered[start : start + _CHUNK]
            if not tail.ts:
                self._firsts[-1] = part[0][0]
            tail.ts.extend(array("q", stamps[start : start + _CHUNK]))
            tail.extend("code", [r[1] for r in part])
            tail.extend("dur", [r[2] for r in part])
            tail.extend("cust", [r[3] for r in part])

    def range(self, lo: int, hi: int) -> list[Row]:
        """Rows with ``lo < ts <= hi``."""
        return [row for batch in self.batches(lo, hi) for row in batch]

    def batches(self, lo: int, hi: int) -> Iterator[list[Row]]:
        """Rows with ``lo < ts <= hi``, a chunk at a time, so a whole window is never a list."""
        if hi <= lo or not self._chunks:
            return
        k = max(0, bisect_right(self._firsts, lo) - 1)
        while k < len(self._chunks) and self._firsts[k] <= hi:
            chunk = self._chunks[k]
            a = bisect_right(chunk.ts, lo)
            b = bisect_right(chunk.ts, hi)
            if a < b:
                yield list(chunk.rows(a, b))
            k += 1

    def drop_through(self, ts: int) -> None:
        """Forget rows with timestamp ``<= ts``: no window will ever hold them again."""
        while self._chunks and self._chunks[0].ts and self._chunks[0].ts[-1] <= ts:
            self._chunks.pop(0)
            self._firsts.pop(0)
        if self._chunks:
            head = self._chunks[0]
            n = bisect_right(head.ts, ts)
            if n:
                head.drop_prefix(n)
                self._firsts[0] = head.ts[0]

    def clear(self) -> None:
        self._chunks.clear()
        self._firsts.clear()


class SlidingWindows:
    """Windows ``(now - w, now]`` for several ``w`` over one row store, fed to consumers."""

    def __init__(self, lengths_us: Sequence[int], consumers: Sequence[WindowConsumer] = ()) -> None:
        self.lengths = list(lengths_us)
        self.longest = max(self.lengths)
        self.consumers = list(consumers)
        self.store = RowStore()
        self.now: int | None = None

    def add(self, rows: Sequence[Row]) -> None:
        """New rows (any timestamps). Rows already inside a window enter it at once."""
        now = self.now
        if now is None:
            self.store.insert_many(rows)
            return
        ordered = sorted(rows, key=_TS)
        stamps = [r[0] for r in ordered]
        first = bisect_right(stamps, now - self.longest)  # rows before it are in no window
        ordered, stamps = ordered[first:], stamps[first:]
        if not ordered:
            return
        self.store.insert_sorted(ordered, stamps)
        hi = bisect_right(stamps, now)  # rows after now enter as time reaches them
        windows_from: dict[int, list[int]] = {}  # first row inside -> the windows it starts
        for i, length in enumerate(self.lengths):
            windows_from.setdefault(bisect_right(stamps, now - length, 0, hi), []).append(i)
        for lo, entered in windows_from.items():
            if lo < hi:
                inside = ordered[lo:hi]
                for c in self.consumers:
                    c.enter(entered, inside)

    def advance(self, now: int) -> None:
        """Move every window to end at ``now``; a clock that steps back waits."""
        last = self.now
        if last is not None and now <= last:
            return
        for i, length in enumerate(self.lengths):
            if last is None:
                entering = self.store.batches(now - length, now)
            else:
                for leaving in self.store.batches(last - length, min(last, now - length)):
                    for c in self.consumers:
                        c.leave((i,), leaving)
                entering = self.store.batches(max(last, now - length), now)
            for batch in entering:
                for c in self.consumers:
                    c.enter((i,), batch)
        self.now = now
        self.store.drop_through(now - self.longest)

    def reset(self) -> None:
        self.store.clear()
        self.now = None
        for c in self.consumers:
            c.reset()
