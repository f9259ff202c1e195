"""Listen addresses as the Go exporters spell them, and the sockets bound for several of them."""

from __future__ import annotations

import socket

import pytest

from exporter.demo.ports import free_port
from exporter.httpserver import bind_all, parse_listen_address


@pytest.mark.parametrize(
    ("address", "expected"),
    [(":9188", ("", 9188)), ("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:9188", ("::1", 9188))],
)
def test_parse_listen_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(address) == expected


@pytest.mark.parametrize("address", ["9188", "host:", "host:port", ":70000"])
def test_parse_listen_address_rejects(address: str) -> None:
    with pytest.raises(ValueError, match="invalid listen address"):
        parse_listen_address(address)


def test_bind_all_binds_each_address_in_order() -> None:
    socks = bind_all(["127.0.0.1:0", "127.0.0.2:0"])
    try:
        assert [s.getsockname()[0] for s in socks] == ["127.0.0.1", "127.0.0.2"]
    finally:
        for s in socks:
            s.close()


def test_bind_all_checks_every_address_before_binding_any() -> None:
    port = free_port()
    with pytest.raises(ValueError, match="invalid listen address 'nonsense'"):
        bind_all([f"127.0.0.1:{port}", "nonsense"])
    with socket.socket() as s:  # the first was never bound
        s.bind(("127.0.0.1", port))


def test_bind_all_closes_what_it_bound_when_one_address_is_taken() -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            bind_all([f"127.0.0.1:{port}", f"127.0.0.1:{taken.getsockname()[1]}"])
    with socket.socket() as s:  # the first one was closed again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
