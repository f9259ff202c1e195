"""The HTTP face over a real server on 127.0.0.1:0, driven by a real Scraper and small collectors.

Every value checked comes from the collectors defined here, so the expected numbers are known
independently of the encoders under test.
"""

from __future__ import annotations

import gzip
import http.client
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text
from structlog.testing import capture_logs

from exporter.collector import CollectorError, Deadline, Reason, dependency_up
from exporter.http import ExporterApp, make_http_server, serve_in_thread
from exporter.scrape import Scraper
from tests.raw_http import exchange, request
from tests.synclog_rows import samples

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@dataclass
class Fixed:
    """Always succeeds with a gauge and a counter whose values the test chooses."""

    name: str
    gauge: float
    counter: float
    calls: int = 0

    def collect(self, deadline: Deadline) -> Iterable[Metric]:
        self.calls += 1
        g = GaugeMetricFamily(f"customer_sync_{self.name}_queue_length", "test gauge",
                              labels=["queue"])
        g.add_metric(["a"], self.gauge)
        g.add_metric(["b"], self.gauge * 2)
        c = CounterMetricFamily(f"customer_sync_{self.name}_events", "test counter")
        c.add_metric([], self.counter)
        return [g, c]


@dataclass
class Failing:
    """Fails with a reason and a message, handing back ``*_up 0`` as the partial result."""

    name: str
    message: str = "connection refused"

    def collect(self, deadline: Deadline) -> Iterable[Metric]:
        raise CollectorError(Reason.CONNECT, self.message,
                             partial=[dependency_up(self.name, "test dependency", False)])


@dataclass
class Slow:
    """Blocks until released (or 5 s), so a short scrape deadline expires first."""

    name: str
    release: threading.Event = field(default_factory=threading.Event)
    calls: int = 0

    def collect(self, deadline: Deadline) -> Iterable[Metric]:
        self.calls += 1
        self.release.wait(5)
        return [GaugeMetricFamily(f"customer_sync_{self.name}_value", "slow", value=1.0)]


@pytest.fixture
def serve() -> Iterator[object]:
    servers = []

    def start(collectors: list[object], required: Iterable[str] = (),
              timeout: float = 5.0, **app: Any) -> str:
        scraper = Scraper(collectors, timeout, process_collector=False)  # type: ignore[arg-type]
        server = make_http_server("127.0.0.1:0", ExporterApp(scraper, required, **app))
        serve_in_thread(server)
        servers.append((server, scraper))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server, scraper in servers:
        server.shutdown()
        server.server_close()
        scraper.close()


