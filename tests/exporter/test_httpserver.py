"""The HTTP server against raw sockets on 127.0.0.1: malformed requests, HTTP versions, keep-alive,
pipelining, every timeout, the connection limit, TLS handshakes, and a thousand slow clients.

The server runs in this process (as in the daemon: a selector thread and a pool of request
threads), so its threads are counted with ``threading.enumerate()``. Timeouts are set short per
test so each case takes seconds; the defaults are checked on their own.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.collector import Deadline
from exporter.http import ExporterApp, make_http_server, serve_in_thread
from exporter.httpserver import CLOSE_REASONS, ConnectionStats, HTTPServer, Limits
from exporter.live import Live
from exporter.pipeline import Pipeline
from exporter.scrape import Scraper
from tests.raw_http import Client, closed_by_peer, connect, exchange, request
from tests.tls_certs import atomic_write, issue, make_ca


class Value:
    """One gauge, so a 200 is shown to carry the real /metrics."""

    name = "probe"

    def __init__(self) -> None:
        self.calls = 0

    def collect(self, deadline: Deadline) -> list[Metric]:
        self.calls += 1
        return [GaugeMetricFamily("customer_sync_probe_value", "test", value=42.0)]


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class Running:
    def __init__(self, server: HTTPServer, stats: ConnectionStats, scraper: Scraper | None) -> None:
        self.server, self.stats, self.scraper = server, stats, scraper

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


@pytest.fixture
def start() -> Iterator[Callable[..., Running]]:
    running: list[Running] = []

    def _start(app: Callable[..., Any] | None = None, *, web_config_file: Path | None = None,
               **limits: Any) -> Running:
        stats = ConnectionStats()
        scraper = None
        if app is None:
            scraper = Scraper([Value()], 5.0, process_collector=False)
            app = ExporterApp(Live(Pipeline(scraper), extra=stats.families))
        server = make_http_server("127.0.0.1:0", app, web_config_file=web_config_file,
                                  limits=Limits(**limits), stats=stats)
        serve_in_thread(server)
        running.append(Running(server, stats, scraper))
        return running[-1]

    yield _start
    for r in running:
        r.server.shutdown()
        r.server.server_close()
        if r.scraper is not None:
            r.scraper.close()


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def server_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("http")]


# --- malformed requests and versions --------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"garbage\r\n\r\n",
        b"GET\r\n\r\n",  # a method alone
        b"GET /metrics HTTP/1.1 extra\r\nHost: x\r\n\r\n",  # four words
        b"GET /metrics\r\n\r\n",  # HTTP/0.9 form
        b"\x00\x01\x02\xff\xfe\x80\r\n\r\n",  # binary
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(32)),  # a TLS ClientHello
        b"GET /metrics HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Space : before the colon\r\n\r\n",
    ],
)
def test_malformed_requests_get_400_with_a_status_line(start: Any, data: bytes) -> None:
    s = start(hello)
    with Client.to(s.port) as client:
        client.send(data)
        first = client.sock.recv(12, socket.MSG_PEEK)
        answer = client.answer()
        assert client.closed_by_peer(3.0)
    assert first == b"HTTP/1.1 400"
    assert (answer.status, answer.reason) == (400, "Bad Request")
    assert answer.headers["Connection"] == "close"
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert answer.body == b"400 Bad Request\n"
    assert s.stats.closed["bad_request"] == 1


@pytest.mark.parametrize("version", [b"HTTP/9.9", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/3.0"])
def test_an_unsupported_major_version_gets_505(start: Any, version: bytes) -> None:
    s = start(hello)
    answer = exchange(s.port, b"GET /metrics " + version + b"\r\nHost: x\r\n\r\n")
    assert (answer.status, answer.version) == (505, 11)
    assert answer.body == b"505 HTTP Version Not Supported\n"
    assert answer.will_close


def test_http_1_0_is_answered_and_closed(start: Any) -> None:
    s = start(hello)
    with Client.to(s.port) as client:
        client.send(b"GET /x HTTP/1.0\r\n\r\n")
        answer = client.answer()
        assert client.closed_by_peer(3.0)
    assert (answer.status, answer.body) == (200, b"GET /x\n")


def test_a_head_over_the_limit_gets_431(start: Any) -> None:
    s = start(hello, max_header_bytes=4096)
    big = request("GET", headers={f"X-Pad-{i}": "y" * 100 for i in range(60)})
    assert len(big) > 4096
    answer = exchange(s.port, big)
    assert answer.status == 431
    assert exchange(s.port, request("GET", "/ok")).body == b"GET /ok\n"


def test_a_head_split_byte_by_byte_is_still_served(start: Any) -> None:
    s = start(hello)
    with Client.to(s.port) as client:
        for byte in request("GET", "/slowly-but-in-time"):
            client.send(bytes([byte]))
        assert client.answer().body == b"GET /slowly-but-in-time\n"


def test_underscore_headers_cannot_pose_as_dashed_ones(start: Any) -> None:
    seen: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(environ)
        return hello(environ, start_response)

    s = start(app)
    exchange(s.port, request("GET", headers={"X_Prometheus_Scrape_Timeout_Seconds": "0.1",
                                             "X-Real": "1"}))
    assert "HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS" not in seen[0]
    assert seen[0]["HTTP_X_REAL"] == "1"


# --- several listeners ----------------------------------------------------------------------


def test_one_server_answers_on_each_of_several_listeners() -> None:
    def where(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}".encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    stats = ConnectionStats()
    server = make_http_server(["127.0.0.1:0", "127.0.0.1:0"], where, stats=stats)
    serve_in_thread(server)
    try:
        ports = [int(a[1]) for a in server.server_addresses]
        assert len(set(ports)) == 2 and server.server_address[1] == ports[0]
        with Client.to(ports[0]) as first, Client.to(ports[1]) as second:
            first.send(request("GET", "/"))
            second.send(request("GET", "/"))
            answers = [first.answer().body, second.answer().body]
            assert stats.open == 2  # one table for both listeners
        assert answers == [f"127.0.0.1:{p}".encode() for p in ports]
    finally:
        server.shutdown()
        server.server_close()
    for port in ports:  # both sockets are closed with the server
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))


# --- keep-alive and pipelining ------------------------------------------------------------------


def test_keep_alive_and_pipelining(start: Any) -> None:
    s = start(hello)
    with Client.to(s.port) as client:
        client.send(request("GET", "/one"))
        assert client.answer().body == b"GET /one\n"
        client.send(request("GET", "/two") + request("HEAD", "/three") + request("GET", "/four"))
        assert client.answer().body == b"GET /two\n"
        head = client.answer(method="HEAD")
        assert head.body == b"" and head.headers["Content-Length"] == str(len(b"HEAD /three\n"))
        assert client.answer().body == b"GET /four\n"
    assert s.stats.closed == dict.fromkeys(CLOSE_REASONS, 0)


def test_a_request_with_a_body_is_answered_then_closed(start: Any) -> None:
    s = start(hello)
    with Client.to(s.port) as client:
        client.send(request("POST", "/x", body=b"a" * 1000))
        answer = client.answer()
        assert client.closed_by_peer(3.0)
    assert answer.body == b"POST /x\n"
    assert answer.headers["Connection"] == "close"


def test_a_failing_app_gets_500_and_the_server_keeps_serving(start: Any) -> None:
    def broken(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("bug")
        if environ["PATH_INFO"] == "/crlf":
            start_response("200 OK", [("X-Bad", "a\r\nInjected: yes")])
            return [b""]
        return hello(environ, start_response)

    s = start(broken)
    for path in ("/boom", "/crlf"):
        answer = exchange(s.port, request("GET", path))
        assert answer.status == 500, path
        assert answer.headers["Injected"] is None
    assert exchange(s.port, request("GET", "/fine")).status == 200


# --- timeouts ----------------------------------------------------------------------------------


def test_header_timeout_cuts_a_trickling_client(start: Any) -> None:
    s = start(hello, header_timeout=1.0)
    with connect(s.port) as sock:
        started = time.monotonic()
        cut = False
        for byte in b"GET /never-finished HTTP/1.1\r\nHost: x\r\n":
            try:
                sock.send(bytes([byte]))
            except OSError:
                cut = True
                break
            time.sleep(0.1)
            if time.monotonic() - started > 3:
                break
        assert cut or closed_by_peer(sock, 2.0)
        elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 2.0  # the deadline is for the whole head, not each byte
    assert wait_until(lambda: s.stats.closed["header_timeout"] == 1, 1.0)


def test_header_timeout_cuts_a_silent_client(start: Any) -> None:
    s = start(hello, header_timeout=0.5)
    with connect(s.port) as sock:
        started = time.monotonic()
        assert closed_by_peer(sock, 3.0)
        assert 0.4 < time.monotonic() - started < 1.5
    assert s.stats.closed["header_timeout"] == 1


def test_idle_timeout_closes_an_unused_keep_alive_connection(start: Any) -> None:
    s = start(hello, idle_timeout=0.6, header_timeout=5.0)
    with Client.to(s.port) as client:
        client.send(request("GET", "/a"))
        client.answer()
        time.sleep(0.3)
        client.send(request("GET", "/b"))  # used within the idle timeout: still open
        client.answer()
        started = time.monotonic()
        assert client.closed_by_peer(3.0)
        assert 0.5 < time.monotonic() - started < 1.5
    assert s.stats.closed["idle_timeout"] == 1


def test_write_timeout_drops_a_client_that_never_reads(start: Any) -> None:
    big = b"x" * (32 * 1024 * 1024)  # more than both sides' socket buffers hold

    def bulky(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", str(len(big)))])
        return [big]

    s = start(bulky, write_timeout=0.5)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with sock:
        sock.connect(("127.0.0.1", s.port))
        sock.sendall(request("GET", "/big"))
        assert wait_until(lambda: s.stats.closed["write_timeout"] == 1, 5.0)
    assert exchange(s.port, request("GET", "/after")).status == 200  # and it still serves


def test_default_limits_are_bounded() -> None:
    limits = Limits()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert 0 < limits.header_timeout <= 60
    assert 0 < limits.idle_timeout <= 300
    assert 0 < limits.write_timeout <= 60
    assert 0 < limits.max_header_bytes <= 64 * 1024
    assert 16 <= limits.max_connections <= min(1024, soft)
    assert 0 < limits.request_threads <= 32


# --- the connection limit --------------------------------------------------------------------


def test_at_the_limit_the_longest_waiting_connection_makes_room(start: Any) -> None:
    s = start(max_connections=20, header_timeout=30.0)
    idle = [connect(s.port) for _ in range(30)]
    try:
        assert wait_until(lambda: s.stats.closed["limit"] == 10, 3.0), s.stats.closed
        assert s.stats.open == 20
        # the ten oldest were closed, the newer ones are still open
        assert all(closed_by_peer(sock, 1.0) for sock in idle[:10])
        assert not any(closed_by_peer(sock, 0.05) for sock in idle[10:])
        started = time.monotonic()
        answer = exchange(s.port, request("GET"))  # one more: served, an old one gives way
        assert time.monotonic() - started < 1.0
        assert b"customer_sync_probe_value 42.0" in answer.body
    finally:
        for sock in idle:
            sock.close()


# --- TLS ---------------------------------------------------------------------------------------


def test_slow_tls_handshakes_hold_no_thread_and_time_out(start: Any, tmp_path: Path) -> None:
    ca = make_ca("Exporter Test CA")
    issue(ca, "exporter").write(tmp_path, "server")
    atomic_write(tmp_path / "web.yml", "tls_server_config:\n  cert_file: server.crt\n"
                                       "  key_file: server.key\n")
    s = start(web_config_file=tmp_path / "web.yml", header_timeout=1.5)
    stalled = []
    for i in range(100):
        sock = connect(s.port)
        if i % 2:  # half send the start of a ClientHello, half nothing at all
            sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        stalled.append(sock)
    try:
        ctx = ssl.create_default_context(cadata=ca.cert_pem)
        started = time.monotonic()
        with Client(ctx.wrap_socket(connect(s.port), server_hostname="127.0.0.1")) as tls:
            tls.send(request("GET"))
            answer = tls.answer()
        assert time.monotonic() - started < 1.0
        assert b"customer_sync_probe_value 42.0" in answer.body
        assert len(server_threads()) <= 1 + Limits().request_threads
        assert wait_until(lambda: s.stats.closed["header_timeout"] == 100, 4.0), s.stats.closed
        assert all(closed_by_peer(sock, 0.5) for sock in stalled)
    finally:
        for sock in stalled:
            sock.close()


def test_a_large_answer_over_tls_arrives_whole_to_a_slow_reader(start: Any, tmp_path: Path) -> None:
    ca = make_ca("Exporter Test CA")
    issue(ca, "exporter").write(tmp_path, "server")
    atomic_write(tmp_path / "web.yml", "tls_server_config:\n  cert_file: server.crt\n"
                                       "  key_file: server.key\n")
    big = bytes(range(256)) * (8 * 1024)  # 2 MiB: many TLS records, many partial writes

    def bulky(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", str(len(big)))])
        return [big]

    s = start(bulky, web_config_file=tmp_path / "web.yml")
    ctx = ssl.create_default_context(cadata=ca.cert_pem)
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", s.port))
    with Client(ctx.wrap_socket(raw, server_hostname="127.0.0.1")) as tls:
        for path in ("/one", "/two"):  # and the connection stays usable after it
            tls.send(request("GET", path))
            time.sleep(0.2)  # let the server fill the buffers and wait for us
            assert tls.answer().body == big


# --- a thousand slow clients -------------------------------------------------------------------

SLOW_CLIENTS = 1000


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        assert hard == resource.RLIM_INFINITY or hard >= needed, (
            f"ulimit -n: need {needed} descriptors (both ends of {SLOW_CLIENTS} connections), "
            f"the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def test_a_thousand_slow_clients_hold_no_threads_and_scrapes_stay_fast(start: Any) -> None:
    """1,000 connections that trickle a header byte every second (the issue's attack, faster)."""
    _raise_fd_limit(2 * SLOW_CLIENTS + 200)
    header_timeout = 4.0
    s = start(header_timeout=header_timeout, max_connections=2 * SLOW_CLIENTS)
    me = psutil.Process()
    exchange(s.port, request("GET"))  # warm: the first scrape, the pool thread
    threads_before, rss_before = threading.active_count(), me.memory_info().rss
    slow = [connect(s.port) for _ in range(SLOW_CLIENTS)]
    stop = threading.Event()
    head = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"y" * 100

    def trickle() -> None:
        for i in range(len(head)):
            for sock in slow:
                with contextlib.suppress(OSError):  # cut by the server: expected
                    sock.send(head[i:i + 1])
            if stop.wait(1.0):
                return

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        assert wait_until(lambda: s.stats.open >= SLOW_CLIENTS, 5.0), s.stats.open
        latencies, peak_threads, peak_rss = [], 0, 0
        for _ in range(5):
            started = time.monotonic()
            answer = exchange(s.port, request("GET"))
            latencies.append(time.monotonic() - started)
            assert answer.status == 200
            assert b"customer_sync_probe_value 42.0" in answer.body
            peak_threads = max(peak_threads, threading.active_count())
            peak_rss = max(peak_rss, me.memory_info().rss)
            time.sleep(0.3)
        open_during = s.stats.open
        server_during = len(server_threads())
        # every slow client cut at the header timeout, however it kept trickling
        assert wait_until(lambda: s.stats.closed["header_timeout"] >= SLOW_CLIENTS,
                          header_timeout + 3.0), s.stats.closed
        assert wait_until(lambda: s.stats.open <= 1, 2.0), s.stats.open
        families = parse_text(exchange(s.port, request("GET")).body.decode())
        closed = {smp.labels["reason"]: smp.value for f in families for smp in f.samples
                  if smp.name == "customer_sync_exporter_http_connections_closed_total"}
    finally:
        stop.set()
        trickler.join(5)
        for sock in slow:
            sock.close()
    print(f"\n[slow clients] {SLOW_CLIENTS} open ({open_during} seen by the server), "
          f"threads {threads_before} -> peak {peak_threads} (server threads {server_during}), "
          f"RSS {rss_before / 2**20:.1f} -> peak {peak_rss / 2**20:.1f} MiB "
          f"(+{(peak_rss - rss_before) / 2**20:.1f}, both ends of every connection), "
          f"scrape latency max {max(latencies) * 1000:.0f} ms, "
          f"median {sorted(latencies)[2] * 1000:.0f} ms")
    assert open_during >= SLOW_CLIENTS
    assert max(latencies) < 1.0
    assert peak_threads <= threads_before + 1  # + the test's own trickler; none for the clients
    assert server_during <= 1 + Limits().request_threads
    assert peak_rss - rss_before < 48 * 2**20
    assert closed["header_timeout"] >= SLOW_CLIENTS


SERVE_WITH_FEW_FDS = """
import resource, sys, threading
from exporter.http import make_http_server
from exporter.httpserver import Limits
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))

def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "3")])
    return [b"ok\\n"]

server = make_http_server("127.0.0.1:0", app, limits=Limits(max_connections=500))
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
"""


def test_out_of_descriptors_the_server_pauses_instead_of_spinning() -> None:
    """A connection limit above what ``ulimit -n`` allows: accept fails with EMFILE."""
    proc = subprocess.Popen([sys.executable, "-c", SERVE_WITH_FEW_FDS], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    held: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        held = [connect(port) for _ in range(100)]  # more than 64 descriptors
        server = psutil.Process(proc.pid)
        time.sleep(0.5)
        before = sum(server.cpu_times()[:2])
        time.sleep(1.0)
        busy = sum(server.cpu_times()[:2]) - before
        assert busy < 0.3, f"{busy:.2f} s of CPU in 1 s: the accept loop spins"
        for sock in held:
            sock.close()
        assert wait_until(lambda: _served(port), 5.0)
    finally:
        for sock in held:
            sock.close()
        proc.kill()
        out, err = proc.communicate(timeout=10)
    assert "accepting HTTP connections failed; pausing" in out + err  # EMFILE did happen


def _served(port: int) -> bool:
    try:
        return exchange(port, request("GET"), timeout=1.0).body == b"ok\n"
    except OSError:
        return False
