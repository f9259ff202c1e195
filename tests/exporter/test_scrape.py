"""Scrape orchestration through a real HTTP server: the deadline, single-flight, failures.

The collectors here are small real classes whose behaviour (sleep, fail, crash) the test
chooses, so every expected value is known without asking the code under test.
"""

from __future__ import annotations

import platform
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from exporter import __version__
from exporter.collector import Collector, CollectorError, Deadline, Reason, dependency_up
from exporter.http import ExporterApp, make_http_server, serve_in_thread
from exporter.memory import MallocTrimmer
from exporter.scrape import Scraper

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
REASONS = {r.value for r in Reason}


@dataclass
class Steady:
    """Succeeds at once with one gauge whose value the test chooses."""

    name: str
    value: float = 7.0
    calls: int = 0

    def collect(self, deadline: Deadline) -> Iterable[Metric]:
        self.calls += 1
        return [GaugeMetricFamily(f"customer_sync_{self.name}_value", "test", value=self.value)]


@dataclass
class Sleeping:
    """Sleeps ``seconds`` (cut short when the test ends), noting the deadline it was given."""

    name: str
    seconds: float
    wake: threading.Event = field(default_factory=threading.Event)
    calls: int = 0
    budgets: list[float] = field(default_factory=list)

    def collect(self, deadline: Deadline) -> Iterable[Metric]:
        self.calls += 1
        self.budgets.append(deadline.remaining())
        self.wake.wait(self.seconds)
        return [GaugeMetricFamily(f"customer_sync_{self.name}_value", "test", value=1.0)]


@dataclass
class PartlyFailing:
    """Fails with ``connect`` but hands back ``*_up 0`` and one more family as partial."""

    name: str

    def collect(self, deadline: Deadline) -> Iterable[Metric]:
        raise CollectorError(
            Reason.CONNECT, "connection refused",
            partial=[dependency_up(self.name, "test dependency", False),
                     GaugeMetricFamily(f"customer_sync_{self.name}_cached_items", "test", value=3)],
        )


@dataclass
class Crashing:
    """A collector with a bug: a plain exception."""

    name: str
    calls: int = 0

    def collect(self, deadline: Deadline) -> Iterable[Metric]:
        self.calls += 1
        raise KeyError("bug in the collector")


@dataclass
class Flaky:
    """Succeeds or fails with ``query`` as the test says."""

    name: str
    failing: bool = False

    def collect(self, deadline: Deadline) -> Iterable[Metric]:
        if self.failing:
            raise CollectorError(Reason.QUERY, "relation does not exist")
        return [GaugeMetricFamily(f"customer_sync_{self.name}_value", "test", value=1.0)]


@dataclass
class Gated:
    """Holds its collection until ``arrived()`` reaches ``needed`` (at most 10 s), then reports
    how many times it was called."""

    name: str
    arrived: Callable[[], int]
    needed: int
    calls: int = 0

    def collect(self, deadline: Deadline) -> Iterable[Metric]:
        self.calls += 1
        end = time.monotonic() + 10
        while self.arrived() < self.needed and time.monotonic() < end:
            time.sleep(0.01)
        time.sleep(0.3)  # scrapes counted at the door are inside the scraper by now
        return [GaugeMetricFamily(f"customer_sync_{self.name}_calls", "test", value=self.calls)]


