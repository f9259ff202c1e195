"""Scraping an exporter as Prometheus does, serially or from concurrent processes."""

from __future__ import annotations

import gzip
import http.client
import multiprocessing
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.scrape.common import CONCURRENT_SCRAPERS, CONCURRENT_SECONDS
from bench.scrape.measure import pct
from exporter.demo.processes import stop_process

# What Prometheus 2.x (Debian 12 ships 2.42) sends with every scrape: OpenMetrics preferred,
# gzip accepted. Each exporter answers in what it supports (query-exporter never gzips).
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
              "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "User-Agent": "scrape_bench",
}


class ScrapeError(Exception):
    pass


SCRAPE_ERRORS = (OSError, http.client.HTTPException, ScrapeError)


class Scraper:
    """One scraper's connection, kept alive where the server allows it, reopened where not.

    http.client rather than requests: the client's own cost is in every figure, for both
    exporters alike, so it should be small.
    """

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self) -> bytes:
        """One scrape as Prometheus asks for it; the body as sent (gzipped when so encoded)."""
        try:
            self.conn.request("GET", "/metrics", headers=PROMETHEUS_HEADERS)
            response = self.conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            raise
        if response.status != 200:
            raise ScrapeError(f"HTTP {response.status}")
        return body

    def text(self) -> str:
        body = self.get()
        return (gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body).decode()


def _scrape_until(port: int, ready: Any, go: Any, end: Any, results: Any) -> None:
    """One concurrent scraper (its own process): scrape from ``go`` until ``end``."""
    scraper = Scraper(port)
    ready.release()
    go.wait()
    latencies: list[float] = []
    errors = 0
    while (start := time.monotonic()) < end.value:
        try:
            scraper.get()
        except SCRAPE_ERRORS:
            errors += 1
            continue
        if (done := time.monotonic()) <= end.value:  # only scrapes finished in the window
            latencies.append(done - start)
    results.put((latencies, errors))


def concurrent(port: int) -> tuple[float, float, int]:
    """Scrapes/s, p95 and errors of CONCURRENT_SCRAPERS scrapers for CONCURRENT_SECONDS.

    Each scraper is a process: threads of one Python process share its GIL, which capped both
    exporters at the same ~480 scrapes/s and measured the client, not the server.
    """
    ctx = multiprocessing.get_context("spawn")  # this process holds threads and connections
    ready, go, end, results = ctx.Semaphore(0), ctx.Event(), ctx.Value("d", 0.0), ctx.Queue()
    procs = [ctx.Process(target=_scrape_until, args=(port, ready, go, end, results))
             for _ in range(CONCURRENT_SCRAPERS)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            if not ready.acquire(timeout=120):
                raise RuntimeError("a scraper process did not start within 120 s")
        end.value = time.monotonic() + CONCURRENT_SECONDS
        go.set()
        out = [results.get(timeout=CONCURRENT_SECONDS + 120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    latencies = [t for ts, _ in out for t in ts]
    return (len(latencies) / CONCURRENT_SECONDS, pct(latencies, 0.95),
            sum(e for _, e in out))


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> float:
    """Block until the port accepts a connection; return that moment (monotonic)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return time.monotonic()
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen within 120 s")
        time.sleep(0.02)


def wait_until(scraper: Scraper, proc: subprocess.Popen[bytes], what: str,
               ready: Callable[[str], bool], timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = scraper.text()
            if ready(text):
                return text
        except SCRAPE_ERRORS:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout:.0f} s")
        time.sleep(0.05)


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 30 s (the 10M floor's exporter may be mid-query)."""
    stop_process(proc, timeout=30)
