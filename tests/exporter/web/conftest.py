"""Fixtures of the web-config tests: ``start`` serves a web config on 127.0.0.1:0 through the
exporter's own HTTP server, ``pki`` makes a CA, a server certificate and client certificates."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.http import ExporterApp, make_http_server, serve_in_thread
from exporter.scrape import Scraper
from tests.exporter.web.clients import PKI, Server, Value
from tests.tls_certs import atomic_write, issue, make_ca


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    """``start(text)`` writes ``text`` to ``web.yml`` beside the test's certificates and serves
    it; ``start(None)`` serves without a web config."""
    running: list[Server] = []

    def _start(config: str | None, *, health_without_auth: bool = False) -> Server:
        path = None
        if config is not None:
            path = tmp_path / "web.yml"
            atomic_write(path, textwrap.dedent(config))
        scraper = Scraper([Value()], 5.0, process_collector=False)
        try:
            server = make_http_server("127.0.0.1:0", ExporterApp(scraper), web_config_file=path,
                                      health_without_auth=health_without_auth)
        except BaseException:
            scraper.close()
            raise
        serve_in_thread(server)
        running.append(Server(server, scraper, path))
        return running[-1]

    yield _start
    for s in running:
        s.server.shutdown()
        s.server.server_close()
        s.scraper.close()


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    ca = make_ca("Exporter Test CA")
    server = issue(ca, "exporter")
    server.write(tmp_path, "server")
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text(ca.cert_pem)
    return PKI(tmp_path, ca, server, ca_file)
