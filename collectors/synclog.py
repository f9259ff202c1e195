"""Sync operations from ``common_customersynclog``: counts, durations, exact window percentiles.

Everything is derived from rows read once by the shared source
(:class:`~collectors.synclog_source.SyncLogSource`); a scrape only reads the rows that arrived
since the previous one. Percentiles are exact, with the definition of PostgreSQL's
``percentile_cont`` (linear interpolation between closest ranks).

The aggregates count their changes (``version``), and the families are built again only from
what changed since the last scrape: the cumulative ones when rows arrived, a window's share of
the recent ones when rows entered or left that window. On a quiet table most scrapes build
nothing but the tail's own numbers, and hand the exposition the very same families
(:mod:`exporter.exposition`), which it then need not encode again.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from operator import itemgetter
from typing import NamedTuple

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample

from collectors.labels import MAX_LABEL_LENGTH
from collectors.logrows import UNUSABLE_REASONS, Group, LogSubscriber
from collectors.sorted_ints import SortedInts
from collectors.synclog_source import SyncLogSource
from collectors.windows import Row, WindowConsumer, pack, unpack
from exporter.collector import Deadline
from exporter.config import SyncLogConfig

PERCENTILES = (("50", 0.50), ("95", 0.95), ("99", 0.99))


def percentile_cont(values: Sequence[int] | SortedInts, fraction: float) -> float:
    """PostgreSQL ``percentile_cont`` over an already sorted, non-empty sequence."""
    pos = fraction * (len(values) - 1)
    lo = math.floor(pos)
    hi = math.ceil(pos)
    first = float(values[lo])
    if hi == lo:
        return first
    return first + (float(values[hi]) - first) * (pos - lo)


class SyncCounters(LogSubscriber):
    """Cumulative numbers: rows by type and status, the duration histogram, newest rows."""

    def __init__(self, n_buckets: int) -> None:
        self.n_buckets = n_buckets
        self.version = 0  # changes whenever the numbers may have
        self.reset()

    def reset(self) -> None:
        self.version += 1
        self.operations: dict[tuple[int, int], int] = defaultdict(int)
        self.newest: dict[tuple[int, int], int] = {}
        self.buckets: dict[int, list[int]] = {}
        self.duration_sum_ms: dict[int, int] = defaultdict(int)

    def on_groups(self, groups: Sequence[Group]) -> None:
        if groups:  # a poll that read nothing leaves the numbers, and the version, as they are
            self.version += 1
        for g in groups:
            key = (g.op, g.status)
            self.operations[key] += g.rows
            if g.newest_us is not None and g.newest_us > self.newest.get(key, -(2**63)):
                self.newest[key] = g.newest_us
            if g.bucket is not None:
                counts = self.buckets.get(g.op)
                if counts is None:
                    counts = self.buckets[g.op] = [0] * (self.n_buckets + 1)
                counts[g.bucket] += g.rows
                self.duration_sum_ms[g.op] += g.duration_sum_ms


class SyncWindowStats(WindowConsumer):
    """Per window: rows by type and status, and every duration by type, kept sorted."""

    def __init__(self, n_windows: int) -> None:
        self.n_windows = n_windows
        self.versions = [0] * n_windows  # per window, changes whenever its numbers may have
        self.reset()

    def reset(self) -> None:
        start = max(self.versions) + 1  # never back to a value that named other content
        self.versions = [start] * self.n_windows
        self.counts: list[dict[int, int]] = [defaultdict(int) for _ in range(self.n_windows)]
        self.durations: list[dict[int, SortedInts]] = [{} for _ in range(self.n_windows)]
        self.duration_sums: list[dict[int, int]] = [
            defaultdict(int) for _ in range(self.n_windows)
        ]

    def enter(self, windows: Sequence[int], rows: Sequence[Row]) -> None:
        codes, by_op = _tally(rows)
        for window in windows:
            self.versions[window] += 1
            counts = self.counts[window]
            for code, n in codes.items():
                counts[code] += n
            durations, sums = self.durations[window], self.duration_sums[window]
            for op, (values, total) in by_op.items():
                if op not in durations:
                    durations[op] = SortedInts()
                durations[op].update(values)
                sums[op] += total

    def leave(self, windows: Sequence[int], rows: Sequence[Row]) -> None:
        codes, by_op = _tally(rows)
        for window in windows:
            self.versions[window] += 1
            counts = self.counts[window]
            for code, n in codes.items():
                counts[code] -= n
            durations, sums = self.durations[window], self.duration_sums[window]
            for op, (values, total) in by_op.items():
                durations[op].remove_many(values)
                sums[op] -= total


def _tally(rows: Sequence[Row]) -> tuple[Counter[int], dict[int, tuple[list[int], int]]]:
    """The rows by label code, and the durations of those that record one by operation type,
    sorted, with their sum."""
    codes = Counter(map(itemgetter(1), rows))
    by_op = {op: (sorted(values), sum(values)) for op, values in _durations_by_op(rows).items()}
    return codes, by_op


def _durations_by_op(rows: Sequence[Row]) -> dict[int, list[int]]:
    """The durations of the rows that record one, by operation type."""
    by_code: dict[int, list[int]] = defaultdict(list)
    for _, code, duration, _ in rows:
        if duration >= 0:
            by_code[code].append(duration)
    by_op: dict[int, list[int]] = defaultdict(list)
    for code, values in by_code.items():
        by_op[unpack(code)[0]] += values
    return by_op


class _WindowSamples(NamedTuple):
    """One window's samples of the recent families."""

    recent: list[Sample]
    pct: list[Sample]
    avg: list[Sample]