def test_metrics_text_format_carries_the_collector_values(serve: Any) -> None:
    base = serve([Fixed("alpha", gauge=3.5, counter=42.0)])
    r = requests.get(f"{base}/metrics", headers={"Accept-Encoding": "identity"}, timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    got = samples(parse_text(r.text))
    assert got[("customer_sync_alpha_queue_length", (("queue", "a"),))] == 3.5
    assert got[("customer_sync_alpha_queue_length", (("queue", "b"),))] == 7.0
    assert got[("customer_sync_alpha_events_total", ())] == 42.0
    assert got[("customer_sync_exporter_collector_success", (("collector", "alpha"),))] == 1.0
    assert int(r.headers["Content-Length"]) == len(r.content)


def test_metrics_openmetrics_by_accept_header(serve: Any) -> None:
    base = serve([Fixed("alpha", gauge=1.25, counter=7.0)])
    r = requests.get(f"{base}/metrics", headers={"Accept": "application/openmetrics-text"},
                     timeout=5)
    assert r.headers["Content-Type"] == OPENMETRICS
    assert r.text.endswith("# EOF\n")
    got = samples(parse_openmetrics(r.text))  # type: ignore[no-untyped-call]
    assert got[("customer_sync_alpha_queue_length", (("queue", "a"),))] == 1.25
    assert got[("customer_sync_alpha_events_total", ())] == 7.0


def test_metrics_gzip_when_accepted_and_identity_otherwise(serve: Any) -> None:
    base = serve([Fixed("alpha", gauge=9.0, counter=1.0)])
    port = int(base.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
    resp = conn.getresponse()
    raw = resp.read()
    assert resp.getheader("Content-Encoding") == "gzip"
    assert int(resp.getheader("Content-Length") or -1) == len(raw)
    assert raw[:2] == b"\x1f\x8b"
    body = gzip.decompress(raw).decode()
    conn.request("GET", "/metrics")  # no Accept-Encoding: identity
    plain = conn.getresponse()
    plain_body = plain.read().decode()
    conn.close()
    assert plain.getheader("Content-Encoding") is None
    key = ("customer_sync_alpha_queue_length", (("queue", "b"),))
    assert samples(parse_text(body))[key] == 18.0
    assert samples(parse_text(plain_body))[key] == 18.0


def test_scrape_timeout_header_shortens_the_deadline(serve: Any) -> None:
    slow = Slow("slowdep")
    base = serve([slow, Fixed("alpha", gauge=1.0, counter=1.0)], timeout=10.0)
    try:
        start = time.monotonic()
        # 1.0 s minus the 0.5 s offset: a 0.5 s deadline, far below the 10 s scrape_timeout.
        r = requests.get(f"{base}/metrics",
                         headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.0"}, timeout=5)
        elapsed = time.monotonic() - start
    finally:
        slow.release.set()
    assert r.status_code == 200
    assert elapsed < 2.0
    got = samples(parse_text(r.text))
    assert got[("customer_sync_exporter_collector_success", (("collector", "slowdep"),))] == 0.0
    assert got[("customer_sync_exporter_collector_failure",
                (("collector", "slowdep"), ("reason", "timeout")))] == 1.0
    assert got[("customer_sync_alpha_queue_length", (("queue", "a"),))] == 1.0


def test_landing_page_links_and_lists_collectors_with_escaped_reasons(serve: Any) -> None:
    base = serve([Fixed("alpha", gauge=1.0, counter=1.0),
                  Failing("beta", message="<script>alert(1)</script>")])
    first = requests.get(f"{base}/", timeout=5)
    assert first.status_code == 200
    assert first.headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<a href="/metrics">' in first.text
    assert "not run yet" in first.text  # nothing scraped yet
    requests.get(f"{base}/metrics", timeout=5)
    page = requests.get(f"{base}/", timeout=5).text
    assert "alpha" in page and "beta" in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_health_live_is_always_ok(serve: Any) -> None:
    base = serve([Failing("beta")], required=["beta"])
    r = requests.get(f"{base}/health/live", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"status": "ok"}


def test_health_ready_503_when_a_required_collector_fails(serve: Any) -> None:
    fixed = Fixed("alpha", gauge=1.0, counter=1.0)
    base = serve([fixed, Failing("beta")], required=["beta"])
    r = requests.get(f"{base}/health/ready", timeout=5)
    assert fixed.calls == 1  # no scrape had run: readiness ran one itself
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unready"
    assert body["dependencies"]["beta"] == {"ok": False, "required": True, "reason": "connect"}
    assert body["dependencies"]["alpha"] == {"ok": True, "required": False, "reason": None}


def test_health_ready_200_when_only_optional_collectors_fail(serve: Any) -> None:
    base = serve([Fixed("alpha", gauge=1.0, counter=1.0), Failing("beta")], required=["alpha"])
    r = requests.get(f"{base}/health/ready", timeout=5)
    assert r.status_code == 200
    assert r.json()["status"] == "ready"
    assert r.json()["dependencies"]["beta"]["ok"] is False


def test_health_ready_reads_fresh_results_and_collects_again_when_they_are_old(
    serve: Any,
) -> None:
    fixed = Fixed("alpha", gauge=1.0, counter=1.0)
    base = serve([fixed], required=["alpha"])
    requests.get(f"{base}/metrics", timeout=5)
    assert requests.get(f"{base}/health/ready", timeout=5).status_code == 200
    assert fixed.calls == 1  # the scrape's results are fresh: read, not collected again
    stale = Fixed("beta", gauge=1.0, counter=1.0)
    base = serve([stale], required=["beta"], ready_max_age=0.0)
    for _ in range(2):
        assert requests.get(f"{base}/health/ready", timeout=5).status_code == 200
    assert stale.calls == 2


def test_health_ready_joins_the_scrape_in_progress(serve: Any) -> None:
    slow = Slow("slow")
    base = serve([slow], required=["slow"])
    answers: dict[str, int] = {}

    def get(path: str) -> None:
        answers[path] = requests.get(f"{base}{path}", timeout=10).status_code

    scrape = threading.Thread(target=get, args=("/metrics",))
    scrape.start()
    while slow.calls == 0:
        time.sleep(0.01)
    ready = threading.Thread(target=get, args=("/health/ready",))
    ready.start()
    time.sleep(0.2)
    assert ready.is_alive()  # waiting for the scrape under way, not answering from nothing
    slow.release.set()
    scrape.join(10)
    ready.join(10)
    assert answers == {"/metrics": 200, "/health/ready": 200} and slow.calls == 1


def test_the_telemetry_path_moves_the_metrics_and_the_landing_page_follows(serve: Any) -> None:
    base = serve([Fixed("alpha", gauge=3.0, counter=1.0)], telemetry_path="/custom/metrics")
    r = requests.get(f"{base}/custom/metrics", timeout=5)
    assert r.status_code == 200 and "customer_sync_alpha_queue_length" in r.text
    assert requests.get(f"{base}/metrics", timeout=5).status_code == 404
    assert '<a href="/custom/metrics">Metrics</a>' in requests.get(f"{base}/", timeout=5).text


@pytest.mark.parametrize("path", ["/", "/health/live", "/health/ready", "metrics", ""])
def test_a_telemetry_path_that_hides_another_page_is_refused(path: str) -> None:
    with pytest.raises(ValueError, match="invalid telemetry path"):
        ExporterApp(Scraper([], 1.0, process_collector=False), telemetry_path=path)


def test_unknown_path_is_404(serve: Any) -> None:
    base = serve([Fixed("alpha", gauge=1.0, counter=1.0)])
    for path in ("/nope", "/metrics/extra", "/health"):
        r = requests.get(f"{base}{path}", timeout=5)
        assert r.status_code == 404, path
        assert r.text == "Not Found\n"


def scrapes_while_held(base: str, slow: Slow, n: int) -> list[int]:
    """Start ``n`` concurrent scrapes while ``slow`` holds the collection, release it and
    return their status codes."""
    results: list[int] = []

    def scrape() -> None:
        results.append(requests.get(f"{base}/metrics", timeout=10).status_code)

    threads = [threading.Thread(target=scrape) for _ in range(n)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    slow.release.set()
    for t in threads:
        t.join()
    return results


def test_concurrent_scrapes_share_one_collection(serve: Any) -> None:
    slow = Slow("slowdep")
    base = serve([slow], timeout=3.0)
    results = scrapes_while_held(base, slow, 5)
    assert results == [200] * 5
    assert slow.calls == 1  # single-flight: five scrapes, one collection


# --- methods, HEAD and negotiation over raw sockets ------------------------------------------

ALLOW = "GET, HEAD, OPTIONS"


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def test_head_metrics_answers_headers_without_a_body_or_a_scrape(serve: Any) -> None:
    fixed = Fixed("alpha", gauge=1.0, counter=1.0)
    port = port_of(serve([fixed]))
    plain = exchange(port, request("HEAD"), method="HEAD")
    assert (plain.status, plain.version) == (200, 11)
    assert plain.headers["Content-Type"] == CONTENT_TYPE_PLAIN_0_0_4
    assert plain.headers["Content-Encoding"] is None
    assert plain.headers["Content-Length"] is None  # only the scrape could tell
    assert plain.body == b""
    negotiated = exchange(port, request("HEAD", headers={
        "Accept": "application/openmetrics-text", "Accept-Encoding": "gzip"}), method="HEAD")
    assert negotiated.headers["Content-Type"] == OPENMETRICS
    assert negotiated.headers["Content-Encoding"] == "gzip"
    assert fixed.calls == 0  # no collection ran


@pytest.mark.parametrize("path", ["/", "/health/live", "/health/ready"])
def test_head_elsewhere_is_get_without_the_body(serve: Any, path: str) -> None:
    port = port_of(serve([Fixed("alpha", gauge=1.0, counter=1.0)]))
    get = exchange(port, request("GET", path))
    head = exchange(port, request("HEAD", path), method="HEAD")
    assert head.status == get.status == 200
    assert head.body == b""
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    assert int(head.headers["Content-Length"]) == len(get.body) > 0


@pytest.mark.parametrize(
    ("method", "body"),
    [("POST", b""), ("POST", b"x=1"), ("get", b""), ("BREW", b""), ("PUT", b"{}"),
     ("DELETE", b""), ("PATCH", b"x"), ("TRACE", b"")],
)
def test_other_methods_get_405_with_allow(serve: Any, method: str, body: bytes) -> None:
    fixed = Fixed("alpha", gauge=1.0, counter=1.0)
    port = port_of(serve([fixed]))
    for path in ("/metrics", "/", "/health/ready"):
        answer = exchange(port, request(method, path, body=body))
        assert (answer.status, answer.version) == (405, 11), (method, path)
        assert answer.headers["Allow"] == ALLOW
        assert b"customer_sync" not in answer.body
    assert fixed.calls == 0


def test_options_answers_allow(serve: Any) -> None:
    port = port_of(serve([Fixed("alpha", gauge=1.0, counter=1.0)]))
    for path in ("/metrics", "*"):
        answer = exchange(port, request("OPTIONS", path))
        assert answer.status == 200, path
        assert answer.headers["Allow"] == ALLOW
        assert answer.body == b""


def test_unknown_path_is_404_whatever_the_method(serve: Any) -> None:
    port = port_of(serve([Fixed("alpha", gauge=1.0, counter=1.0)]))
    for method in ("POST", "OPTIONS", "HEAD"):
        assert exchange(port, request(method, "/nope"), method=method).status == 404


def test_unparseable_accept_gets_the_text_format_and_no_traceback(serve: Any) -> None:
    port = port_of(serve([Fixed("alpha", gauge=2.5, counter=1.0)]))
    with capture_logs() as logs:
        answer = exchange(port, request("GET", headers={
            "Accept": "text/plain;version=abc;q=zz", "Accept-Encoding": "identity"}))
    assert answer.status == 200
    assert answer.headers["Content-Type"] == CONTENT_TYPE_PLAIN_0_0_4
    got = samples(parse_text(answer.body.decode()))
    assert got[("customer_sync_alpha_queue_length", (("queue", "a"),))] == 2.5
    assert not [e for e in logs if e["log_level"] in ("error", "critical")], logs


def test_q_zero_is_not_acceptable(serve: Any) -> None:
    port = port_of(serve([Fixed("alpha", gauge=4.0, counter=1.0)]))
    no_gzip = exchange(port, request("GET", headers={"Accept-Encoding": "gzip;q=0"}))
    assert no_gzip.headers["Content-Encoding"] is None
    assert samples(parse_text(no_gzip.body.decode()))[
        ("customer_sync_alpha_queue_length", (("queue", "a"),))] == 4.0
    text = exchange(port, request("GET", headers={
        "Accept": "application/openmetrics-text;q=0, text/plain;q=1"}))
    assert text.headers["Content-Type"] == CONTENT_TYPE_PLAIN_0_0_4
    assert not text.body.endswith(b"# EOF\n")
    om = exchange(port, request("GET", headers={
        "Accept": "text/plain;q=0.2, application/openmetrics-text;q=0.8",
        "Accept-Encoding": "identity;q=0.1, gzip;q=0.9"}))
    assert om.headers["Content-Type"] == OPENMETRICS
    assert om.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(om.body).endswith(b"# EOF\n")


def test_more_concurrent_scrapers_than_request_threads_all_get_answers(serve: Any) -> None:
    slow = Slow("slowdep")
    base = serve([slow], timeout=3.0)
    results = scrapes_while_held(base, slow, 40)  # the server runs 16
    assert results == [200] * 40  # the ones beyond 16 queued, none was refused
