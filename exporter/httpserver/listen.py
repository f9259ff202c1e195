"""Listen addresses as the Go exporters spell them (``:9188``, ``127.0.0.1:9188``, ``[::1]:9188``)
and the listening sockets made from them."""

from __future__ import annotations

import socket


def parse_listen_address(address: str) -> tuple[str, int]:
    """``:9188``, ``127.0.0.1:9188`` or ``[::1]:9188`` to (host, port); '' means every address."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid listen address {address!r}: use [host]:port, e.g. ':9188'")
    return host.strip("[]"), int(port)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket: every address, dual-stack if possible, for ``host`` ''."""
    if host == "":
        try:
            return _listen(socket.AF_INET6, "::", port, dual_stack=True)
        except OSError:
            host = "0.0.0.0"
    return _listen(socket.AF_INET6 if ":" in host else socket.AF_INET, host, port)


def bind_all(addresses: list[str]) -> list[socket.socket]:
    """One listening socket per address, in order; none stays open if one fails."""
    parsed = [parse_listen_address(a) for a in addresses]  # every address checked before binding
    socks: list[socket.socket] = []
    try:
        for host, port in parsed:
            socks.append(bind(host, port))
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def _listen(family: int, host: str, port: int, *, dual_stack: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if dual_stack:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        # A burst of scrapers and probes overflows a short backlog: the kernel drops their SYNs
        # and each retries a second later. Go uses somaxconn; the kernel caps this at it anyway.
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock
