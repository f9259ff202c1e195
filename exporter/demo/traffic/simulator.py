"""The live simulator: the model run in a thread at ``rate`` sync-log rows per second.

A 1C outage comes every few minutes (callbacks switch the stand-in 1C server into it), and a
batch that cannot be written because the database went away is kept and written with the next
one, so a restarted PostgreSQL loses no simulated traffic.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import structlog

from exporter.demo.traffic.ids import SequenceIds
from exporter.demo.traffic.model import TrafficModel
from exporter.demo.traffic.rows import Op
from exporter.demo.traffic.state import Mix
from exporter.demo.traffic.writer import WriteStats, write_ops

log = structlog.get_logger(__name__)

@dataclass(frozen=True)
class OutageSchedule:
    """A 1C outage of ``duration`` seconds every ``every`` seconds, the first at ``first``."""

    first: float = 90.0
    every: float = 180.0
    duration: float = 40.0

    def active(self, t: float) -> bool:
        if self.every <= 0 or t < self.first:
            return False
        return (t - self.first) % self.every < self.duration


NO_OUTAGES = OutageSchedule(first=float("inf"))


class TrafficSimulator:
    """Keeps writing FREESPORT sync traffic at ``rate`` log rows per second.

    ``start()``/``stop()`` run it in a thread; ``step(n)`` writes exactly ``n`` log rows (and
    their side rows) now, for tests. ``on_outage(active)`` callbacks fire when the schedule
    enters or leaves a 1C outage; ``on_batch(ops)`` callbacks after each committed batch.
    """

    def __init__(
        self,
        dsn: str,
        rng: random.Random,
        rate: float = 5.0,
        *,
        mix: Mix | None = None,
        schedule: OutageSchedule = OutageSchedule(),
        tick: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dsn = dsn
        self.rate = rate
        self.schedule = schedule
        self.tick = tick
        self.clock = clock
        self.on_outage: list[Callable[[bool], None]] = []
        self.on_batch: list[Callable[[Sequence[Op]], None]] = []
        self.totals = WriteStats()
        self.failures = 0
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._forced: bool | None = None
        self._pending: list[Op] = []
        self._t0 = clock()
        self.ids = SequenceIds(self.connection)
        self.model = TrafficModel(rng, self.ids, mix)

    # -- connection --

    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.dsn, autocommit=True, application_name="freesport-demo-traffic"
            )
        return self._conn

    def load_state(self) -> None:
        """Pick up an earlier run's users; close sessions it left open (as the hourly
        ``cleanup_stale_import_sessions`` task would)."""
        conn = self.connection()
        conn.execute(
            "UPDATE import_sessions SET status = 'failed', finished_at = now(), updated_at = now(),"
            " error_message = 'Сессия прервана: процесс импорта остановлен'"
            " WHERE import_type = 'customers' AND status IN ('pending', 'started', 'in_progress')"
        )
        self.model.load(conn)

    # -- outage --

    @property
    def outage(self) -> bool:
        return self.model.outage

    def force_outage(self, active: bool | None) -> None:
        """Override the schedule (``None`` hands control back to it at the next step)."""
        with self._lock:
            self._forced = active
            if active is not None:
                self._apply_outage(active)

    def _apply_outage(self, active: bool) -> None:
        if active == self.model.outage:
            return
        self.model.outage = active
        log.info("1C outage " + ("started" if active else "ended"))
        for callback in self.on_outage:
            try:
                callback(active)
            except Exception:
                log.exception("outage callback failed")

    def _advance(self) -> None:
        t = self.clock() - self._t0
        self.model.t = t
        self._apply_outage(self._forced if self._forced is not None else self.schedule.active(t))

    # -- writing --

    def step(self, n: int) -> WriteStats:
        """Generate and write exactly ``n`` log rows (plus side rows) with created_at = now()."""
        with self._lock:
            self._advance()
            # Enough ids for any batch of n rows: generation itself never touches the database.
            self.ids.reserve(users=2 * n + self.model.mix.initial_catalog + 16, sessions=n + 2)
            ops = self._pending + self.model.take(n)
            self._pending = []
            return self.write_batch(ops)

    def write_batch(self, ops: Sequence[Op], times: Sequence[datetime] | None = None) -> WriteStats:
        """Write ``ops`` now in one transaction (retried by the thread if the DB is down)."""
        try:
            stats = write_ops(self.connection(), ops, times)
        except psycopg.OperationalError:
            self._pending = list(ops)  # the model already counts them as written
            if self._conn is not None:
                self._conn.close()
            raise
        self.totals.add(stats)
        for callback in self.on_batch:
            try:
                callback(ops)
            except Exception:
                log.exception("batch callback failed")
        return stats

    # -- the thread --

    def start(self) -> TrafficSimulator:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self) -> None:
        credit = 0.0
        last = self.clock()
        while not self._stop.wait(self.tick):
            now = self.clock()
            credit = min(credit + (now - last) * self.rate, self.rate * 10)
            last = now
            n = int(credit)
            if n <= 0:
                continue
            try:
                self.step(n)
                credit -= n
            except psycopg.Error as exc:
                self.failures += 1
                if self.failures % 20 == 1:
                    log.warning("traffic write failed", error=str(exc).splitlines()[0])
            except Exception:
                self.failures += 1
                log.exception("traffic step failed")
