"""The sync log, read once for every collector that reports on it (synclog and business).

A source is the tail (:mod:`collectors.logtail`), the sliding windows it feeds
(:mod:`collectors.windows`), the two label sets its rows are coded with and the time source the
windows run on. The pipeline (:mod:`exporter.pipeline`) builds one per config when either
collector is enabled and hands it to both by keyword, so both agree on every row and the table
is read once; neither owns it. Each collector attaches what it keeps (a subscriber to the
cumulative groups, a consumer of the windows) and detaches when it is closed; the pipeline closes
the source after its collectors, which cancels a start-up pass still reading.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from prometheus_client.core import Metric

from collectors.labels import LabelSet
from collectors.logrows import OPERATION_TYPES, STATUSES, Group, LogSubscriber
from collectors.logtail import MAX_GAP_RANGES, LogTail, Rider
from collectors.windows import SlidingWindows, WindowConsumer
from exporter.collector import CollectorError, Deadline
from exporter.config import SyncLogConfig
from exporter.db import Database


def bucket_thresholds_ms(buckets: Sequence[float]) -> list[int]:
    """The largest whole millisecond each bucket bound admits (durations are integer ms)."""
    return [math.floor(round(b * 1000, 6)) for b in buckets]


class _WindowReset(LogSubscriber):
    """Empties the windows whenever the tail reads the table again from the start."""

    def __init__(self, sliding: SlidingWindows) -> None:
        self.sliding = sliding

    def on_groups(self, groups: Sequence[Group]) -> None:
        pass

    def reset(self) -> None:
        self.sliding.reset()


class SyncLogSource:
    """One table's rows for several collectors: :meth:`read` brings them up to date."""

    def __init__(
        self,
        db: Database,
        config: SyncLogConfig,
        *,
        clock: Callable[[], float] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        max_gap_ranges: int = MAX_GAP_RANGES,
    ) -> None:
        """``clock`` (Unix seconds) replaces the time source, by default
        ``config.time_source``. ``monotonic`` is the clock gaps settle by; ``max_gap_ranges``
        bounds the memory pending gaps may take."""
        self.windows = config.windows
        self.ops = LabelSet(OPERATION_TYPES, config.max_label_values)
        self.statuses = LabelSet(STATUSES, config.max_label_values)
        self.sliding = SlidingWindows([int(w.seconds * 1_000_000) for w in config.windows])
        if clock is None and config.time_source == "local":
            clock = time.time
        self.tail = LogTail(
            db=db,
            table=config.table,
            bucket_thresholds_ms=bucket_thresholds_ms(config.buckets),
            ops=self.ops,
            statuses=self.statuses,
            longest_window_us=self.sliding.longest,
            batch_size=config.batch_size,
            clock_us=(lambda: round(clock() * 1_000_000)) if clock is not None else None,
            on_rows=self.sliding.add,
            on_time=self.sliding.advance,
            subscribers=[_WindowReset(self.sliding)],
            monotonic=monotonic,
            max_gap_ranges=max_gap_ranges,
        )

    @property
    def longest_window_us(self) -> int:
        return self.sliding.longest

    def attach(self, subscriber: LogSubscriber, window_consumer: WindowConsumer,
               rider: Rider | None = None) -> None:
        """Feed ``subscriber`` every group read and ``window_consumer`` the windows' rows;
        ``rider`` travels in every poll (see :class:`collectors.logtail.Rider`)."""
        with self.tail.lock:
            self.tail.subscribers.append(subscriber)
            self.sliding.consumers.append(window_consumer)
            if rider is not None:
                self.tail.riders.append(rider)

    def detach(self, subscriber: LogSubscriber, window_consumer: WindowConsumer,
               rider: Rider | None = None) -> None:
        """Stop feeding them."""
        with self.tail.lock:
            self.tail.subscribers.remove(subscriber)
            self.sliding.consumers.remove(window_consumer)
            if rider is not None:
                self.tail.riders.remove(rider)

    def close(self) -> None:
        """Stop reading the table: a start-up pass in flight is cancelled. Its owner's job (the
        pipeline's), after the collectors that read it are closed."""
        self.tail.close()

    def read(self, deadline: Deadline, families: Callable[[], list[Metric]], *,
             others: Callable[[], Sequence[Metric]] = tuple) -> list[Metric]:
        """``others()`` and ``families()``, made once the rows are read up to now (``others``
        after the poll, which may have read for them: see :class:`collectors.logtail.Rider`),
        ``families()`` while those rows hold still.

        If the source cannot be brought up to date, the failure carries what can still be
        served: ``others()`` and, once the start-up pass is done, ``families()`` of the rows
        read so far (counters stay continuous through an outage)."""
        try:
            self.tail.refresh(deadline)
        except CollectorError as exc:
            extra = others()
            with self.tail.lock:
                partial = [*extra, *(families() if self.tail.warm else [])]
            raise CollectorError(exc.reason, exc.message, partial) from None
        extra = others()
        with self.tail.lock:
            return [*extra, *families()]
