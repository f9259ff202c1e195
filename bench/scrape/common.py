"""What every part of the bench shares: the roles' password, the peer's interval, the scrapers."""

from __future__ import annotations

ROLE_PASSWORD = "bench"
PEER_INTERVAL_S = 15
CONCURRENT_SCRAPERS = 10
CONCURRENT_SECONDS = 10.0
SERIAL_SPAN_S = float(PEER_INTERVAL_S)  # serial scrapes are spread over one peer interval
LOG_TABLE = "common_customersynclog"
SPOT = ("updated", "success")  # operation_type, status of the spot-checked total


def log(msg: str = "") -> None:
    print(msg, flush=True)
