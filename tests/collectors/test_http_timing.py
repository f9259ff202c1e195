"""Timed sessions against the real local 1C stand-in: phases land in the thread's Timings only."""

from __future__ import annotations

import contextlib
import threading

import requests

from collectors.http_timing import Timings, recording, timed_session
from exporter.demo.onec import OneCStandIn


def test_a_request_inside_recording_times_dns_and_connect(onec: OneCStandIn) -> None:
    with recording(Timings()) as timings, timed_session() as session:
        assert session.get(onec.url, timeout=2).status_code == 200
    assert set(timings.phases) == {"dns", "connect"}  # plain HTTP: no handshake, no certificate
    assert timings.phases["connect"] > 0
    assert timings.cert_not_after is None
    before = dict(timings.phases)
    with timed_session() as session:  # after the block: recorded nowhere, and no error
        assert session.get(onec.url, timeout=2).status_code == 200
    assert timings.phases == before


def test_each_thread_records_into_its_own_timings(onec: OneCStandIn) -> None:
    """A probe thread's Timings see neither another thread's requests nor the resolver of a
    host that does not exist (DNS only, no connect) mixing into them."""
    barrier = threading.Barrier(2)
    found: dict[str, Timings] = {}

    def probe(name: str, url: str) -> None:
        with recording(Timings()) as timings, timed_session() as session:
            barrier.wait(timeout=5)
            for _ in range(3):
                with contextlib.suppress(requests.ConnectionError):
                    session.get(url, timeout=2)
        found[name] = timings

    threads = [
        threading.Thread(target=probe, args=("up", onec.url)),
        threading.Thread(target=probe, args=("unknown", "http://onec-freesport.invalid/ping")),
    ]
    for thread in threads:
        thread.start()
    with timed_session() as session:  # this thread records nothing while they run
        session.get(onec.url, timeout=2)
    for thread in threads:
        thread.join(timeout=10)
    assert set(found["up"].phases) == {"dns", "connect"}
    assert set(found["unknown"].phases) == {"dns"}
    assert onec.requests == 3 + 1
