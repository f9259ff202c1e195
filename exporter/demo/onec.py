"""A local stand-in for the 1C HTTP service: the real 1C API cannot exist here, so this answers
like one, on loopback, and can be broken on purpose.

It serves ``GET <path>`` (default ``/freesport/hs/exchange/ping``, the shape of a 1C HTTP-service
URL: ``/<infobase>/hs/<root>/<template>``) with a small JSON health document, checks basic auth
or a bearer token when configured, and optionally speaks TLS with a given certificate. At run
time :meth:`OneCStandIn.set_mode` switches it into an outage: ``down`` (listener closed:
connection refused), ``reset`` (accepts, then closes without answering), ``error`` (HTTP 500),
``slow`` (answers after ``slow_seconds``), ``degraded`` (HTTP 200 but ``"status": "maintenance"``).
The demo and the tests use the same modes to inject faults.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import itertools
import json
import ssl
import threading
import time
from datetime import UTC, datetime
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from exporter.demo.ports import free_port

DEFAULT_PATH = "/freesport/hs/exchange/ping"


class Mode(StrEnum):
    OK = "ok"
    DOWN = "down"
    RESET = "reset"
    ERROR = "error"
    SLOW = "slow"
    DEGRADED = "degraded"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    stand_in: OneCStandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # failed TLS handshakes and clients that hang up are part of the job, not noise


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "1C-Enterprise-StandIn/8.3"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        stand_in = self.server.stand_in
        stand_in.count_request()
        mode = stand_in.mode
        if mode is Mode.RESET:
            self.close_connection = True
            self.connection.close()
            return
        if self.path.split("?", 1)[0] != stand_in.path:
            self._json(404, {"error": "not found", "path": self.path})
            return
        if not stand_in.authorized(self.headers.get("Authorization")):
            self._json(401, {"error": "unauthorized"}, {"WWW-Authenticate": 'Basic realm="1C"'})
            return
        if mode is Mode.SLOW and stand_in.wait_while_slow():
            return  # stopped while we were waiting
        if mode is Mode.ERROR:
            self._json(500, {"error": "infobase is locked", "code": "SessionStartProhibited"})
            return
        status = "maintenance" if mode is Mode.DEGRADED else "ok"
        self._json(200, stand_in.health(status))

    def _json(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


class OneCStandIn:
    """A threaded HTTP(S) server on 127.0.0.1 answering like a 1C HTTP-service health endpoint."""

    def __init__(
        self,
        *,
        port: int | None = None,
        path: str = DEFAULT_PATH,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        slow_seconds: float = 30.0,
        infobase: str = "freesport",
    ) -> None:
        self.port = port or free_port()
        self.path = path
        self.username = username
        self.password = password
        self.token = token
        self.certfile = certfile
        self.keyfile = keyfile
        self.slow_seconds = slow_seconds
        self.infobase = infobase
        self.mode = Mode.OK
        self.requests = 0
        self._lock = threading.Lock()
        self._unblock = threading.Event()  # set: slow handlers answer (or give up) now
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._outages: threading.Thread | None = None
        self._stopping = threading.Event()

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.certfile else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{self.path}"

    def start(self) -> OneCStandIn:
        self._stopping.clear()
        self._listen()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._unblock.set()
        self._close()
        if self._outages is not None:
            self._outages.join(5)
            self._outages = None

    def __enter__(self) -> OneCStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _listen(self) -> None:
        with self._lock:
            if self._server is not None:
                return
            server = _Server(("127.0.0.1", self.port), _Handler)
            server.stand_in = self
            if self.certfile:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(self.certfile, self.keyfile)
                # The handshake happens in the handler thread, so a stalled client blocks no one.
                server.socket = context.wrap_socket(
                    server.socket, server_side=True, do_handshake_on_connect=False
                )
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05},
                name="onec-stand-in", daemon=True,
            )  # fmt: skip
            self._thread.start()

    def _close(self) -> None:
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(5)

    # --- faults -----------------------------------------------------------------------------

    def set_mode(self, mode: Mode | str, *, slow_seconds: float | None = None) -> None:
        """Switch behaviour now; ``down`` closes the listener, any other mode reopens it."""
        mode = Mode(mode)
        if slow_seconds is not None:
            self.slow_seconds = slow_seconds
        previous, self.mode = self.mode, mode
        if previous is Mode.SLOW and mode is not Mode.SLOW:
            self._unblock.set()
        if mode is Mode.SLOW:
            self._unblock.clear()
        if mode is Mode.DOWN:
            self._close()
        elif not self._stopping.is_set():
            self._listen()

    def run_outages(
        self,
        *,
        every: float = 180.0,
        duration: float = 45.0,
        modes: tuple[Mode, ...] = (Mode.DOWN, Mode.ERROR, Mode.SLOW, Mode.DEGRADED),
    ) -> None:
        """For the demo: every ``every`` seconds, the next outage mode for ``duration`` seconds."""

        def loop() -> None:
            for mode in itertools.cycle(modes):
                if self._stopping.wait(max(0.0, every - duration)):
                    return
                self.set_mode(mode)
                if self._stopping.wait(duration):
                    return
                self.set_mode(Mode.OK)

        self._outages = threading.Thread(target=loop, name="onec-outages", daemon=True)
        self._outages.start()

    # --- used by the handler ----------------------------------------------------------------

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def wait_while_slow(self) -> bool:
        """Hold the answer; True if the server is stopping and should not answer at all."""
        self._unblock.wait(self.slow_seconds)
        return self._stopping.is_set()

    def authorized(self, header: str | None) -> bool:
        if self.username is None and self.token is None:
            return True
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if self.token is not None and scheme.lower() == "bearer":
            return hmac.compare_digest(value.encode(), self.token.encode())
        if self.username is not None and scheme.lower() == "basic":
            expected = f"{self.username}:{self.password or ''}".encode()
            try:
                given = base64.b64decode(value, validate=True)
            except ValueError:
                return False
            return hmac.compare_digest(given, expected)
        return False

    def health(self, status: str) -> dict[str, Any]:
        return {
            "status": status,
            "infobase": self.infobase,
            "platform": "8.3.24.1548",
            "configuration": "FREESPORT exchange 1.4",
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }


def main(argv: list[str] | None = None) -> None:
    """``python -m exporter.demo.onec --port 8081``: run the stand-in by hand."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--outages", action="store_true", help="cycle through outage modes")
    args = parser.parse_args(argv)
    stand_in = OneCStandIn(port=args.port, username=args.username, password=args.password)
    stand_in.start()
    if args.outages:
        stand_in.run_outages(every=60, duration=20)
    print(f"1C stand-in at {stand_in.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stand_in.stop()


if __name__ == "__main__":
    main()
