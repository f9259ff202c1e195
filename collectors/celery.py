"""Celery workers and tasks, read from the broker with Celery's own library, as Flower does.

Events are a stream, so two background threads keep a :class:`CeleryTally` current and a scrape
only reads it under a lock (always fast):

* the event thread consumes the event exchange with ``app.events.Receiver`` (heartbeats every
  2 s, task events), reconnecting with back-off after the broker goes away. Events sent while it
  is disconnected are lost (the exchange is a fan-out), and nothing is replayed at start-up, so
  counters start at 0 with the exporter;
* the control thread asks the workers for ``inspect stats`` (pool size, memory) every
  ``inspect_interval`` and at once when a new worker shows up, and, where allowed, sends
  ``enable_events`` to workers that run without task events (``celery worker`` without ``-E``,
  Celery's default), like Flower. Each call waits at most ``inspect_timeout``.

The collector fails with ``connect`` (or ``dns``/``auth``/``tls``/``timeout``) while the event
stream is down, keeping the task families (they are still true) and leaving out the workers
(the exporter cannot see them), and with ``config`` while an up worker sends no task events
(the shop's configuration, with ours not allowing ``enable_events``): its tasks run unseen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import redis
import structlog
from celery import Celery
from celery.events import EventReceiver
from prometheus_client.core import Metric

from collectors.celery_events import CeleryTally
from collectors.redis import classify as classify_redis
from exporter.collector import CollectorError, Deadline, Reason
from exporter.config import CeleryConfig
from exporter.errors import chain, describe

log = structlog.get_logger(__name__)

BACKOFF_START = 0.5
BACKOFF_MAX = 10.0


def make_app(config: CeleryConfig) -> Any:
    """A Celery app that only talks to the broker: no tasks, no result backend."""
    app = Celery("customer-sync-exporter", set_as_current=False)
    app.conf.update(
        broker_url=config.broker_url.get_secret_value(),
        broker_connection_timeout=config.connect_timeout,
        broker_connection_retry=False,
        broker_connection_max_retries=0,
        # kombu's default channel retries a failed connect for connect_timeout first; our loop
        # retries instead, so a refused connection is reported at once.
        broker_transport_options={"max_retries": 0},
        result_backend=None,
        worker_hijack_root_logger=False,
    )
    if config.password_file is not None:
        app.conf.broker_password = config.password_file.get_secret_value()
    return app


class _Receiver(EventReceiver):  # type: ignore[misc]
    """Celery's receiver, telling the collector when it is consuming (connected)."""

    on_ready: Callable[[], None] = staticmethod(lambda: None)

    def on_consume_ready(self, *args: Any, **kwargs: Any) -> None:
        self.on_ready()
        super().on_consume_ready(*args, **kwargs)  # asks every worker for a heartbeat now


