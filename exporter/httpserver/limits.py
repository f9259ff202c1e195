"""The server's bounds (:class:`Limits`) and what it did with its connections
(:class:`ConnectionStats`).

See :mod:`exporter.httpserver` for what each bound means; the stats are the exporter's own
``customer_sync_exporter_http_connections*`` metrics.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CLOSE_REASONS = ("header_timeout", "idle_timeout", "write_timeout", "tls_handshake",
                 "bad_request", "limit")
FD_RESERVE = 64  # files and sockets the collectors, the pool and the logs may need


def default_max_connections() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft - FD_RESERVE))


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0
    idle_timeout: float = 120.0
    write_timeout: float = 30.0
    max_header_bytes: int = 16 * 1024
    max_connections: int = field(default_factory=default_max_connections)
    request_threads: int = 16


class ConnectionStats:
    """What the server did with connections, for the exporter's own metrics."""

    def __init__(self) -> None:
        self.open = 0
        self.closed = dict.fromkeys(CLOSE_REASONS, 0)

    def families(self) -> list[Metric]:
        gauge = GaugeMetricFamily(
            "customer_sync_exporter_http_connections",
            "Client connections open to the exporter's HTTP server (this scrape's included).",
            value=float(self.open),
        )
        counter = CounterMetricFamily(
            "customer_sync_exporter_http_connections_closed",
            "Client connections the HTTP server closed on its own, by reason: header_timeout "
            "(handshake or request head not complete in time), idle_timeout (keep-alive unused), "
            "write_timeout (answer not taken), tls_handshake (failed), bad_request (answered "
            "400, 431 or 505), limit (the longest-waiting one, to stay under max connections).",
            labels=["reason"],
        )
        for reason in CLOSE_REASONS:
            counter.add_metric([reason], float(self.closed[reason]))
        return [gauge, counter]
