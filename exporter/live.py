"""The pipeline serving now, and the config reload status that goes with it, changed as one.

A request takes a :class:`Lease`: the live pipeline, entered (so it is not closed under the
request), and the families that are no collector's (the reload status, the HTTP server's), read
in the same step under the reload status's lock. A reload puts a new pipeline live under that
same lock, inside :meth:`ReloadStatus.succeeded`: so no scrape sees the new collectors with the
old status or the old collectors with the new one. The pipeline replaced is retired and closes
itself when its last request is out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client.core import Metric

from exporter.pipeline import Pipeline
from exporter.reload import ReloadStatus


@dataclass(frozen=True)
class Lease:
    """What one request uses: a pipeline, and the families to add to its scrape."""

    pipeline: Pipeline
    extra: list[Metric]


class Live:
    """The one reference a reload swaps."""

    def __init__(self, pipeline: Pipeline, *, status: ReloadStatus | None = None,
                 extra: Callable[[], list[Metric]] = list) -> None:
        """``status`` is the config's reload status, read with the pipeline; ``extra`` makes the
        other families that are no collector's (the HTTP server's, the web config's status)."""
        self._pipeline = pipeline
        self._status = status
        self._extra = extra
        self._lock = status.lock if status is not None else threading.RLock()

    @property
    def pipeline(self) -> Pipeline:
        return self._pipeline

    @contextmanager
    def lease(self) -> Iterator[Lease]:
        with self._lock:
            pipeline = self._pipeline
            pipeline.enter()
            status = self._status.families() if self._status is not None else []
        try:
            yield Lease(pipeline, [*status, *self._extra()])
        finally:
            pipeline.leave()

    def swap(self, new: Pipeline, on_closed: Callable[[Pipeline], None] | None = None) -> Pipeline:
        """Put ``new`` live and retire the one it replaces, which calls ``on_closed`` once it has
        closed. Run it inside ``status.succeeded`` for the status to change in the same step."""
        with self._lock:
            old, self._pipeline = self._pipeline, new
            old.retire(on_closed)
        return old
