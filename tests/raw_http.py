"""HTTP over raw sockets for the server tests: we write the bytes, the standard library's
``http.client`` parses the answer (a parser independent of the h11 the server uses).
"""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass
from typing import Any


@dataclass
class Answer:
    status: int
    version: int  # 11 for HTTP/1.1: a real status line was read
    reason: str
    headers: http.client.HTTPMessage
    body: bytes
    will_close: bool


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


class _KeepOpen:
    """A read buffer ``HTTPResponse`` may not close: it reads ahead, and a pipelined answer it
    read ahead would be lost with the buffer."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def close(self) -> None:
        pass


class Client:
    """One connection: send bytes, read answers (pipelined ones too), see whether it is closed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._file = sock.makefile("rb")
        self._keep = _KeepOpen(self._file)

    @classmethod
    def to(cls, port: int, timeout: float = 5.0) -> Client:
        return cls(connect(port, timeout))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self, method: str = "GET") -> Answer:
        resp = http.client.HTTPResponse(self, method=method)  # type: ignore[arg-type]
        resp.begin()
        body = resp.read()
        return Answer(resp.status, resp.version, resp.reason, resp.headers, body, resp.will_close)

    def makefile(self, mode: str) -> _KeepOpen:  # for HTTPResponse
        return self._keep

    def closed_by_peer(self, timeout: float) -> bool:
        """Whether the server closes the connection (EOF or reset) within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            while self._file.read1(65536):
                pass
        except TimeoutError:
            return False
        except OSError:
            return True  # reset
        return True


def exchange(port: int, data: bytes, method: str = "GET", timeout: float = 5.0) -> Answer:
    """Send ``data`` on a new connection and read one answer."""
    with Client.to(port, timeout) as client:
        client.send(data)
        return client.answer(method)


def request(method: str, path: str = "/metrics", headers: dict[str, str] | None = None,
            body: bytes = b"", version: str = "HTTP/1.1") -> bytes:
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True  # reset
    return True
