"""One scrape: every enabled collector runs concurrently under one deadline.

The deadline is ``min(scrape_timeout, X-Prometheus-Scrape-Timeout-Seconds - offset)``. A collector
still running at the deadline is reported failed with reason ``timeout`` and the answer goes out
with everything that did finish. Each collector is single-flight: a scrape that arrives while a
collection is under way waits for that same collection instead of starting another, so ten
concurrent scrapers (or a hung dependency) never multiply the load on a dependency.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from exporter import __version__
from exporter.built import Built
from exporter.collector import Collector, CollectorError, Deadline, Reason
from exporter.exposition import Exposition
from exporter.memory import MallocTrimmer

log = structlog.get_logger(__name__)

HEADER_OFFSET_SECONDS = 0.5
# Collectors must be done this long before the scrape deadline (at most 20% of the budget), so
# the answer is encoded and sent before the deadline rather than just after it.
RENDER_MARGIN_SECONDS = 0.15
_REASONS = tuple((reason, reason.value) for reason in Reason)  # iterating an Enum is slow


@dataclass(frozen=True)
class CollectorResult:
    """What one collection of one collector produced."""

    name: str
    families: list[Metric]
    duration: float
    finished_at: float  # wall clock, for the landing page's "age"
    reason: Reason | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass
class _Runner:
    collector: Collector
    # One thread per collector, for the collector's life. Single-flight means at most one run at
    # a time, and a run abandoned at a deadline still holds it: the next scrape joins that run
    # rather than starting another. The thread, and so glibc's malloc arena it allocates from,
    # stays the same run after run (a shared pool moved runs across up to 14 threads and their
    # arenas, and RSS crept by fragmentation; docs/soak.md).
    executor: ThreadPoolExecutor = field(init=False)
    in_flight: Future[CollectorResult] | None = None
    last: CollectorResult | None = None
    last_success: float | None = None
    collections: int = 0
    recorded: int = 0  # the number (``collections``) of the last run whose result is in ``last``
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"collect-{self.collector.name}"
        )


class ScrapeOutput:
    """One scrape's families, and each exposition format of them, encoded at most once.

    Scrapes that arrive while one is running share it (and its rendering), so ten concurrent
    scrapers cost about one collection and one encoding per format; and ``exposition`` re-encodes
    only the families that changed since the scraper's last encoding of that format.
    """

    def __init__(self, families: list[Metric], exposition: Exposition | None = None) -> None:
        self.families = families
        self._exposition = exposition if exposition is not None else Exposition()
        self._bodies: dict[tuple[str, bool], bytes] = {}
        self._lock = threading.Lock()

    def encode(self, encoder: Callable[[Any], bytes], content_type: str, gzipped: bool) -> bytes:
        """The body in the format ``encoder`` writes (``content_type`` names it)."""
        key = (content_type, gzipped)
        with self._lock:
            body = self._bodies.get(key)
            if body is None:
                body = self._exposition.encode(self.families, encoder, content_type, gzipped)
                self._bodies[key] = body
        return body


def _outcome_families(outcomes: Sequence[tuple[str, Reason | None]]) -> list[Metric]:
    """Each collector's success and failure reason (the same scrape after scrape, mostly)."""
    success = GaugeMetricFamily(
        "customer_sync_exporter_collector_success",
        "1 if the collector's last run in this scrape succeeded, else 0.",
        labels=["collector"],
    )
    failure = GaugeMetricFamily(
        "customer_sync_exporter_collector_failure",
        "1 for the reason of the collector's current failure, 0 for every other reason.",
        labels=["collector", "reason"],
    )
    for name, failed in outcomes:
        success.add_metric([name], 0.0 if failed else 1.0)
        for reason, value in _REASONS:
            failure.add_metric([name, value], float(failed is reason))
    return [success, failure]