class CeleryCollector:
    """Workers (up by heartbeat, active tasks, pool and memory) and tasks by name and state."""

    name = "celery"

    def __init__(
        self,
        config: CeleryConfig,
        *,
        app_factory: Callable[[CeleryConfig], Any] = make_app,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._clock = clock
        self._app = app_factory(config)
        self._lock = threading.Lock()
        self._tally = CeleryTally(
            config.tasks, config.max_other_tasks, forget_after=config.forget_worker_after,
            max_tasks_in_memory=config.max_tasks_in_memory,
        )
        self._connected = False
        self._failure: tuple[Reason, str] | None = None
        self._first_outcome = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._receiver: _Receiver | None = None
        self._threads = [
            threading.Thread(target=self._run_events, name="celery-events", daemon=True),
            threading.Thread(target=self._run_control, name="celery-control", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # --- scrape -----------------------------------------------------------------------------

    def collect(self, deadline: Deadline) -> list[Metric]:
        # Only the very first scrapes wait, and only for the first connection attempt to end.
        self._first_outcome.wait(max(0.0, deadline.remaining() - 0.05))
        now = self._clock()
        with self._lock:
            tasks = self._tally.task_families()
            if not self._connected:
                reason, message = self._failure or (
                    Reason.TIMEOUT, "still connecting to the broker"
                )
                raise CollectorError(reason, message, tasks)
            families = tasks + self._tally.worker_families(now)
            silent = self._tally.silent_workers(now)
        if silent:
            hint = (
                "enable_events did not turn them on"
                if self.config.enable_events
                else "set collectors.celery.enable_events: true or start them with -E"
            )
            raise CollectorError(
                Reason.CONFIG,
                f"workers send no task events, their tasks are not counted: {', '.join(silent)}"
                f" ({hint})",
                families,
            )
        return families

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        receiver = self._receiver
        if receiver is not None:
            receiver.should_stop = True
        for thread in self._threads:
            thread.join(timeout=5.0)
        self._app.close()

    # --- the event stream -------------------------------------------------------------------

    def _run_events(self) -> None:
        backoff = BACKOFF_START
        while not self._stop.is_set():
            try:
                with self._app.connection_for_read() as conn:
                    receiver = _Receiver(conn, handlers={"*": self._on_event}, app=self._app)
                    receiver.connect_max_retries = 0  # our loop retries, with back-off
                    receiver.on_ready = self._on_connected
                    self._receiver = receiver
                    if self._stop.is_set():
                        return
                    receiver.capture(limit=None, timeout=None, wakeup=True)
            except Exception as exc:
                if self._stop.is_set():
                    return
                reason, message = classify(exc), explain(exc)
                with self._lock:
                    was_connected, self._connected = self._connected, False
                    self._failure = (reason, message)
                self._first_outcome.set()
                log.warning("celery event stream lost" if was_connected else
                            "cannot read celery events", reason=str(reason), error=message,
                            retry_in=backoff)
                if was_connected:
                    backoff = BACKOFF_START
                self._stop.wait(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)

    def _on_connected(self) -> None:
        with self._lock:
            self._connected, self._failure = True, None
        self._first_outcome.set()
        self._wake.set()
        log.info("reading celery events")

    def _on_event(self, event: dict[str, Any]) -> None:
        with self._lock:
            new_worker = self._tally.on_event(event)
        if new_worker:
            self._wake.set()

    # --- remote control ---------------------------------------------------------------------

    def _run_control(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.config.inspect_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            if not self._connected:
                continue
            try:
                self._poll()
            except Exception as exc:
                reason, message = classify(exc), explain(exc)
                log.info("celery remote control failed", reason=str(reason), error=message)

    def _poll(self) -> None:
        timeout = self.config.inspect_timeout
        with self._lock:
            expected = len(self._tally.up_workers(self._clock())) or None
        # With a limit the call returns as soon as every up worker answered.
        stats = self._app.control.inspect(timeout=timeout, limit=expected).stats() or {}
        with self._lock:
            self._tally.on_stats(stats)
        if not self.config.enable_events:
            return
        replies = self._app.control.broadcast(
            "enable_events", reply=True, timeout=timeout, limit=expected
        ) or []
        enabled: list[str] = []
        for reply in replies:
            for hostname, answer in reply.items():
                if isinstance(answer, dict) and "ok" in answer:
                    enabled.append(hostname)
                    if answer["ok"] == "task events enabled":
                        log.info("turned task events on", worker=hostname)
        with self._lock:
            self._tally.on_events_enabled(enabled)


def classify(exc: BaseException) -> Reason:
    """A broker error as a reason (kombu wraps redis-py's errors)."""
    if (cause := _redis_error(exc)) is not None:
        return classify_redis(cause)
    if isinstance(exc, TimeoutError):
        return Reason.TIMEOUT
    if isinstance(exc, OSError):
        return Reason.CONNECT
    return Reason.INTERNAL


def explain(exc: BaseException) -> str:
    """A broker error in words that name no secret: redis-py's own message (host and port,
    never the password); of any other error only its type (and an ``OSError``'s strerror),
    since its text may quote the broker URL."""
    if (cause := _redis_error(exc)) is not None:
        return describe(cause)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__


def _redis_error(exc: BaseException) -> redis.RedisError | None:
    return next((c for c in chain(exc) if isinstance(c, redis.RedisError)), None)
