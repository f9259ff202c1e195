"""The Redis collector against real redis-server processes and real kombu (Celery) publishing."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue
from prometheus_client.core import Metric
from pydantic import SecretStr

from collectors.disk import DiskCollector
from collectors.process import ProcessGroupCollector
from collectors.redis import MAX_REPLY_DEPTH, MAX_SCRAPE_BYTES, RedisCollector
from exporter.collector import CollectorError, Deadline, Reason
from exporter.config import DiskConfig, LogDirConfig, ProcessConfig, RedisConfig
from exporter.demo.redis import RedisServer
from exporter.scrape import Scraper
from tests.exposition import promtool_problems, samples, value
from tests.hostile_redis import HostileRedis, bulk, hostile, info_of_100_mb

# Written out here rather than imported, so a wrong separator in the collector fails the test.
PRIORITY_SEP = "\x06\x16"





@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own, so killing or stopping it harms no other test."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    if server.process is not None and server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


def collector_for(url: str, queues: list[str], **extra: object) -> RedisCollector:
    return RedisCollector(RedisConfig(url=SecretStr(url), queues=queues, **extra))  # type: ignore[arg-type]


def test_queue_lengths_filled_emptied_deleted(redis_server: RedisServer) -> None:
    q1, q2, missing = (f"q-{uuid.uuid4().hex[:8]}" for _ in range(3))
    client = redis.Redis.from_url(redis_server.url())
    collector = collector_for(redis_server.url(), [q1, q2, missing])
    pushed = {q1: 5, f"{q1}{PRIORITY_SEP}3": 2, f"{q1}{PRIORITY_SEP}6": 1,
              f"{q1}{PRIORITY_SEP}9": 4, q2: 3}  # fmt: skip
    for key, n in pushed.items():
        client.lpush(key, *[f"m{i}" for i in range(n)])

    got = samples(collector.collect(Deadline.after(2)), "customer_sync_redis_queue_length")
    assert got == {(q1,): 5 + 2 + 1 + 4, (q2,): 3, (missing,): 0}

    for key in pushed:  # a consumer drains q1: Redis deletes each list as it empties
        if key.startswith(q1):
            while client.rpop(key) is not None:
                pass
    assert not client.exists(*(k for k in pushed if k.startswith(q1)))
    client.delete(q2)
    got = samples(collector.collect(Deadline.after(2)), "customer_sync_redis_queue_length")
    assert got == {(q1,): 0, (q2,): 0, (missing,): 0}
    client.close()


def test_celery_priority_sub_queues_from_real_kombu(redis_server: RedisServer) -> None:
    """Messages published by kombu's Redis transport with priorities land in sub-queues."""
    name = f"celery-{uuid.uuid4().hex[:8]}"
    priorities = [0, 0, 1, 3, 4, 6, 7, 9, 9, 9, 2]
    with Connection(redis_server.url()) as conn:
        queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
        producer = conn.Producer()
        for i, priority in enumerate(priorities):
            producer.publish(
                {"n": i}, exchange=queue.exchange, routing_key=name, declare=[queue],
                priority=priority,
            )  # fmt: skip
    client = redis.Redis.from_url(redis_server.url())
    keys = {k.decode() for k in client.scan_iter(match=f"{name}*")}
    assert len(keys) > 1, f"kombu did not use priority sub-queues: {keys}"
    assert all(k == name or k.startswith(name + PRIORITY_SEP) for k in keys)
    got = samples(
        collector_for(redis_server.url(), [name]).collect(Deadline.after(2)),
        "customer_sync_redis_queue_length",
    )
    assert got == {(name,): len(priorities)}
    client.close()