class SyncLogCollector:
    """The ``synclog`` collector: counts, durations and windows of the shared sync-log source."""

    name = "synclog"

    def __init__(self, config: SyncLogConfig, *, source: SyncLogSource) -> None:
        """``source`` is built from the same ``config``; the collector reads it, and detaches
        from it on :meth:`close`."""
        self.buckets = config.buckets
        self.source = source
        self.counters = SyncCounters(len(config.buckets))
        self.window_stats = SyncWindowStats(len(config.windows))
        source.attach(self.counters, self.window_stats)
        # What was built last, and from which versions: reused while those have not changed.
        self._pairs: tuple[object, list[tuple[int, int]]] = (None, [])
        self._cumulative_built: tuple[object, list[Metric]] = (None, [])
        self._windows_built: list[tuple[object, _WindowSamples]] = [
            (None, _WindowSamples([], [], [])) for _ in config.windows
        ]

    def collect(self, deadline: Deadline) -> list[Metric]:
        return self.source.read(deadline, self._families)

    def close(self) -> None:
        self.source.detach(self.counters, self.window_stats)

    def _families(self) -> list[Metric]:
        pairs = self._label_pairs()
        key = (self.counters.version, len(self.source.ops.values),
               len(self.source.statuses.values), pairs)
        if self._cumulative_built[0] != key:
            self._cumulative_built = (key, self._cumulative(pairs))
        return [
            *self._cumulative_built[1],
            *self._recent(pairs),
            *self._self_metrics(),
        ]

    def _label_pairs(self) -> list[tuple[int, int]]:
        """Every (operation type, status) known or seen, in a fixed order. The same list object
        while the aggregates are unchanged (they only ever add pairs, until a reset)."""
        ops, statuses = self.source.ops, self.source.statuses
        key = (self.counters.version, tuple(self.window_stats.versions), ops.known_count,
               statuses.known_count)
        if self._pairs[0] == key:
            return self._pairs[1]
        known = [(o, s) for o in range(ops.known_count) for s in range(statuses.known_count)]
        seen = set(self.counters.operations) | {
            unpack(code) for counts in self.window_stats.counts for code in counts
        }
        pairs = known + sorted(seen - set(known))
        if pairs == self._pairs[1]:
            pairs = self._pairs[1]  # keeps the keys that compare with it cheap
        self._pairs = (key, pairs)
        return pairs

    def _cumulative(self, pairs: list[tuple[int, int]]) -> list[Metric]:
        ops, statuses = self.source.ops.values, self.source.statuses.values
        total = CounterMetricFamily(
            "customer_sync_operations",
            "Rows written to the sync log, by operation type and status, since the table began "
            "(read once at start-up, then as they arrive). Errors are status failed (1C import) "
            "and error (sync logger).",
            labels=["operation_type", "status"],
        )
        newest = GaugeMetricFamily(
            "customer_sync_last_operation_timestamp_seconds",
            "created_at of the newest sync-log row of this type and status (Unix time).",
            labels=["operation_type", "status"],
        )
        for o, s in pairs:
            total.add_metric([ops[o], statuses[s]], self.counters.operations.get((o, s), 0))
            ts = self.counters.newest.get((o, s))
            if ts is not None:
                newest.add_metric([ops[o], statuses[s]], ts / 1_000_000)
        hist = HistogramMetricFamily(
            "customer_sync_operation_duration_seconds",
            "duration_ms / 1000 of sync-log rows that record a duration (production 1C-import "
            "rows leave it NULL and are not observed).",
            labels=["operation_type"],
        )
        bounds = [f"{b:g}" for b in self.buckets] + ["+Inf"]
        for op, counts in sorted(self.counters.buckets.items()):
            cumulative, acc = [], 0
            for bound, n in zip(bounds, counts, strict=True):
                acc += n
                cumulative.append((bound, float(acc)))
            hist.add_metric(
                [ops[op]], cumulative, sum_value=self.counters.duration_sum_ms[op] / 1000
            )
        return [total, newest, hist]

    def _recent(self, pairs: list[tuple[int, int]]) -> list[Metric]:
        recent = GaugeMetricFamily(
            "customer_sync_recent_operations",
            "Sync-log rows with created_at in (now - window, now] at scrape time.",
            labels=["operation_type", "status", "window"],
        )
        pct = GaugeMetricFamily(
            "customer_sync_recent_duration_seconds",
            "Exact percentile (PostgreSQL percentile_cont) of duration_ms / 1000 over the rows of "
            "the window that record a duration; absent when there are none.",
            labels=["operation_type", "window", "percentile"],
        )
        avg = GaugeMetricFamily(
            "customer_sync_recent_duration_avg_seconds",
            "Mean duration_ms / 1000 over the rows of the window that record a duration.",
            labels=["operation_type", "window"],
        )
        key_labels = (len(self.source.ops.values), len(self.source.statuses.values), pairs)
        for i in range(len(self.source.windows)):
            key = (self.window_stats.versions[i], key_labels)
            if self._windows_built[i][0] != key:
                before = self._windows_built[i]
                same_pairs = isinstance(before[0], tuple) and before[0][1] == key_labels
                self._windows_built[i] = (key, self._window_samples(
                    i, pairs, before[1].recent if same_pairs else []))
            built = self._windows_built[i][1]
            recent.samples += built.recent
            pct.samples += built.pct
            avg.samples += built.avg
        return [recent, pct, avg]

    def _window_samples(self, i: int, pairs: list[tuple[int, int]],
                        recent_before: list[Sample]) -> _WindowSamples:
        """Window ``i``'s samples of the three recent families, in their order.
        ``recent_before`` is the window's recent samples of the same pairs last time, or empty:
        a count that did not move keeps its sample (the exposition then passes it by identity).
        """
        ops, statuses = self.source.ops.values, self.source.statuses.values
        label = self.source.windows[i].label
        counts = self.window_stats.counts[i]
        recent = []
        for j, (o, s) in enumerate(pairs):
            n = counts.get(pack(o, s), 0)
            if recent_before and recent_before[j].value == n:
                recent.append(recent_before[j])
            else:
                recent.append(Sample(
                    "customer_sync_recent_operations",
                    {"operation_type": ops[o], "status": statuses[s], "window": label}, n))
        out = _WindowSamples(recent, [], [])
        for op, values in sorted(self.window_stats.durations[i].items()):
            if not values:
                continue
            for percentile, fraction in PERCENTILES:
                out.pct.append(Sample(
                    "customer_sync_recent_duration_seconds",
                    {"operation_type": ops[op], "window": label, "percentile": percentile},
                    percentile_cont(values, fraction) / 1000))
            out.avg.append(Sample(
                "customer_sync_recent_duration_avg_seconds",
                {"operation_type": ops[op], "window": label},
                self.window_stats.duration_sums[i][op] / len(values) / 1000))
        return out

    def _unusable(self) -> Metric:
        unusable = CounterMetricFamily(
            "customer_sync_exporter_log_rows_unusable",
            "Sync-log rows read with a value the exporter could not use; each is still counted "
            "in customer_sync_operations_total. created_at_out_of_range: created_at is infinity, "
            "-infinity (or NULL, or after the year 294246: no Unix microsecond in 64 bits), so "
            "the row is in no window and no newest timestamp. duration_negative: "
            "duration_ms < 0 (the schema forbids it), not observed as a duration. "
            "label_value_invalid: operation_type, status or a details value used as a label is "
            f"NULL, empty, longer than {MAX_LABEL_LENGTH} characters or not printable, counted "
            "as other.",
            labels=["reason"],
        )
        for reason in UNUSABLE_REASONS:
            unusable.add_metric([reason], self.source.tail.stats.unusable[reason])
        return unusable

    def _self_metrics(self) -> list[Metric]:
        """How the tail is doing: what it read, where it is, the gaps it waits for."""
        tail, stats = self.source.tail, self.source.tail.stats
        return [
            CounterMetricFamily(
                "customer_sync_exporter_log_rows_read",
                "Sync-log rows the exporter has read (each row once; again after a re-read of a "
                "truncated or restored table).",
                value=stats.rows_read,
            ),
            GaugeMetricFamily(
                "customer_sync_exporter_log_last_id",
                "Highest sync-log id read so far (the tail cursor).",
                value=tail.cursor,
            ),
            GaugeMetricFamily(
                "customer_sync_exporter_log_pending_gaps",
                "Ids below the cursor not yet seen: rows of transactions still in flight, "
                "rolled-back ids waiting to be confirmed, or ids the sequence has not handed out "
                "yet below a row inserted with a higher, explicit id.",
                value=tail.gaps.ids,
            ),
            GaugeMetricFamily(
                "customer_sync_exporter_log_pending_gap_ranges",
                "Ranges of consecutive ids the pending gaps are kept as (memory is per range; at "
                f"{tail.gaps.max_ranges} the tail waits, see "
                "customer_sync_exporter_log_gap_limit_reached_total).",
                value=tail.gaps.ranges,
            ),
            CounterMetricFamily(
                "customer_sync_exporter_log_gaps_expired",
                "Pending gap ids given up after every transaction that could still insert them "
                "ended: rolled back, or deleted before they were read.",
                value=stats.gaps_expired,
            ),
            CounterMetricFamily(
                "customer_sync_exporter_log_gap_limit_reached",
                "Reads of the sync log that stopped at the gap-range limit: nothing is lost, "
                "newer rows wait until the transactions holding the pending ids end (the "
                "collector fails with reason timeout meanwhile).",
                value=stats.gap_limit_reached,
            ),
            CounterMetricFamily(
                "customer_sync_exporter_log_rebaselines",
                "Times the sync log was read again from scratch because the table was truncated "
                "or restored (every counter starts over).",
                value=stats.rebaselines,
            ),
            self._unusable(),
        ]
