"""A raw TCP server on loopback that speaks just enough RESP to send what no Redis would."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator


class HostileRedis:
    """A raw TCP server on loopback that speaks just enough RESP: +OK to CLIENT (the
    handshake), ``llen`` to LLEN, and to INFO whatever ``info`` writes. Counts what it sent."""

    def __init__(self, info: Callable[[socket.socket], None],
                 llen: bytes = b":0\r\n") -> None:
        self.info, self.llen = info, llen
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.sent = 0
        self.commands: list[list[bytes]] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        # accept() polls: closing a socket does not wake a thread blocked in accept(), which
        # would then accept on whatever socket reuses the descriptor (another test's server).
        self.listener.settimeout(0.05)
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            while line := reader.readline():
                args = []
                for _ in range(int(line[1:])):
                    size = int(reader.readline()[1:])
                    args.append(reader.read(size + 2)[:-2])
                self.commands.append(args)
                command = args[0].upper()
                if command == b"INFO":
                    self.info(conn)
                else:
                    self.send(conn, b"+OK\r\n" if command == b"CLIENT" else self.llen)
        except (OSError, ValueError):  # the exporter hung up (what a bounded read must do)
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(10)
        self.listener.close()
        for thread in self._threads:
            thread.join(10)


@contextlib.contextmanager
def hostile(info: Callable[[HostileRedis, socket.socket], None],
            llen: bytes = b":0\r\n") -> Iterator[HostileRedis]:
    server = HostileRedis(lambda conn: info(server, conn), llen)
    try:
        yield server
    finally:
        server.close()


def bulk(text: bytes) -> Callable[[HostileRedis, socket.socket], None]:
    """An INFO writer answering ``text`` as one bulk string."""
    return lambda server, conn: server.send(conn, b"$%d\r\n%s\r\n" % (len(text), text))


def info_of_100_mb(server: HostileRedis, conn: socket.socket) -> None:
    """A well-formed INFO reply of 100 MB, sent in 60 KB chunks made as it goes."""
    size = 100_000_000
    server.send(conn, b"$%d\r\n" % size)
    chunk = b"used_memory:1\r\n" * 4096
    for _ in range(size // len(chunk)):
        server.send(conn, chunk)
