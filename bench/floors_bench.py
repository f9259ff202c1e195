"""What a serial scrape costs before any collector runs: the floors under issue 16's targets.

    .venv/bin/python bench/floors_bench.py [--tree <dir>]

Issue 16 asks a quiet scrape, exact at scrape time, for half the median of query-exporter
serving a cached body, with scrapes 0.75 s apart. This measures, on this machine, what no
collector's work can go below:

* **the HTTP floor**: ``/health/live`` of this exporter with every collector off (the same
  server, parser and thread hand-offs as ``/metrics``), median and CPU a request, beside a
  plain ``http.server.ThreadingHTTPServer`` answering 10 kB from a thread of its own process;
* **a PostgreSQL round trip**: ``SELECT 1`` on an open connection, back to back and after the
  connection sat idle 0.02 s and 0.2 s (the server process and this one sleep in between);
* **a cold interpreter**: a quiet ``/metrics`` scrape of the bench's collectors (synclog,
  business, postgres) on the bench's small data, 0.01 s, 0.2 s and 0.75 s after the last one;
* **idle CPU**: what the exporter process spends a second doing nothing.

Every figure is a median of that run; CPU is the kernel's process CPU clock.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ab_bench import start
from bench.scrape.data import bench_database
from bench.scrape.measure import cpu_seconds
from bench.scrape.ours import ours_ready, write_config
from bench.scrape.scraping import stop, wait_listening, wait_until

NO_COLLECTORS = "collectors:\n" + "".join(
    f"  {name}: {{enabled: false}}\n"
    for name in ("synclog", "business", "postgres", "redis", "disk", "onec", "process"))


def spaced(fn: Callable[[], object], spacing: float, n: int,
           pid: int | None = None) -> tuple[float, float]:
    """Median seconds of ``fn`` called ``spacing`` s after the last call, and the CPU of
    process ``pid`` in those calls (seconds a call)."""
    times, cpu = [], 0.0
    for _ in range(n):
        time.sleep(spacing)
        cpu0, t0 = (cpu_seconds(pid) if pid else 0.0), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpu += (cpu_seconds(pid) - cpu0) if pid else 0.0
    return statistics.median(times), cpu / n


def getter(conn: http.client.HTTPConnection, path: str,
           headers: dict[str, str] | None = None) -> Callable[[], bytes]:
    def get() -> bytes:
        conn.request("GET", path, headers=headers or {})
        return conn.getresponse().read()
    return get


class _TenKB(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # the answer in one write (unbuffered, Nagle and delayed ACKs add 40 ms)
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = b"x" * 10_000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


def http_floor(tree: Path, workdir: Path, n: int) -> None:
    config = workdir / "no-collectors.yaml"
    config.write_text(NO_COLLECTORS)
    proc, scraper = start(tree, config)
    try:
        wait_listening(scraper.conn.port, proc, "exporter")
        get = getter(scraper.conn, "/health/live")
        spaced(get, 0.0, 20)
        for spacing in (0.02, 0.2):
            median, cpu = spaced(get, spacing, n, proc.pid)
            print(f"  /health/live, no collectors, {spacing:g} s apart: {median * 1000:.2f} ms,"
                  f" CPU {cpu * 1000:.2f} ms a request")
        before = cpu_seconds(proc.pid)
        time.sleep(10)
        print(f"  idle exporter (no collectors): {(cpu_seconds(proc.pid) - before) * 100:.3f}"
              " ms of CPU a second")
    finally:
        stop(proc)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TenKB)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    get = getter(http.client.HTTPConnection("127.0.0.1", server.server_address[1]), "/")
    spaced(get, 0.0, 20)
    for spacing in (0.02, 0.2):
        median, _ = spaced(get, spacing, n)
        print(f"  http.server answering 10 kB (a thread of this process), {spacing:g} s apart:"
              f" {median * 1000:.2f} ms")
    server.shutdown()


def db_round_trip(dsn: str, n: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for spacing in (0.0, 0.02, 0.2):
            median, _ = spaced(lambda: conn.execute("SELECT 1").fetchall(), spacing, n)
            print(f"  SELECT 1, {spacing:g} s after the last: {median * 1000:.3f} ms")


def cold_scrapes(tree: Path, workdir: Path, url: str, n: int) -> None:
    proc, scraper = start(tree, write_config(workdir, url))
    try:
        wait_listening(scraper.conn.port, proc, "exporter")
        wait_until(scraper, proc, "exporter", ours_ready)
        spaced(scraper.get, 0.0, 10)
        for spacing in (0.01, 0.2, 0.75):
            median, cpu = spaced(scraper.get, spacing, n, proc.pid)
            print(f"  quiet /metrics, {spacing:g} s after the last: {median * 1000:.2f} ms,"
                  f" CPU {cpu * 1000:.2f} ms a scrape")
        before = cpu_seconds(proc.pid)
        time.sleep(10)
        print(f"  idle exporter (bench collectors): {(cpu_seconds(proc.pid) - before) * 100:.3f}"
              " ms of CPU a second")
    finally:
        stop(proc)


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent,
                   help="the source tree of the exporter to measure (default: this one)")
    p.add_argument("--n", type=int, default=40, help="calls a median")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/expo-bench"))
    args = p.parse_args()
    tree = args.tree.resolve()
    print(f"# floors of {tree}")
    with tempfile.TemporaryDirectory() as tmp:
        http_floor(tree, Path(tmp), args.n)
        with bench_database(args.data_dir, 20_000, 2, 20_000) as (dsn, url):
            db_round_trip(dsn, args.n)
            cold_scrapes(tree, Path(tmp), url, args.n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