class Scraper:
    """Runs the collectors for a scrape and turns their results into one list of families."""

    def __init__(
        self,
        collectors: Sequence[Collector],
        scrape_timeout: float,
        *,
        offset: float = HEADER_OFFSET_SECONDS,
        process_collector: bool = True,
        trimmer: MallocTrimmer | None = None,
    ) -> None:
        """``trimmer`` gives free heap pages back after a scrape (see :mod:`exporter.memory`)."""
        self.scrape_timeout = scrape_timeout
        self.offset = offset
        self._runners = {c.name: _Runner(c) for c in collectors}
        self._process = ProcessCollector(registry=None) if process_collector else None
        self._trimmer = trimmer
        self.exposition = Exposition()
        self._outcomes_built = Built()
        self._build_info = InfoMetricFamily(
            "customer_sync_exporter_build",
            "Version of the exporter and of the Python running it.",
            value={"version": __version__, "python_version": platform.python_version()},
        )
        self._shared: Future[ScrapeOutput] | None = None
        self._shared_lock = threading.Lock()

    @property
    def collector_names(self) -> list[str]:
        return list(self._runners)

    @property
    def collectors(self) -> list[Collector]:
        return [r.collector for r in self._runners.values()]

    def deadline_for(self, header_timeout: float | None) -> Deadline:
        budget = self.scrape_timeout
        if header_timeout is not None and header_timeout > 0:
            budget = min(budget, max(0.05, header_timeout - self.offset))
        return Deadline.after(budget)

    def collection_count(self, name: str) -> int:
        return self._runners[name].collections

    def last_results(self) -> dict[str, CollectorResult | None]:
        return {name: r.last for name, r in self._runners.items()}

    def scrape_shared(self, deadline: Deadline, extra: Sequence[Metric] = ()) -> ScrapeOutput:
        """A scrape, joined with the one in progress if there is one (single-flight); ``extra``
        as in :meth:`scrape` (a scrape joined carries its leader's)."""
        with self._shared_lock:
            running = self._shared
            leader = running is None or running.done()
            if leader:
                running = self._shared = Future()
        assert running is not None
        if not leader:
            try:
                return running.result(timeout=deadline.remaining())
            except FutureTimeout:
                return ScrapeOutput(self.scrape(deadline, extra), self.exposition)
        try:
            output = ScrapeOutput(self.scrape(deadline, extra), self.exposition)
        except BaseException as exc:
            running.set_exception(exc)
            raise
        running.set_result(output)
        if self._trimmer is not None:
            self._trimmer.maybe_trim()  # this scrape's garbage is freed by now
        return output

    def scrape(self, deadline: Deadline, extra: Sequence[Metric] = ()) -> list[Metric]:
        """Every collector's families, then the scrape's own, ``extra`` (families that are no
        collector's: the reload status, the HTTP server's) and the process's."""
        started = time.monotonic()
        inner = Deadline(deadline.at - min(RENDER_MARGIN_SECONDS, 0.2 * deadline.remaining()))
        runs = {name: self._start(runner, inner) for name, runner in self._runners.items()}
        wait([fut for fut, _ in runs.values()], timeout=inner.remaining())
        results: list[CollectorResult] = []
        for name, (fut, number) in runs.items():
            runner = self._runners[name]
            with runner.lock:
                if fut.done():
                    results.append(fut.result())
                    continue
                if runner.recorded == number and runner.last is not None:  # finished just now
                    results.append(runner.last)
                    continue
                # Recorded as the last result too (landing page, readiness, ``check``) until the
                # abandoned run finishes and records its own.
                runner.last = CollectorResult(
                    name, [], time.monotonic() - started, time.time(), Reason.TIMEOUT,
                    "did not finish before the scrape deadline",
                )
                results.append(runner.last)
        families: list[Metric] = []
        for result in results:
            families.extend(result.families)
        families.extend(self._self_metrics(results))
        families.extend(extra)
        if self._process is not None:
            families.extend(self._process.collect())
        return families

    def _start(self, runner: _Runner, deadline: Deadline) -> tuple[Future[CollectorResult], int]:
        with runner.lock:
            if runner.in_flight is None or runner.in_flight.done():
                runner.collections += 1
                runner.in_flight = runner.executor.submit(self._run, runner, deadline,
                                                          runner.collections)
            return runner.in_flight, runner.collections

    def _run(self, runner: _Runner, deadline: Deadline, number: int) -> CollectorResult:
        name = runner.collector.name
        start = time.monotonic()
        try:
            families = list(runner.collector.collect(deadline))
            result = CollectorResult(name, families, time.monotonic() - start, time.time())
        except CollectorError as exc:
            result = CollectorResult(
                name, exc.partial, time.monotonic() - start, time.time(), exc.reason, exc.message
            )
        except Exception as exc:  # a bug in a collector must not take the scrape down
            log.exception("collector crashed", collector=name)
            result = CollectorResult(
                name, [], time.monotonic() - start, time.time(), Reason.INTERNAL,
                f"internal error: {type(exc).__name__}",
            )
        if not result.ok:
            log.warning(
                "collector failed", collector=name, reason=str(result.reason),
                error=result.message, duration=round(result.duration, 4),
            )
        with runner.lock:
            runner.last = result
            runner.recorded = number
            if result.ok:
                runner.last_success = result.finished_at
        return result

    def _self_metrics(self, results: Sequence[CollectorResult]) -> list[Metric]:
        duration = GaugeMetricFamily(
            "customer_sync_exporter_collector_duration_seconds",
            "How long the collector took in this scrape (up to the deadline if it timed out).",
            labels=["collector"],
        )
        last_success = GaugeMetricFamily(
            "customer_sync_exporter_collector_last_success_timestamp_seconds",
            "Unix time of the collector's last successful run (0 if never).",
            labels=["collector"],
        )
        for result in results:
            duration.add_metric([result.name], result.duration)
            last_success.add_metric([result.name], self._runners[result.name].last_success or 0.0)
        outcomes = tuple((r.name, r.reason) for r in results)
        success, failure = self._outcomes_built.get(outcomes, lambda: _outcome_families(outcomes))
        return [success, duration, last_success, failure, self._build_info]

    def close(self, grace: float = 0.0) -> None:
        """Start no more runs and close the collectors. A run still under way (each is bounded
        by the deadline of the scrape that started it) gets up to ``grace`` seconds to finish
        first, so a replaced config's collectors are not closed under their last runs."""
        running: list[Future[CollectorResult]] = []
        for runner in self._runners.values():
            runner.executor.shutdown(wait=False, cancel_futures=True)
            with runner.lock:
                if runner.in_flight is not None and not runner.in_flight.done():
                    running.append(runner.in_flight)
        if running and grace > 0:
            wait(running, timeout=grace)
        for runner in self._runners.values():
            closer = getattr(runner.collector, "close", None)
            if callable(closer):
                try:
                    closer()
                except Exception:
                    log.exception("closing collector failed", collector=runner.collector.name)