def test_server_info_against_independent_reads(private_redis: RedisServer) -> None:
    client = redis.Redis.from_url(private_redis.url())
    collector = collector_for(private_redis.url(), [])  # no LLEN: hit/miss counts stay ours
    client.config_set("maxmemory", 0)
    first = collector.collect(Deadline.after(2))
    assert value(first, "customer_sync_redis_memory_max_bytes") == 0
    assert value(first, "customer_sync_redis_up") == 1

    client.set("present", "x")
    for _ in range(3):
        client.get("present")
    for _ in range(2):
        client.get("absent")
    extra = [redis.Redis.from_url(private_redis.url()) for _ in range(3)]
    for c in extra:
        c.ping()
    blocker = redis.Redis.from_url(private_redis.url())
    thread = threading.Thread(target=blocker.blpop, args=(["wake-up"], 5))
    thread.start()
    end = time.monotonic() + 3
    while int(client.info("clients")["blocked_clients"]) < 1:
        assert time.monotonic() < end
        time.sleep(0.01)
    client.config_set("maxmemory", 50 * 1024 * 1024)

    second = collector.collect(Deadline.after(2))
    hits = value(second, "customer_sync_redis_keyspace_hits_total")
    misses = value(second, "customer_sync_redis_keyspace_misses_total")
    assert hits - value(first, "customer_sync_redis_keyspace_hits_total") == 3
    assert misses - value(first, "customer_sync_redis_keyspace_misses_total") == 2
    assert value(second, "customer_sync_redis_memory_max_bytes") == 50 * 1024 * 1024
    # test client + 3 extra + blocker + the collector's own connection
    assert value(second, "customer_sync_redis_connected_clients") == 1 + 3 + 1 + 1
    assert value(second, "customer_sync_redis_blocked_clients") == 1
    used = int(client.info("memory")["used_memory"])
    assert abs(value(second, "customer_sync_redis_memory_used_bytes") - used) < 256 * 1024

    client.lpush("wake-up", "x")
    thread.join(5)

    # Evictions: a small limit with an evicting policy, then more data than fits.
    client.config_set("maxmemory-policy", "allkeys-random")
    client.config_set("maxmemory", 4 * 1024 * 1024)
    pipe = client.pipeline(transaction=False)
    for i in range(2000):
        pipe.set(f"fill:{i}", "x" * 4096)
    pipe.execute()
    client.config_set("maxmemory", 0)  # stop evicting so the count holds still
    evicted = int(client.info("stats")["evicted_keys"])
    assert evicted > 0
    third = collector.collect(Deadline.after(2))
    assert value(third, "customer_sync_redis_evicted_keys_total") == evicted
    for c in [client, blocker, *extra]:
        c.close()


def test_wrong_type_key_fails_that_queue_only(redis_server: RedisServer) -> None:
    good, bad = f"q-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_server.url())
    client.set(bad, "not a list")
    client.rpush(good, "a", "b")
    with pytest.raises(CollectorError) as caught:
        collector_for(redis_server.url(), [good, bad]).collect(Deadline.after(2))
    assert caught.value.reason is Reason.QUERY
    assert bad in caught.value.message
    assert value(caught.value.partial, "customer_sync_redis_up") == 1
    assert samples(caught.value.partial, "customer_sync_redis_queue_length") == {(good,): 2}
    client.delete(good, bad)
    client.close()


def test_killed_then_restarted_on_the_same_port(private_redis: RedisServer) -> None:
    collector = collector_for(private_redis.url(), ["celery"])
    assert value(collector.collect(Deadline.after(2)), "customer_sync_redis_up") == 1

    private_redis.kill()
    with pytest.raises(CollectorError) as caught:
        collector.collect(Deadline.after(2))
    assert caught.value.reason is Reason.CONNECT, caught.value.message
    assert value(caught.value.partial, "customer_sync_redis_up") == 0

    restarted = RedisServer(private_redis.data_dir, port=private_redis.port).start()
    try:
        families = collector.collect(Deadline.after(2))  # the same collector object
    finally:
        restarted.stop()
    assert value(families, "customer_sync_redis_up") == 1
    assert samples(families, "customer_sync_redis_queue_length") == {("celery",): 0}


def test_hung_server_times_out_before_the_deadline(private_redis: RedisServer) -> None:
    assert private_redis.process is not None
    os.kill(private_redis.process.pid, signal.SIGSTOP)  # accepts TCP, never answers
    try:
        start = time.monotonic()
        with pytest.raises(CollectorError) as caught:
            collector_for(private_redis.url(), ["celery"]).collect(Deadline.after(1.0))
        elapsed = time.monotonic() - start
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)
    assert caught.value.reason is Reason.TIMEOUT
    assert elapsed < 1.0
    assert value(caught.value.partial, "customer_sync_redis_up") == 0


