"""The live pipeline: a reload swaps one reference, together with the reload status, and the
pipeline it replaces serves the requests already inside it before it closes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import requests
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import Deadline
from exporter.http import ExporterApp, make_http_server, serve_in_thread
from exporter.live import Lease, Live
from exporter.pipeline import Pipeline
from exporter.reload import ReloadStatus
from exporter.scrape import Scraper

RELOAD_OK = "customer_sync_exporter_config_last_reload_successful"


@dataclass
class Gauge:
    """One gauge, ``value``; with ``hold`` set, each run waits for ``release`` first."""

    value: float
    name: str = "gauge"
    hold: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    closed: bool = False

    def collect(self, deadline: Deadline) -> Iterable[Metric]:
        self.started.set()
        if self.hold:
            self.release.wait(10)
        return [GaugeMetricFamily("customer_sync_gauge_value", "test", value=self.value)]

    def close(self) -> None:
        self.closed = True


def pipeline(collector: Gauge, timeout: float = 5.0) -> Pipeline:
    return Pipeline(Scraper([collector], timeout, process_collector=False))


def reload_ok(lease: Lease) -> float:
    (family,) = [f for f in lease.extra if f.name == RELOAD_OK]
    return family.samples[0].value


def test_a_lease_holds_the_pipeline_it_took_across_a_swap() -> None:
    old, new = pipeline(Gauge(1.0)), pipeline(Gauge(2.0))
    live = Live(old)
    with live.lease() as lease:
        assert live.swap(new) is old
        assert lease.pipeline is old and not old.closed.is_set()
        with live.lease() as later:
            assert later.pipeline is new
    assert old.closed.wait(5) and not new.closed.is_set()
    new.close()


def test_the_swap_and_the_reload_status_are_one_step() -> None:
    """While the swap's step runs (it is slowed down here), a request waits; it never sees the
    new pipeline with the old status, nor the old one with the new status."""
    status = ReloadStatus()
    old, new = pipeline(Gauge(1.0)), pipeline(Gauge(2.0))
    live = Live(old, status=status)
    status.failed()  # a rejected file earlier: 0 while the old config serves
    with live.lease() as before:
        assert (before.pipeline, reload_ok(before)) == (old, 0.0)
    swapped = threading.Event()
    seen: list[tuple[Pipeline, float]] = []

    def request() -> None:
        swapped.wait(5)
        with live.lease() as lease:
            seen.append((lease.pipeline, reload_ok(lease)))

    def commit() -> None:
        live.swap(new)
        swapped.set()
        time.sleep(0.3)  # the request has started by now, and must wait for the status

    thread = threading.Thread(target=request)
    thread.start()
    status.succeeded(commit)
    thread.join(5)
    assert seen == [(new, 1.0)]
    new.close()


def test_a_request_inside_the_old_pipeline_finishes_with_it_after_a_reload() -> None:
    """Over HTTP: a scrape held inside the old pipeline answers 200 with the old collectors'
    numbers after the swap; new scrapes get the new ones at once; the old pipeline closes when
    the held scrape is out."""
    held, fresh = Gauge(1.0, hold=True), Gauge(2.0)
    old, new = pipeline(held), pipeline(fresh)
    live = Live(old)
    server = make_http_server("127.0.0.1:0", ExporterApp(live))
    serve_in_thread(server)
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    answers: list[requests.Response] = []
    try:
        inside = threading.Thread(target=lambda: answers.append(requests.get(url, timeout=10)))
        inside.start()
        assert held.started.wait(5)
        live.swap(new)
        assert value(requests.get(url, timeout=5).text) == 2.0
        time.sleep(0.2)
        assert not held.closed and not old.closed.is_set()  # the held scrape is still inside
        held.release.set()
        inside.join(10)
        assert answers[0].status_code == 200 and value(answers[0].text) == 1.0
        assert old.closed.wait(5) and held.closed
    finally:
        held.release.set()
        server.shutdown()
        server.server_close()
        new.close()


def value(text: str) -> float:
    (family,) = [f for f in text_string_to_metric_families(text)
                 if f.name == "customer_sync_gauge_value"]
    return family.samples[0].value
