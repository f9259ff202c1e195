"""Redis health and the Celery queue backlog, read in one round trip per scrape.

Celery's Redis transport (kombu) keeps a queue as a list, and each non-zero priority in a
separate list named ``<queue>\\x06\\x16<priority>`` (priority steps 3, 6, 9). A queue's length
is the sum of all four lists, and a list Redis deleted because it became empty counts as 0.
"""

from __future__ import annotations

import socket
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.backoff import NoBackoff
from redis.exceptions import AuthorizationError, NoPermissionError
from redis.retry import Retry

from exporter.collector import CollectorError, Deadline, Reason, dependency_up
from exporter.config import RedisConfig

# kombu.transport.redis: Channel.sep and PRIORITY_STEPS = [0, 3, 6, 9]; step 0 is the bare name.
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)

_UP_HELP = "1 if Redis answered the exporter in this scrape, else 0."


def priority_keys(queue: str) -> list[str]:
    """The Redis lists that hold one Celery queue."""
    return [queue, *(f"{queue}{PRIORITY_SEP}{p}" for p in PRIORITY_STEPS)]


class RedisCollector:
    """Server memory, clients, keyspace counters and the configured queues' lengths."""

    name = "redis"

    def __init__(self, config: RedisConfig) -> None:
        self.config = config

    def _client(self, deadline: Deadline) -> redis.Redis:
        # Half the budget to connect and half to answer, so together they end by the deadline.
        half = max(0.01, deadline.remaining() / 2)
        kwargs: dict[str, Any] = {
            "socket_connect_timeout": half,
            "socket_timeout": half,
            "retry": Retry(NoBackoff(), 0),  # one attempt: a retry would outlive the deadline
            "health_check_interval": 0,
            "client_name": "customer-sync-exporter",
        }
        if self.config.password_file is not None:
            kwargs["password"] = self.config.password_file.get_secret_value()
        return redis.Redis.from_url(self.config.url.get_secret_value(), **kwargs)

    def collect(self, deadline: Deadline) -> list[Metric]:
        if deadline.remaining() <= 0.02:
            raise CollectorError(Reason.TIMEOUT, "no time left for Redis", [self._up(False)])
        client = self._client(deadline)
        try:
            pipe = client.pipeline(transaction=False)
            pipe.info()
            for queue in self.config.queues:
                for key in priority_keys(queue):
                    pipe.llen(key)
            results = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            reason = classify(exc)
            raise CollectorError(
                reason, describe(exc), [self._up(reason is Reason.QUERY)]
            ) from None
        finally:
            client.close()
        info, lengths = results[0], results[1:]
        if isinstance(info, Exception):
            reason = classify(info)
            raise CollectorError(reason, describe(info), [self._up(reason is Reason.QUERY)])
        families = [self._up(True), *self._info_families(info)]
        queues, errors = self._queue_family(lengths)
        families.append(queues)
        if errors:
            raise CollectorError(Reason.QUERY, "; ".join(errors), families)
        return families

    @staticmethod
    def _up(up: bool) -> Metric:
        return dependency_up("redis", _UP_HELP, up)

    def _queue_family(self, lengths: list[Any]) -> tuple[Metric, list[str]]:
        family = GaugeMetricFamily(
            "customer_sync_redis_queue_length",
            "Messages waiting in a Celery queue, all priority sub-queues summed; "
            "0 when Redis has deleted the empty list.",
            labels=["queue"],
        )
        errors: list[str] = []
        per_queue = len(PRIORITY_STEPS) + 1
        for i, queue in enumerate(self.config.queues):
            parts = lengths[i * per_queue : (i + 1) * per_queue]
            bad = [p for p in parts if isinstance(p, Exception)]
            if bad:
                errors.append(f"queue {queue!r}: {describe(bad[0])}")
                continue
            family.add_metric([queue], sum(int(p) for p in parts))
        return family, errors

    @staticmethod
    def _info_families(info: dict[str, Any]) -> list[Metric]:
        def gauge(name: str, help_text: str, key: str) -> Metric:
            return GaugeMetricFamily(name, help_text, value=float(info.get(key, 0)))

        def counter(name: str, help_text: str, key: str) -> Metric:
            return CounterMetricFamily(name, help_text, value=float(info.get(key, 0)))

        return [
            gauge("customer_sync_redis_memory_used_bytes",
                  "Memory Redis has allocated (INFO used_memory).", "used_memory"),
            gauge("customer_sync_redis_memory_max_bytes",
                  "Redis maxmemory limit; 0 means no limit is set (unlimited).", "maxmemory"),
            gauge("customer_sync_redis_connected_clients",
                  "Client connections open to Redis, including the exporter's own.",
                  "connected_clients"),
            gauge("customer_sync_redis_blocked_clients",
                  "Clients blocked in a blocking call such as a Celery worker's BRPOP.",
                  "blocked_clients"),
            counter("customer_sync_redis_keyspace_hits_total",
                    "Successful key lookups since the Redis server started.", "keyspace_hits"),
            counter("customer_sync_redis_keyspace_misses_total",
                    "Failed key lookups since the Redis server started.", "keyspace_misses"),
            counter("customer_sync_redis_evicted_keys_total",
                    "Keys evicted because of the maxmemory limit since the Redis server started.",
                    "evicted_keys"),
        ]  # fmt: skip


def classify(exc: BaseException) -> Reason:
    """Map a redis-py error to the closed failure set."""
    if isinstance(exc, redis.AuthenticationError | AuthorizationError | NoPermissionError):
        return Reason.AUTH
    if isinstance(exc, redis.TimeoutError):
        return Reason.TIMEOUT
    if isinstance(exc, redis.ConnectionError):
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, socket.gaierror):
                return Reason.DNS
            cause = cause.__cause__ or cause.__context__
        text = str(exc).lower()
        if "name or service not known" in text or "temporary failure in name" in text:
            return Reason.DNS
        if "ssl" in text or "certificate" in text:
            return Reason.TLS
        return Reason.CONNECT
    if isinstance(exc, redis.ResponseError):
        text = str(exc)
        if text.startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
            return Reason.AUTH
        return Reason.QUERY
    return Reason.INTERNAL


def describe(exc: BaseException) -> str:
    """One line for the log; redis-py messages name host and port, never the password."""
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else ''}"[:300]