def test_auth_by_password_file_and_secret_never_shown(tmp_path: Path) -> None:
    password = "s3cret-" + uuid.uuid4().hex
    server = RedisServer(tmp_path / "redis", password=password).start()
    try:
        bare = f"redis://127.0.0.1:{server.port}/0"
        with pytest.raises(CollectorError) as caught:
            collector_for(bare, ["celery"]).collect(Deadline.after(2))
        assert caught.value.reason is Reason.AUTH, caught.value.message
        assert value(caught.value.partial, "customer_sync_redis_up") == 0

        wrong = f"redis://:wrong-{password}@127.0.0.1:{server.port}/0"
        with pytest.raises(CollectorError) as caught:
            collector_for(wrong, ["celery"]).collect(Deadline.after(2))
        assert caught.value.reason is Reason.AUTH
        assert password not in caught.value.message

        secret_file = tmp_path / "redis-password"
        secret_file.write_text(password + "\n")
        ok = collector_for(bare, ["celery"], password_file=str(secret_file))
        families = ok.collect(Deadline.after(2))
        assert value(families, "customer_sync_redis_up") == 1
        assert password not in repr(ok.config)
        for family in families:
            for sample in family.samples:
                assert password not in str(sample)
    finally:
        server.stop()


def test_unknown_host_is_dns() -> None:
    with pytest.raises(CollectorError) as caught:
        collector_for("redis://redis.invalid:6379/0", ["celery"]).collect(Deadline.after(2))
    assert caught.value.reason is Reason.DNS, caught.value.message


def test_outage_inside_a_real_scrape_leaves_other_collectors_serving(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    """Redis dies while the exporter runs: only redis fails, with reason connect, and recovers."""
    (tmp_path / "logs").mkdir()
    scraper = Scraper(
        [
            collector_for(private_redis.url(), ["celery"]),
            DiskCollector(DiskConfig(dirs=[LogDirConfig(name="logs", path=tmp_path / "logs")])),
            ProcessGroupCollector(ProcessConfig()),
        ],
        scrape_timeout=3,
        process_collector=False,
    )
    try:

        def scrape() -> tuple[dict[str, float], dict[str, str], list[Metric]]:
            families = scraper.scrape(scraper.deadline_for(None))
            success = {k[0]: v for k, v in samples(
                families, "customer_sync_exporter_collector_success").items()}  # fmt: skip
            failures = {
                k[0]: k[1]
                for k, v in samples(families, "customer_sync_exporter_collector_failure").items()
                if v == 1
            }
            return success, failures, families

        success, failures, families = scrape()
        assert success == {"redis": 1, "disk": 1, "process": 1} and failures == {}
        assert promtool_problems(families) == ""

        private_redis.kill()
        success, failures, families = scrape()
        assert success == {"redis": 0, "disk": 1, "process": 1}
        assert failures == {"redis": "connect"}
        assert value(families, "customer_sync_redis_up") == 0
        assert samples(families, "customer_sync_log_dir_files") == {("logs",): 0}
        assert promtool_problems(families) == ""

        restarted = RedisServer(private_redis.data_dir, port=private_redis.port).start()
        try:
            success, failures, families = scrape()
        finally:
            restarted.stop()
        assert success == {"redis": 1, "disk": 1, "process": 1} and failures == {}
        assert value(families, "customer_sync_redis_up") == 1
    finally:
        scraper.close()


# --- what a server that is not (quite) Redis sends --------------------------------------------


def fail(server: HostileRedis, **extra: Any) -> tuple[CollectorError, int]:
    """The collector's error, and the peak of Python memory while it ran (the server thread's
    allocations included, so each INFO writer sends what it made beforehand or small chunks)."""
    tracemalloc.start()
    try:
        with pytest.raises(CollectorError) as caught:
            collector_for(server.url, ["celery"], **extra).collect(Deadline.after(2))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return caught.value, peak


def test_an_info_reply_of_100_mb_is_refused_after_one_mib() -> None:
    with hostile(info_of_100_mb) as server:
        error, peak = fail(server)
    assert error.reason is Reason.QUERY  # Redis answered, with more than a scrape reads
    assert error.message == f"ReplyTooLarge: Redis sent more than {MAX_SCRAPE_BYTES} bytes in one scrape"
    assert peak < 4 * MAX_SCRAPE_BYTES  # what the collector held, not 100 MB
    assert server.sent < 100_000_000  # the exporter hung up, the server could not finish
    assert [c[:2] for c in server.commands if c[0] == b"INFO"] == [[b"INFO", b"memory"]]


def test_a_line_without_end_is_refused_after_one_mib() -> None:
    line = b"+" + b"x" * MAX_SCRAPE_BYTES  # made before tracing: the server's, not the client's

    def endless(server: HostileRedis, conn: socket.socket) -> None:
        for _ in range(100):  # 100 MiB at most; the exporter hangs up long before
            server.send(conn, line)

    with hostile(endless) as server:
        error, peak = fail(server)
    assert error.reason is Reason.QUERY and "ReplyTooLarge" in error.message
    assert peak < 4 * MAX_SCRAPE_BYTES


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
         "InvalidResponse: Protocol Error: b'HTTP/1.1 400 Bad Request'"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n",  # a TLS record, not RESP
         "InvalidResponse: Protocol Error: b'\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xfc\\x03\\x03'"),
        (b":not-a-number\r\n",
         "InvalidResponse: Protocol Error: invalid literal for int() with base 10: b'not-a-number'"),
        (b"$-7x\r\n", "InvalidResponse: Protocol Error: invalid literal for int() with base 10: b'-7x'"),
        (b"*1\r\n" * 10_000 + b":1\r\n",
         f"InvalidResponse: Protocol Error: a reply nested deeper than {MAX_REPLY_DEPTH} levels"),
    ],
    ids=["http", "tls", "integer", "length", "nested"],
)
def test_bytes_that_are_not_resp_are_connect(reply: bytes, message: str) -> None:
    with hostile(lambda server, conn: server.send(conn, reply)) as server:
        error, _ = fail(server)
    assert (error.reason, error.message) == (Reason.CONNECT, message)
    assert value(error.partial, "customer_sync_redis_up") == 0