class Door:
    """WSGI middleware counting the /metrics requests that have arrived."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.count = 0
        self.lock = threading.Lock()

    def arrived(self) -> int:
        return self.count

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/metrics":
            with self.lock:
                self.count += 1
        return self.app(environ, start_response)


@dataclass
class Served:
    scraper: Scraper
    url: str
    door: Door


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    started: list[tuple[Any, Scraper, list[Collector]]] = []

    def start(collectors: list[Collector], scrape_timeout: float = 10.0) -> Served:
        scraper = Scraper(collectors, scrape_timeout)
        door = Door(ExporterApp(scraper))
        server = make_http_server("127.0.0.1:0", door)
        serve_in_thread(server)
        started.append((server, scraper, collectors))
        return Served(scraper, f"http://127.0.0.1:{server.server_address[1]}", door)

    yield start
    for server, scraper, collectors in started:
        for c in collectors:
            if isinstance(c, Sleeping):
                c.wake.set()
        server.shutdown()
        server.server_close()
        scraper.close()


def scrape(url: str, header: str | None = None) -> tuple[Samples, float]:
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": header} if header else {}
    t0 = time.monotonic()
    response = requests.get(f"{url}/metrics", headers=headers, timeout=30)
    elapsed = time.monotonic() - t0
    assert response.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, elapsed


def val(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def failure_reasons(samples: Samples, collector: str) -> dict[str, float]:
    return {
        dict(labels)["reason"]: v
        for (name, labels), v in samples.items()
        if name == "customer_sync_exporter_collector_failure"
        and dict(labels)["collector"] == collector
    }


@pytest.mark.parametrize(
    ("scrape_timeout", "header", "budget"),
    [(10.0, "2", 1.5),  # the header wins: 2 s - 0.5 s offset
     (1.2, "30", 1.2),  # the configured timeout wins
     (1.2, None, 1.2)],  # no header
)
def test_slow_collector_is_cut_at_the_deadline_and_the_rest_is_served(
    serve: Callable[..., Served], scrape_timeout: float, header: str | None, budget: float
) -> None:
    slow = Sleeping("slow", 10.0)
    fast = Steady("fast", 42.0)
    s = serve([fast, slow, PartlyFailing("broken")], scrape_timeout)
    samples, elapsed = scrape(s.url, header)

    assert budget - 0.25 <= elapsed < budget, f"answered after {elapsed:.3f} s"
    assert budget - 0.3 <= slow.budgets[0] <= budget, slow.budgets  # collectors get it too
    assert val(samples, "customer_sync_exporter_collector_success", collector="slow") == 0
    reasons = failure_reasons(samples, "slow")
    assert reasons == {r: float(r == "timeout") for r in REASONS}
    took = val(samples, "customer_sync_exporter_collector_duration_seconds", collector="slow")
    assert budget - 0.3 <= took <= budget
    assert val(samples, "customer_sync_exporter_collector_last_success_timestamp_seconds",
               collector="slow") == 0
    assert ("customer_sync_slow_value", ()) not in samples
    # Everything that did finish is there.
    assert val(samples, "customer_sync_fast_value") == 42.0
    assert val(samples, "customer_sync_exporter_collector_success", collector="fast") == 1
    assert val(samples, "customer_sync_broken_up") == 0
    # The timeout is the collector's last result for the landing page, readiness and `check`.
    last = s.scraper.last_results()["slow"]
    assert last is not None and last.reason is Reason.TIMEOUT
    landing = requests.get(s.url, timeout=5).text
    assert re.search(r">slow</td>(?:(?!</tr>).)*failed(?:(?!</tr>).)*timeout", landing, re.S)

    # The abandoned run is still going: the next scrape joins it instead of starting another.
    samples, _ = scrape(s.url, "1")
    assert val(samples, "customer_sync_exporter_collector_success", collector="slow") == 0
    assert s.scraper.collection_count("slow") == 1 and slow.calls == 1
    assert s.scraper.collection_count("fast") == 2 and fast.calls == 2

    # Once it finishes, its own result replaces the recorded timeout.
    slow.wake.set()
    end = time.monotonic() + 5
    while (r := s.scraper.last_results()["slow"]) is not None and not r.ok:
        assert time.monotonic() < end
        time.sleep(0.01)


def test_ten_concurrent_scrapes_share_one_collection(serve: Callable[..., Served]) -> None:
    arrivals: list[Callable[[], int]] = []
    a = Gated("a", lambda: arrivals[0](), 10)
    b = Gated("b", lambda: arrivals[0](), 10)
    s = serve([a, b, Steady("c")])
    arrivals.append(s.door.arrived)
    go = threading.Barrier(10)
    results: list[Samples] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            go.wait()
            results.append(scrape(s.url)[0])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and len(results) == 10
    assert s.door.count == 10  # all ten were in flight together
    for name, collector in (("a", a), ("b", b)):
        assert s.scraper.collection_count(name) == 1
        assert collector.calls == 1
        assert all(val(r, f"customer_sync_{name}_calls") == 1 for r in results)
    assert s.scraper.collection_count("c") == 1
    assert all(val(r, "customer_sync_exporter_collector_success", collector="a") == 1
               for r in results)


def test_failures_export_partial_families_and_one_reason_each(
    serve: Callable[..., Served],
) -> None:
    fast, buggy = Steady("fast", 5.0), Crashing("buggy")
    s = serve([fast, PartlyFailing("redisish"), buggy])
    for round_ in (1, 2):  # a crash does not break the next scrape either
        samples, _ = scrape(s.url)
        assert val(samples, "customer_sync_fast_value") == 5.0
        assert failure_reasons(samples, "fast") == dict.fromkeys(REASONS, 0.0)
        assert val(samples, "customer_sync_exporter_collector_success", collector="fast") == 1

        assert val(samples, "customer_sync_redisish_up") == 0
        assert val(samples, "customer_sync_redisish_cached_items") == 3
        assert failure_reasons(samples, "redisish") == {r: float(r == "connect") for r in REASONS}
        assert val(samples, "customer_sync_exporter_collector_success", collector="redisish") == 0

        assert failure_reasons(samples, "buggy") == {r: float(r == "internal") for r in REASONS}
        assert val(samples, "customer_sync_exporter_collector_success", collector="buggy") == 0
        assert not any(name.startswith("customer_sync_buggy") for name, _ in samples)
        assert buggy.calls == round_


def test_last_success_timestamp_stays_at_the_last_success(serve: Callable[..., Served]) -> None:
    flaky = Flaky("flaky")
    s = serve([flaky])
    before = time.time()
    samples, _ = scrape(s.url)
    after = time.time()
    first = val(samples, "customer_sync_exporter_collector_last_success_timestamp_seconds",
                collector="flaky")
    assert before <= first <= after

    flaky.failing = True
    for _ in range(2):
        time.sleep(0.05)
        samples, _ = scrape(s.url)
        assert val(samples, "customer_sync_exporter_collector_success", collector="flaky") == 0
        assert failure_reasons(samples, "flaky") == {r: float(r == "query") for r in REASONS}
        assert val(samples, "customer_sync_exporter_collector_last_success_timestamp_seconds",
                   collector="flaky") == first

    flaky.failing = False
    time.sleep(0.05)
    before = time.time()
    samples, _ = scrape(s.url)
    latest = val(samples, "customer_sync_exporter_collector_last_success_timestamp_seconds",
                 collector="flaky")
    assert latest >= before > first
    assert failure_reasons(samples, "flaky") == dict.fromkeys(REASONS, 0.0)


def test_build_info_and_process_metrics(serve: Callable[..., Served]) -> None:
    s = serve([Steady("fast")])
    samples, _ = scrape(s.url)
    assert val(samples, "customer_sync_exporter_build_info", version=__version__,
               python_version=platform.python_version()) == 1
    assert [k for k in samples if k[0] == "customer_sync_exporter_build_info"] == [
        ("customer_sync_exporter_build_info",
         (("python_version", platform.python_version()), ("version", __version__)))
    ]
    assert val(samples, "process_cpu_seconds_total") > 0
    assert val(samples, "process_resident_memory_bytes") > 0


def test_each_collector_keeps_one_thread_run_after_run() -> None:
    """One single-thread executor per collector: its runs never hop threads (docs/soak.md)."""
    seen: dict[str, set[int]] = {}

    class Where:
        def __init__(self, name: str) -> None:
            self.name = name

        def collect(self, deadline: Deadline) -> list[Metric]:
            seen.setdefault(self.name, set()).add(threading.get_ident())
            return []

    scraper = Scraper([Where("a"), Where("b"), Where("c")], 2.0, process_collector=False)
    try:
        for _ in range(20):
            scraper.scrape_shared(Deadline.after(2.0))
    finally:
        scraper.close()
    assert {name: len(threads) for name, threads in seen.items()} == {"a": 1, "b": 1, "c": 1}
    assert len(set().union(*seen.values())) == 3


def test_a_shared_scrape_trims_the_heap_once_per_interval() -> None:
    now = [0.0]
    trimmer = MallocTrimmer(interval=60.0, clock=lambda: now[0])
    scraper = Scraper([Steady("a")], 2.0, process_collector=False, trimmer=trimmer)  # type: ignore[list-item]
    try:
        for step in range(5):  # scrapes at 0, 30, 60, 90, 120 s
            now[0] = 30.0 * step
            scraper.scrape_shared(Deadline.after(2.0))
    finally:
        scraper.close()
    assert trimmer.trims == 3  # at 0, 60 and 120 s
