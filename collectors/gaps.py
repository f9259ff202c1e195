"""Ids the sync-log tail skipped and has not seen yet, kept as ranges: memory is O(ranges).

Why ranges: one transaction inserting a million rows while other writers commit leaves a million
invisible ids below the tail's cursor. As ranges they are a few hundred entries (one per commit
of another writer in between); one by one they were hundreds of megabytes.

Every range remembers when it was found (``detected``, monotonic seconds) and, once a settle
period has passed, the ``xmax`` of a snapshot taken then (its *horizon*). When a later
snapshot's ``xmin`` reaches the horizon, no transaction that could still insert those ids is
running: they were rolled back (or deleted before we read them) and are forgotten. Ranges found
at the same moment share that state (a *generation*), so settling costs O(generations).

Re-reading goes through the primary key by ranges with a row limit per range, in id order, and
never asks for more than a budget of rows per query: a million-row commit is read over as many
queries (and scrapes) as it needs, and an id leaves the set the moment its row is handed out,
so no row is ever handed out twice.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

BELOW_ALL = -(2**63)
ABOVE_ALL = 2**63  # one more than the largest bigint: "every id is covered"

Plan = list[tuple[int, int, int]]  # (first id, last id, row limit) per range, in id order
RowT = TypeVar("RowT", bound=Sequence[Any])  # a row whose first field is its id


@dataclass
class _Generation:
    detected: float
    horizon: int | None = None
    ranges: int = 0


class Reread(NamedTuple):
    """How a re-read ended: every id below ``covered`` was looked at after it started."""

    covered: int
    complete: bool  # every range was looked at
    at_limit: bool  # stopped because handing out more rows would need more than max_ranges


class GapSet:
    """Disjoint ranges of ids, sorted, at most ``max_ranges`` of them."""

    def __init__(self, max_ranges: int) -> None:
        self.max_ranges = max_ranges
        self._lo = array("q")
        self._hi = array("q")
        self._gen = array("q")
        self._gens: dict[int, _Generation] = {}
        self._next_gen = 0
        self.ids = 0  # how many ids the ranges hold

    @property
    def ranges(self) -> int:
        return len(self._lo)

    def full(self) -> bool:
        return len(self._lo) >= self.max_ranges

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self._lo, self._hi, strict=True)

    def clear(self) -> None:
        del self._lo[:], self._hi[:], self._gen[:]
        self._gens.clear()
        self.ids = 0

    # --- changes ---------------------------------------------------------------------------

    def add(self, lo: int, hi: int, detected: float) -> bool:
        """Track ids ``lo..hi``, above every tracked id. False (nothing tracked) at the limit."""
        if lo > hi or (self._hi and lo <= self._hi[-1]):
            raise ValueError(f"range {lo}..{hi} is empty or not above the tracked ids")
        if self.full():
            return False
        gen_id = self._generation(detected)
        self._lo.append(lo)
        self._hi.append(hi)
        self._gen.append(gen_id)
        self._gens[gen_id].ranges += 1
        self.ids += hi - lo + 1
        return True

    def _generation(self, detected: float) -> int:
        last = self._gens.get(self._next_gen - 1)
        if last is not None and last.detected == detected and last.horizon is None:
            return self._next_gen - 1
        self._gens[self._next_gen] = _Generation(detected)
        self._next_gen += 1
        return self._next_gen - 1

    def discard(self, ids: Sequence[int]) -> int:
        """Forget ``ids`` (ascending, unique): their rows were seen. Returns how many of them,
        from the first, were taken; fewer than all only when taking the next one would split a
        range past ``max_ranges``. Ids that are not tracked are taken and change nothing."""
        if not ids:
            return 0
        lo, hi, gen = self._lo, self._hi, self._gen
        n = len(lo)
        first = max(0, bisect_right(lo, ids[0]) - 1)
        new_lo, new_hi, new_gen = array("q"), array("q"), array("q")
        ranges = n
        k, r = 0, first
        stopped = False
        while r < n and k < len(ids) and not stopped:
            a, b, g = lo[r], hi[r], gen[r]
            while k < len(ids) and ids[k] < a:
                k += 1  # between ranges: not tracked
            while k < len(ids) and ids[k] <= b:
                x = ids[k]
                if x == a:
                    a += 1
                elif x == b:
                    b -= 1
                else:
                    if ranges + 1 > self.max_ranges:
                        stopped = True
                        break
                    new_lo.append(a)
                    new_hi.append(x - 1)
                    new_gen.append(g)
                    self._gens[g].ranges += 1
                    ranges += 1
                    a = x + 1
                self.ids -= 1
                k += 1
            if a <= b:
                new_lo.append(a)
                new_hi.append(b)
                new_gen.append(g)
            else:
                ranges -= 1
                self._drop_from(g, 1)
            r += 1
        lo[first:r] = new_lo
        hi[first:r] = new_hi
        gen[first:r] = new_gen
        return k if stopped else len(ids)

    def _drop_from(self, gen_id: int, ranges: int) -> None:
        g = self._gens[gen_id]
        g.ranges -= ranges
        if not g.ranges:
            del self._gens[gen_id]

    # --- settling --------------------------------------------------------------------------

    def note_horizons(self, now: float, xmax: int, settle_seconds: float) -> None:
        """Give every generation found at least ``settle_seconds`` ago the horizon ``xmax``.

        The wait covers a writer that took an id just before we looked and gets its
        transaction id just after: by then it has one, below any later snapshot's xmax."""
        for g in self._gens.values():
            if g.horizon is None and now - g.detected >= settle_seconds:
                g.horizon = xmax

    def expire(self, xmin: int, below: int = ABOVE_ALL) -> int:
        """Forget the ids under ``below`` of every generation whose horizon ``xmin`` reached:
        their transactions have all ended, so a row for them that we have not seen after
        they ended does not exist. Returns how many ids were forgotten."""
        done = {i for i, g in self._gens.items() if g.horizon is not None and xmin >= g.horizon}
        if not done:
            return 0
        lo, hi, gen = self._lo, self._hi, self._gen
        keep_lo, keep_hi, keep_gen = array("q"), array("q"), array("q")
        expired = 0
        for a, b, g in zip(lo, hi, gen, strict=True):
            if g in done and a < below:
                if b < below:
                    expired += b - a + 1
                    self._drop_from(g, 1)
                    continue
                expired += below - a
                a = below
            keep_lo.append(a)
            keep_hi.append(b)
            keep_gen.append(g)
        self._lo, self._hi, self._gen = keep_lo, keep_hi, keep_gen
        self.ids -= expired
        return expired

    # --- reading again ---------------------------------------------------------------------

    def plan(self, start: int, budget: int, max_ranges: int) -> Plan:
        """The ranges to read next from id ``start`` on, with row limits summing to at most
        ``budget``: each range may hold a row per id, so it gets its size, and the last one
        what is left of the budget."""
        lo, hi = self._lo, self._hi
        r = bisect_left(hi, start)
        out: Plan = []
        while r < len(lo) and budget > 0 and len(out) < max_ranges:
            a, b = max(lo[r], start), hi[r]
            limit = min(b - a + 1, budget)
            out.append((a, b, limit))
            budget -= limit
            r += 1
        return out

    def reread(
        self,
        fetch: Callable[[Plan], Sequence[RowT]],
        consume: Callable[[Sequence[RowT]], None],
        *,
        budget: int,
        ranges_per_query: int,
        more: Callable[[], bool],
    ) -> Reread:
        """Read every range once, in id order, through ``fetch`` (rows whose first field is
        the id, at most the plan's limit per range, lowest ids first); each row goes to
        ``consume`` exactly once, as its id leaves the set. ``more()`` says whether there is
        time for another query."""
        start, first = BELOW_ALL, True
        while True:
            plan = self.plan(start, budget, ranges_per_query)
            if not plan:
                return Reread(ABOVE_ALL, True, False)
            if not first and not more():
                return Reread(start, False, False)
            first = False
            rows = sorted(fetch(plan), key=lambda row: int(row[0]))
            ids = [int(row[0]) for row in rows]
            taken = self.discard(ids)
            consume(rows[:taken])
            if taken < len(ids):
                return Reread(ids[taken], False, True)
            a, b, limit = plan[-1]
            in_last = len(ids) - bisect_left(ids, a)
            # A range whose limit the budget cut, and which filled that limit, may hold more
            # rows above the last one it gave: the next query starts there.
            start = ids[-1] + 1 if in_last == limit < b - a + 1 else b + 1