def test_resp_with_values_that_are_not_numbers_is_query() -> None:
    with hostile(bulk(b"# Memory\r\nused_memory:lots\r\nmaxmemory:0\r\n")) as server:
        error, _ = fail(server)
    assert (error.reason, error.message) == (Reason.QUERY, "INFO used_memory is not a number")
    assert value(error.partial, "customer_sync_redis_up") == 1
    info = b"used_memory:1\r\nmaxmemory:0\r\nconnected_clients:1\r\n"
    with hostile(bulk(info), llen=b"$3\r\nabc\r\n") as server:
        error, _ = fail(server)
    assert error.reason is Reason.QUERY
    assert error.message == "queue 'celery': LLEN did not answer an integer"
    assert value(error.partial, "customer_sync_redis_memory_used_bytes") == 1


def test_url_options_cannot_lift_the_bounds_or_the_deadline(private_redis: RedisServer) -> None:
    # ?protocol=3 would swap in redis-py's unbounded RESP3 parser; ?socket_timeout=30 would
    # outlive the deadline.
    with hostile(info_of_100_mb) as server:
        server.url += "?protocol=3&socket_timeout=30"
        error, peak = fail(server)
    assert error.reason is Reason.QUERY and "ReplyTooLarge" in error.message
    assert peak < 4 * MAX_SCRAPE_BYTES
    assert private_redis.process is not None
    os.kill(private_redis.process.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        with pytest.raises(CollectorError) as caught:
            collector_for(f"{private_redis.url()}?socket_timeout=30&socket_connect_timeout=30",
                          ["celery"]).collect(Deadline.after(1.0))
        elapsed = time.monotonic() - start
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)
    assert caught.value.reason is Reason.TIMEOUT
    assert elapsed < 1.0


def test_a_real_redis_over_resp2_still_reports_everything(redis_server: RedisServer) -> None:
    # The collector speaks RESP2 through the bounded parser, whatever the URL asks.
    families = collector_for(f"{redis_server.url()}?protocol=3", ["celery"]).collect(
        Deadline.after(2))
    assert value(families, "customer_sync_redis_up") == 1
    assert value(families, "customer_sync_redis_connected_clients") >= 1
