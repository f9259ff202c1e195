"""Redis health and the Celery queue backlog, read in one round trip per scrape.

Celery's Redis transport (kombu) keeps a queue as a list, and each non-zero priority in a
separate list named ``<queue>\\x06\\x16<priority>`` (priority steps 3, 6, 9). A queue's length
is the sum of all four lists, and a list Redis deleted because it became empty counts as 0.

What Redis sends is read within bounds: redis-py has no cap on a reply's size (a 100 MB
``INFO`` took the exporter to 560 MB) nor on its nesting (``*1`` 10,000 deep is a
RecursionError, redis-py#4116). The exporter asks only for the three ``INFO`` sections it uses
and reads through :class:`BoundedParser`: redis-py's own RESP2 parser, fed by a socket that
refuses to receive more than :data:`MAX_SCRAPE_BYTES` per connection (one connection per
scrape) and refusing replies nested deeper than :data:`MAX_REPLY_DEPTH`.
"""

from __future__ import annotations

import socket
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis._parsers import _RESP2Parser
from redis._parsers.socket import SocketBuffer
from redis.backoff import NoBackoff
from redis.exceptions import AuthorizationError, InvalidResponse, NoPermissionError
from redis.maint_notifications import MaintNotificationsConfig
from redis.retry import Retry

from exporter.collector import CollectorError, Deadline, Reason, dependency_up
from exporter.config import RedisConfig
from exporter.errors import chain, describe

# kombu.transport.redis: Channel.sep and PRIORITY_STEPS = [0, 3, 6, 9]; step 0 is the bare name.
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)

_UP_HELP = "1 if Redis answered the exporter in this scrape, else 0."

# The three INFO sections hold ~3 KiB and each LLEN a few bytes: 1 MiB is far above any real
# scrape and far below what would cost memory.
MAX_SCRAPE_BYTES = 1024 * 1024
MAX_REPLY_DEPTH = 4  # LLEN, INFO and the handshake's replies are all flat
INFO_SECTIONS = ("memory", "clients", "stats")


class ReplyTooLarge(redis.RedisError):
    """Redis sent more than :data:`MAX_SCRAPE_BYTES` on one scrape's connection."""


class _BudgetSocket:
    """The connection's socket as the parser sees it: receiving stops at the byte budget."""

    def __init__(self, sock: socket.socket, budget: int) -> None:
        self._sock = sock
        self.left = budget

    def recv(self, size: int) -> bytes:
        if self.left <= 0:
            raise ReplyTooLarge(f"Redis sent more than {MAX_SCRAPE_BYTES} bytes in one scrape")
        data = self._sock.recv(min(size, self.left))
        self.left -= len(data)
        return data

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)


class BoundedParser(_RESP2Parser):
    """redis-py's RESP2 parser, reading within :data:`MAX_SCRAPE_BYTES` and
    :data:`MAX_REPLY_DEPTH`; a reply that is not RESP is an ``InvalidResponse``, never a
    ``ValueError`` from deep inside."""

    def on_connect(self, connection: Any) -> None:
        super().on_connect(connection)  # type: ignore[no-untyped-call]
        budget = _BudgetSocket(connection._sock, MAX_SCRAPE_BYTES)
        self._buffer = SocketBuffer(budget, self.socket_read_size, connection.socket_timeout)  # type: ignore[arg-type]
        self._depth = 0

    def _read_response(self, *args: Any, **kwargs: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_REPLY_DEPTH:
                raise InvalidResponse(f"Protocol Error: a reply nested deeper than "
                                      f"{MAX_REPLY_DEPTH} levels")
            return super()._read_response(*args, **kwargs)  # type: ignore[no-untyped-call]
        except ValueError as exc:  # int() of a length or an integer that is not one
            raise InvalidResponse(f"Protocol Error: {exc}"[:200]) from None
        finally:
            self._depth -= 1


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
            "protocol": 2,
            "parser_class": BoundedParser,
            # Push notifications need RESP3; a scrape's one-off connection has no use for them.
            "maint_notifications_config": MaintNotificationsConfig(enabled=False),
        }
        if self.config.password_file is not None:
            kwargs["password"] = self.config.password_file.get_secret_value()
        client = redis.Redis.from_url(self.config.url.get_secret_value(), **kwargs)
        # After from_url, whose URL options (?protocol=3, ?socket_timeout=) would override these:
        # the bounds and the deadline hold whatever the URL says.
        client.connection_pool.connection_kwargs.update(
            {k: kwargs[k] for k in ("protocol", "parser_class", "maint_notifications_config",
                                    "socket_connect_timeout", "socket_timeout")}
        )
        return client

    def collect(self, deadline: Deadline) -> list[Metric]:
        if deadline.remaining() <= 0.02:
            raise CollectorError(Reason.TIMEOUT, "no time left for Redis", [self._up(False)])
        try:
            client = self._client(deadline)
        except ValueError:  # check-config refuses these (port 99999); the message may quote it
            raise CollectorError(Reason.CONFIG, "invalid Redis URL: its port or an option does "
                                 "not parse", [self._up(False)]) from None
        try:
            pipe = client.pipeline(transaction=False)
            for section in INFO_SECTIONS:
                pipe.info(section)
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
        sections, lengths = results[: len(INFO_SECTIONS)], results[len(INFO_SECTIONS) :]
        info: dict[str, Any] = {}
        for section in sections:
            if isinstance(section, Exception):
                reason = classify(section)
                raise CollectorError(reason, describe(section), [self._up(reason is Reason.QUERY)])
            info.update(section if isinstance(section, dict) else {})
        try:
            families = [self._up(True), *self._info_families(info)]
        except ValueError as exc:
            raise CollectorError(Reason.QUERY, str(exc), [self._up(True)]) from None
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
            if not all(isinstance(p, int) for p in parts):
                errors.append(f"queue {queue!r}: LLEN did not answer an integer")
                continue
            family.add_metric([queue], sum(parts))
        return family, errors

    @staticmethod
    def _info_families(info: dict[str, Any]) -> list[Metric]:
        def number(key: str) -> float:
            value = info.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"INFO {key} is not a number")
            return float(value)

        def gauge(name: str, help_text: str, key: str) -> Metric:
            return GaugeMetricFamily(name, help_text, value=number(key))

        def counter(name: str, help_text: str, key: str) -> Metric:
            return CounterMetricFamily(name, help_text, value=number(key))

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
    """Map a redis-py error to the closed failure set. Its message is ``describe(exc)``:
    redis-py's messages name host and port, never the password."""
    if isinstance(exc, redis.AuthenticationError | AuthorizationError | NoPermissionError):
        return Reason.AUTH
    if isinstance(exc, ReplyTooLarge):  # Redis answered, but more than a scrape may read
        return Reason.QUERY
    if isinstance(exc, InvalidResponse):  # what answers on the Redis port does not speak RESP
        return Reason.CONNECT
    if isinstance(exc, redis.TimeoutError):
        return Reason.TIMEOUT
    if isinstance(exc, redis.ConnectionError):
        if any(isinstance(cause, socket.gaierror) for cause in chain(exc)):
            return Reason.DNS
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
