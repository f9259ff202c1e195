"""What a stream of Celery events adds up to: task counters and histograms, and a table of workers.

Pure and single-threaded (the caller holds a lock): events go in as the dictionaries Celery's
``EventReceiver`` hands out, metric families come out. Tasks are matched with their names by
Celery's own ``celery.events.state.State`` (a task's later events do not carry the name; its LRU,
``max_tasks_in_memory``, bounds the memory), and a worker is up by Celery's own rule,
``celery.events.state.heartbeat_expires``: its newest heartbeat arrived less than twice the
worker's heartbeat interval ago (``freq``, sent in every heartbeat: 2 s by default, so 4 s).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from celery.events.state import State, heartbeat_expires
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

TASK_STATES = ("received", "started", "succeeded", "failed", "retried", "rejected", "revoked")
# Up to an hour: the 1C import runs for many minutes.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
           3600.0)  # fmt: skip
OTHER = "other"  # a named task beyond the allow-list and the cap
UNKNOWN = "unknown"  # a task whose name Celery's state does not know (see TaskNames)
DEFAULT_FREQ = 2.0  # celery.worker.heartbeat.Heart's default interval
_BULKY_FIELDS = frozenset({"args", "kwargs", "result", "traceback", "exception"})


class TaskNames:
    """Task name → label: the allow-list, then up to ``cap`` other names as first seen, then
    ``other``. A task without a known name is ``unknown``: its ``task-received`` event came
    before the exporter started or fell out of the LRU, or it was revoked before any worker
    received it (Celery then sends ``task-revoked`` alone, without the name)."""

    def __init__(self, allowed: Sequence[str], cap: int) -> None:
        self.allowed = tuple(allowed)
        self._labels = set(allowed)
        self._cap = cap
        self._others = 0

    def label(self, name: str | None) -> str:
        if name is None:
            return UNKNOWN
        if name in self._labels:
            return name
        if self._others < self._cap and name not in (OTHER, UNKNOWN):
            self._others += 1
            self._labels.add(name)
            return name
        return OTHER


class Histogram:
    """Non-cumulative bucket counts, their sum and count; rendered cumulative."""

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, n in zip((*(f"{b:g}" for b in BUCKETS), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, float(running)))
        return out


@dataclass
class TaskStats:
    states: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TASK_STATES, 0))
    runtime: Histogram = field(default_factory=Histogram)
    wait: Histogram = field(default_factory=Histogram)
    last_received: float | None = None
    last_succeeded: float | None = None


@dataclass
class WorkerRecord:
    """One worker (Celery hostname) as its events and ``inspect stats`` replies show it."""

    hostname: str
    last_seen: float  # the exporter's clock: any event, for forgetting
    freq: float = DEFAULT_FREQ
    last_heartbeat: float | None = None  # the exporter's clock when the newest heartbeat came
    offline: bool = False  # sent worker-offline (a clean shutdown)
    active: int = 0
    processed: int | None = None
    task_events_seen: int = 0
    # (processed, task_events_seen) at each of the last three heartbeats, for events_enabled.
    beats: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=3))
    events_enabled: bool | None = None
    pool_processes: int | None = None
    peak_rss_bytes: float | None = None

    def up(self, now: float) -> bool:
        if self.offline or self.last_heartbeat is None:
            return False
        return bool(now < heartbeat_expires(self.last_heartbeat, self.freq))

    def heartbeat(self, processed: int | None) -> None:
        """Task events are off when a worker's heartbeats show tasks started (``processed``
        grew between two heartbeats) and, one heartbeat later, still no task event from it
        arrived: the later heartbeat leaves time for the worker's buffered events to flush."""
        if processed is None:
            return
        if self.processed is not None and processed < self.processed:  # the worker restarted
            self.beats.clear()
        self.processed = processed
        self.beats.append((processed, self.task_events_seen))
        if len(self.beats) == 3:
            (p0, seen0), (p1, _), _ = self.beats
            if self.task_events_seen > seen0:
                self.events_enabled = True
            elif p1 > p0:
                self.events_enabled = False


