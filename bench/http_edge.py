"""The HTTP edge of the real daemon: what each case of issue 12 gets, then slow clients.

    .venv/bin/python bench/http_edge.py                  # 1,000 clients, a byte every 5 s
    .venv/bin/python bench/http_edge.py --clients 300 --every 1s

Starts ``customer-sync-exporter serve`` as its own process on 127.0.0.1 (disk and process
collectors only, so no database is needed). First sends each request of the issue over a raw
socket and prints the status line (or what came instead) and the size of the body. Then
measures the daemon's threads (``/proc/PID/task``), RSS and
the latency of a normal scrape, then opens ``--clients`` connections that each send one byte of a
request head every ``--every`` (the slowloris attack of issue 12, which held one thread per
connection) and measures again while they trickle, until the server has cut them all at its
header timeout. Prints the baseline and the figures under attack side by side, and the
``customer_sync_exporter_http_connections_closed_total`` the daemon itself reports. Exits 1 if a
scrape took 1 s or more, the daemon gained a thread per client, or a client was never cut.
Loopback only; bounded by the header timeout (10 s) plus a few seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.config import parse_duration
from exporter.demo.postgres import free_port

HEAD = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow/" + b"y" * 200


def say(line: str) -> None:
    print(line, flush=True)


def start_daemon(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    logs = root / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("x\n")
    config = root / "exporter.yaml"
    config.write_text(
        "collectors:\n"
        "  synclog: {enabled: false}\n  business: {enabled: false}\n"
        "  postgres: {enabled: false}\n  redis: {enabled: false}\n  onec: {enabled: false}\n"
        f"  disk: {{enabled: true, dirs: [{{name: bench, path: '{logs}'}}]}}\n"
        "  process: {enabled: true}\n"
    )
    port = free_port()
    exe = Path(sys.executable).parent / "customer-sync-exporter"
    proc = subprocess.Popen(
        [str(exe), "serve", "--config.file", str(config),
         "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warning"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=(root / "exporter.log").open("wb"),
    )
    end = time.monotonic() + 30
    while time.monotonic() < end:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"http://127.0.0.1:{port}/health/live", timeout=1).ok:
                return proc, port
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"the daemon did not start: {(root / 'exporter.log').read_text()[-2000:]}")


CASES: list[tuple[str, bytes]] = [
    ("GET /metrics", b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("HEAD /metrics", b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("Accept: text/plain;version=abc;q=zz",
     b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain;version=abc;q=zz\r\n\r\n"),
    ("Accept-Encoding: gzip;q=0",
     b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip;q=0\r\n\r\n"),
    ("Accept: application/openmetrics-text;q=0, text/plain;q=1",
     b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
     b"Accept: application/openmetrics-text;q=0, text/plain;q=1\r\n\r\n"),
    ("garbage", b"garbage\r\n\r\n"),
    ("a method alone", b"GET\r\n\r\n"),
    ("four words", b"GET /metrics HTTP/1.1 extra\r\nHost: x\r\n\r\n"),
    ("HTTP/9.9", b"GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n"),
    ("binary", b"\x00\x01\x02\xff\xfe\x80\r\n\r\n"),
    ("POST /metrics", b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\na=1"),
    ("lowercase get", b"get /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("BREW /metrics", b"BREW /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("OPTIONS /metrics", b"OPTIONS /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
]


def probe(port: int, data: bytes) -> str:
    """The answer's status line and headers of interest, and the body's size."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        raw = b""
        with contextlib.suppress(TimeoutError):
            sock.settimeout(1.5)
            while chunk := sock.recv(65536):
                raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/"):
        return f"no status line: {raw[:60]!r}"
    keep = ("content-type", "content-encoding", "allow")
    headers = [h for h in lines[1:] if h.split(":", 1)[0].lower() in keep]
    return f"{lines[0]} | {'; '.join(headers)} | body {len(body)} bytes"


def scrape_ms(port: int) -> float:
    started = time.perf_counter()
    r = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10,
                     headers={"Connection": "close"})
    r.raise_for_status()
    return (time.perf_counter() - started) * 1000


def closed_counters(port: int) -> dict[str, float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^customer_sync_exporter_http_connections_closed_total\{reason="(\w+)"\} (\S+)$',
        text, re.M)}


