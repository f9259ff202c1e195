"""Shared pieces of the demo's tests: a Redis of their own, and waiting for a condition."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter.demo.redis import RedisServer


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            pytest.fail("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of our own (with a password, as in the demo): the test fills and drains queues."""
    server = RedisServer(tmp_path / "redis", password="s3cret-demo").start()
    yield server
    server.stop()