class CeleryTally:
    """Counts tasks by name and state, observes runtimes and waits, and tracks workers."""

    def __init__(
        self,
        tasks: Sequence[str],
        max_other_tasks: int,
        *,
        forget_after: float,
        max_tasks_in_memory: int,
    ) -> None:
        self.names = TaskNames(tasks, max_other_tasks)
        self.forget_after = forget_after
        self.state = State(max_tasks_in_memory=max_tasks_in_memory)
        self.tasks: dict[str, TaskStats] = {name: TaskStats() for name in tasks}
        self.workers: dict[str, WorkerRecord] = {}
        self.events = 0

    # --- events in --------------------------------------------------------------------------

    def on_event(self, event: Mapping[str, Any]) -> bool:
        """Take one event; True when it shows a worker the tally did not know (or that had
        gone offline), so the caller can ask it for stats and turn its events on at once."""
        self.events += 1
        kind = str(event.get("type", ""))
        group, _, subject = kind.partition("-")
        hostname = event.get("hostname")
        if group not in ("task", "worker") or not isinstance(hostname, str):
            return False
        if kind == "task-sent":  # from the client that published the task, not a worker
            self._on_task(subject, event)
            return False
        now = float(event.get("local_received") or 0.0)
        worker, new = self._worker(hostname, now)
        if group == "worker":
            self._on_worker(worker, subject, event, now)
            return new or (subject == "online")
        worker.task_events_seen += 1
        self._on_task(subject, event)
        return new

    def _worker(self, hostname: str, now: float) -> tuple[WorkerRecord, bool]:
        worker = self.workers.get(hostname)
        if worker is None:
            worker = self.workers[hostname] = WorkerRecord(hostname, now)
            return worker, True
        worker.last_seen = max(worker.last_seen, now)
        return worker, False

    def _on_worker(
        self, worker: WorkerRecord, subject: str, event: Mapping[str, Any], now: float
    ) -> None:
        if subject == "offline":
            worker.offline, worker.active = True, 0
            return
        if subject not in ("online", "heartbeat"):
            return
        worker.offline = False
        worker.last_heartbeat = now
        freq = event.get("freq")
        if isinstance(freq, int | float) and freq > 0:
            worker.freq = float(freq)
        active = event.get("active")
        if isinstance(active, int):
            worker.active = active
        processed = event.get("processed")
        worker.heartbeat(processed if isinstance(processed, int) else None)

    def _on_task(self, subject: str, event: Mapping[str, Any]) -> None:
        # Celery's state keeps every field of a task's events; arguments, results and tracebacks
        # can be large and are not needed here, so they stay out of the (bounded) LRU.
        result = self.state.event({k: v for k, v in event.items() if k not in _BULKY_FIELDS})
        if subject not in TASK_STATES:
            return
        try:
            (task, _created), _ = result
        except (TypeError, ValueError):
            return
        label = self.names.label(getattr(task, "name", None))
        stats = self.tasks.get(label)
        if stats is None:
            stats = self.tasks[label] = TaskStats()
        stats.states[subject] += 1
        at = event.get("timestamp")
        at = float(at) if isinstance(at, int | float) else None
        if subject == "received":
            stats.last_received = _newest(stats.last_received, at)
        elif subject == "started":
            received = task.received
            if task.eta is None and received is not None and at is not None and at >= received:
                stats.wait.observe(at - received)
        elif subject in ("succeeded", "failed", "retried"):
            if subject == "succeeded":
                stats.last_succeeded = _newest(stats.last_succeeded, at)
            runtime = event.get("runtime") if subject == "succeeded" else None
            if not isinstance(runtime, int | float):
                started = task.started
                runtime = at - started if at is not None and started is not None else None
            if runtime is not None and runtime >= 0:
                stats.runtime.observe(float(runtime))

    def on_stats(self, replies: Mapping[str, Any]) -> None:
        """The latest ``inspect stats`` replies; a worker that did not answer loses its stats."""
        for worker in self.workers.values():
            reply = replies.get(worker.hostname)
            pool = reply.get("pool") if isinstance(reply, Mapping) else None
            rusage = reply.get("rusage") if isinstance(reply, Mapping) else None
            processes = pool.get("processes") if isinstance(pool, Mapping) else None
            maxrss = rusage.get("maxrss") if isinstance(rusage, Mapping) else None
            worker.pool_processes = len(processes) if isinstance(processes, list) else None
            # getrusage's ru_maxrss is in KiB on Linux.
            worker.peak_rss_bytes = maxrss * 1024.0 if isinstance(maxrss, int | float) else None

    def on_events_enabled(self, hostnames: Iterable[str]) -> None:
        """Workers that answered ``enable_events`` with ok: their task events are on now."""
        for hostname in hostnames:
            worker = self.workers.get(hostname)
            if worker is not None:
                worker.events_enabled = True
                worker.beats.clear()

    # --- state out --------------------------------------------------------------------------

    def forget(self, now: float) -> None:
        for hostname in [h for h, w in self.workers.items()
                         if now - w.last_seen > self.forget_after]:
            del self.workers[hostname]

    def up_workers(self, now: float) -> list[WorkerRecord]:
        return [w for w in self.workers.values() if w.up(now)]

    def silent_workers(self, now: float) -> list[str]:
        """Up workers whose task events are off (their tasks run unseen)."""
        return sorted(w.hostname for w in self.up_workers(now) if w.events_enabled is False)

    def task_families(self) -> list[Metric]:
        counts = CounterMetricFamily(
            "customer_sync_celery_tasks",
            "Celery task events received by the exporter since it started (events are not "
            "replayed), by task name and state: one per attempt, so a retried task counts "
            "received and started once per run. Task names beyond the allow-list and the cap "
            "are 'other'; 'unknown' when Celery's state lost the name.",
            labels=["task", "state"],
        )
        runtime = HistogramMetricFamily(
            "customer_sync_celery_task_runtime_seconds",
            "Run time of task executions that ended (succeeded, failed or retried): Celery's "
            "runtime field for successes, else end minus task-started; since the exporter started.",
            labels=["task"],
        )
        wait = HistogramMetricFamily(
            "customer_sync_celery_task_queue_wait_seconds",
            "From task-received (a worker took the message from the broker) to task-started (a "
            "pool process began it); tasks with an ETA or countdown are left out. Time in the "
            "broker queue before a worker took the message is not included.",
            labels=["task"],
        )
        received = GaugeMetricFamily(
            "customer_sync_celery_task_last_received_timestamp_seconds",
            "When a worker last received this task (the worker's clock, Unix time); absent "
            "until one was seen since the exporter started.",
            labels=["task"],
        )
        succeeded = GaugeMetricFamily(
            "customer_sync_celery_task_last_succeeded_timestamp_seconds",
            "When this task last succeeded (the worker's clock, Unix time); absent until one "
            "was seen since the exporter started.",
            labels=["task"],
        )
        for name in sorted(self.tasks):
            stats = self.tasks[name]
            for state in TASK_STATES:
                counts.add_metric([name, state], stats.states[state])
            runtime.add_metric([name], stats.runtime.buckets(), stats.runtime.total)
            wait.add_metric([name], stats.wait.buckets(), stats.wait.total)
            if stats.last_received is not None:
                received.add_metric([name], stats.last_received)
            if stats.last_succeeded is not None:
                succeeded.add_metric([name], stats.last_succeeded)
        events = CounterMetricFamily(
            "customer_sync_celery_events",
            "Celery events (task and worker) the exporter received since it started.",
            value=self.events,
        )
        return [counts, runtime, wait, received, succeeded, events]

    def worker_families(self, now: float) -> list[Metric]:
        self.forget(now)
        workers = GaugeMetricFamily(
            "customer_sync_celery_workers",
            "Celery workers the exporter has heard from within forget_worker_after, up or not.",
            value=len(self.workers),
        )
        up = GaugeMetricFamily(
            "customer_sync_celery_worker_up",
            "1 while the worker's heartbeats arrive: the newest is less than twice the worker's "
            "heartbeat interval old (Celery's rule; 4 s at the default 2 s), and it has not "
            "sent worker-offline.",
            labels=["worker"],
        )
        last = GaugeMetricFamily(
            "customer_sync_celery_worker_last_heartbeat_timestamp_seconds",
            "When the exporter received the worker's newest heartbeat (Unix time).",
            labels=["worker"],
        )
        active = GaugeMetricFamily(
            "customer_sync_celery_worker_active_tasks",
            "Tasks the worker was executing at its newest heartbeat; 0 while it is not up.",
            labels=["worker"],
        )
        processed = CounterMetricFamily(
            "customer_sync_celery_worker_tasks_processed",
            "Tasks the worker has started since the worker started (its heartbeats' processed "
            "field); counts with task events off too.",
            labels=["worker"],
        )
        events_on = GaugeMetricFamily(
            "customer_sync_celery_worker_task_events_enabled",
            "1 when the worker sends task events, 0 when its heartbeats show tasks started but "
            "no task event came; absent until one of the two is known.",
            labels=["worker"],
        )
        pool = GaugeMetricFamily(
            "customer_sync_celery_worker_pool_processes",
            "Pool processes of the worker, from its answer to the latest inspect stats.",
            labels=["worker"],
        )
        rss = GaugeMetricFamily(
            "customer_sync_celery_worker_peak_resident_memory_bytes",
            "Peak resident memory of the worker's main process (getrusage maxrss), from its "
            "answer to the latest inspect stats; pool processes are not included.",
            labels=["worker"],
        )
        self._fill_workers(now, up, last, active, processed, events_on, pool, rss)
        return [workers, up, last, active, processed, events_on, pool, rss]

    def _fill_workers(
        self, now: float, up: GaugeMetricFamily, last: GaugeMetricFamily,
        active: GaugeMetricFamily, processed: CounterMetricFamily, events_on: GaugeMetricFamily,
        pool: GaugeMetricFamily, rss: GaugeMetricFamily,
    ) -> None:
        """One sample per known worker; a figure the worker never reported stays absent."""
        for name in sorted(self.workers):
            w = self.workers[name]
            is_up = w.up(now)
            up.add_metric([name], 1.0 if is_up else 0.0)
            active.add_metric([name], w.active if is_up else 0)
            if w.last_heartbeat is not None:
                last.add_metric([name], w.last_heartbeat)
            if w.processed is not None:
                processed.add_metric([name], w.processed)
            if w.events_enabled is not None:
                events_on.add_metric([name], 1.0 if w.events_enabled else 0.0)
            if w.pool_processes is not None:
                pool.add_metric([name], w.pool_processes)
            if w.peak_rss_bytes is not None:
                rss.add_metric([name], w.peak_rss_bytes)


def _newest(current: float | None, at: float | None) -> float | None:
    if at is None:
        return current
    return at if current is None else max(current, at)