def figures(proc: psutil.Process, port: int, scrapes: int = 5) -> tuple[int, float, list[float]]:
    latencies = [scrape_ms(port) for _ in range(scrapes)]
    return proc.num_threads(), proc.memory_info().rss / 2**20, latencies


def open_slow_clients(port: int, count: int) -> list[socket.socket]:
    slow = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setblocking(False)
        slow.append(sock)
    return slow


def trickle(slow: list[socket.socket], every: float, stop: threading.Event) -> None:
    """One byte of :data:`HEAD` to each client every ``every`` seconds, until ``stop``."""
    for i in range(len(HEAD)):
        for sock in slow:
            with contextlib.suppress(OSError):  # cut by the daemon: expected
                sock.send(HEAD[i:i + 1])
        if stop.wait(every):
            return


@dataclass
class UnderAttack:
    threads: int
    rss_mib: float
    latencies: list[float]
    cut_after: float | None  # seconds from opening until the daemon had cut every client


def watch_until_cut(daemon: psutil.Process, port: int, opened: float, threads0: int,
                    rss0: float) -> UnderAttack:
    """Peak threads and RSS and one scrape's latency every half second, for up to 30 s."""
    seen = UnderAttack(threads0, rss0, [], None)
    while time.monotonic() - opened < 30:
        threads, rss, lat = figures(daemon, port, scrapes=1)
        seen.threads, seen.rss_mib = max(seen.threads, threads), max(seen.rss_mib, rss)
        seen.latencies += lat
        open_now = sum(1 for c in daemon.net_connections(kind="tcp")
                       if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)
        if open_now == 0:
            seen.cut_after = time.monotonic() - opened
            break
        time.sleep(0.5)
    return seen


def slowloris(daemon: psutil.Process, port: int, clients: int, every: str) -> bool:
    """The baseline, then ``clients`` slow clients: print both, True if the daemon held."""
    threads0, rss0, lat0 = figures(daemon, port)
    say(f"[slow] baseline: threads={threads0} rss_mib={rss0:.1f} "
        f"scrape_ms max={max(lat0):.1f} median={sorted(lat0)[len(lat0) // 2]:.1f}")
    opened = time.monotonic()
    slow = open_slow_clients(port, clients)
    stop = threading.Event()
    try:
        threading.Thread(target=trickle, args=(slow, parse_duration(every), stop),
                         daemon=True).start()
        time.sleep(1.0)
        seen = watch_until_cut(daemon, port, opened, threads0, rss0)
    finally:
        stop.set()
        for sock in slow:
            sock.close()
    closed = closed_counters(port)
    lat = seen.latencies
    say(f"[slow] {clients} clients, a byte every {every}: threads peak={seen.threads} "
        f"rss_mib peak={seen.rss_mib:.1f} (+{seen.rss_mib - rss0:.1f}) scrape_ms "
        f"max={max(lat):.1f} median={sorted(lat)[len(lat) // 2]:.1f} over {len(lat)} scrapes")
    say(f"[slow] all cut after {seen.cut_after:.1f} s" if seen.cut_after is not None
        else "[slow] still open after 30 s")
    say(f"[slow] daemon's customer_sync_exporter_http_connections_closed_total: {closed}")
    return (max(lat) < 1000 and seen.threads < threads0 + 20 and seen.cut_after is not None
            and closed.get("header_timeout", 0) >= clients)


def remove_tree(root: Path) -> None:
    with contextlib.suppress(OSError):
        for f in root.rglob("*"):
            if f.is_file():
                f.unlink()
        for d in sorted(root.rglob("*"), reverse=True):
            d.rmdir()
        root.rmdir()


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--every", default="5s", help="one byte per client this often (default 5s)")
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.clients + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.clients + 100), hard))
    root = Path(tempfile.mkdtemp(prefix="csx-slow-"))
    proc, port = start_daemon(root)
    try:
        for name, data in CASES:
            say(f"[case] {name:<58} -> {probe(port, data)}")
        ok = slowloris(psutil.Process(proc.pid), port, a.clients, a.every)
        say(f"[slow] result: {'PASS' if ok else 'FAIL'}")
        return 0 if ok else 1
    finally:
        proc.terminate()
        proc.wait(15)
        remove_tree(root)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
