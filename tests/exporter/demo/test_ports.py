"""Loopback ports (``exporter/demo/ports.py``), checked by really binding them."""

from __future__ import annotations

import socket

from exporter.demo.ports import free_port, port_or_free


def test_a_preferred_port_is_used_when_free_and_replaced_when_taken() -> None:
    port = free_port()
    assert port_or_free(port) == port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        other = port_or_free(port)
        assert other != port
        with socket.socket() as s:
            s.bind(("127.0.0.1", other))  # really free
