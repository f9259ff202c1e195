"""What every collector shares: the failure taxonomy, the deadline and the protocol.

A collector is an object with a ``name`` and ``collect(deadline)`` that returns fresh metric
families. It fails by raising :class:`CollectorError` with a reason from a closed set, and may
hand back the families it could still build (a dependency's ``*_up 0``) as ``partial``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from prometheus_client.core import Metric


class Reason(StrEnum):
    """Why a collector failed. Closed, so it is safe as a label value."""

    TIMEOUT = "timeout"
    CONNECT = "connect"
    AUTH = "auth"
    QUERY = "query"
    HTTP_STATUS = "http_status"
    TLS = "tls"
    DNS = "dns"
    IO = "io"
    CONFIG = "config"
    ASSERTION = "assertion"
    INTERNAL = "internal"


class CollectorError(Exception):
    """A collector could not do its job; ``message`` must never contain a secret."""

    def __init__(self, reason: Reason, message: str, partial: Sequence[Metric] = ()) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.partial = list(partial)


@dataclass(frozen=True)
class Deadline:
    """An absolute point on the monotonic clock by which a scrape must answer."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at


@runtime_checkable
class Collector(Protocol):
    """The protocol every module under ``collectors/`` implements."""

    name: str

    def collect(self, deadline: Deadline) -> Iterable[Metric]: ...


def dependency_up(name: str, help_text: str, up: bool) -> Metric:
    """``customer_sync_<name>_up``: the one-line answer to 'is this dependency reachable'."""
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(f"customer_sync_{name}_up", help_text, value=1.0 if up else 0.0)
