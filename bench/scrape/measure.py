"""What is measured of each side: statements, CPU, memory, serial scrape times."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.scrape.common import LOG_TABLE, SERIAL_SPAN_S
from bench.scrape.data import new_rows


@dataclass(frozen=True)
class Statements:
    """pg_stat_statements totals of one role at one moment."""

    calls: int
    on_log: int
    exec_ms: float

    def minus(self, before: Statements) -> Statements:
        return Statements(self.calls - before.calls, self.on_log - before.on_log,
                          self.exec_ms - before.exec_ms)


def statements(admin: psycopg.Connection[Any], role: str) -> Statements:
    calls, on_log, ms = admin.execute(
        "SELECT coalesce(sum(calls), 0), coalesce(sum(calls) FILTER (WHERE query ILIKE %s), 0),"
        " coalesce(sum(total_exec_time), 0)"
        " FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = %s",
        (f"%{LOG_TABLE}%", role),
    ).fetchone()  # type: ignore[misc]
    return Statements(int(calls), int(on_log), float(ms))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def pct(values: Sequence[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, round(q * (len(values) - 1)))]


def cpu_seconds(pid: int) -> float:
    """CPU time of a whole process, every thread whether running or ended, to the nanosecond.

    It is the kernel's process CPU clock, the one clock_getcpuclockid(3) names; psutil and
    /proc/<pid>/stat round to 10 ms ticks, too coarse for 20 scrapes of a few ms each.
    """
    return time.clock_gettime(((~pid) << 3) | 2)  # MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Serial:
    """``runs`` scrapes one after the other, ``new`` rows written before each."""

    new: int
    times: list[float]
    stmts: Statements
    cpu_s: float | None

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def p95(self) -> float:
        return pct(self.times, 0.95)

    def per_scrape(self, value: float) -> float:
        return value / len(self.times)


@dataclass(frozen=True)
class Background:
    """What query-exporter costs between scrapes: its rounds of the floor's statements."""

    stmts: Statements
    cpu_s: float
    seconds: float
    executions: float  # floor statements it ran (its queries_total), so partial rounds count
    per_round_queries: int  # the floor's statements, one round of them

    @property
    def rounds(self) -> float:
        return self.executions / self.per_round_queries

    def per_round(self, value: float) -> float | None:
        return value / self.rounds if self.rounds else None


@dataclass
class Side:
    name: str
    serial: dict[int, Serial] = field(default_factory=dict)
    rate: float | None = None  # scrapes/s of the concurrent scrapers
    rate_p95: float | None = None
    errors: int = 0  # failed scrapes among the concurrent ones
    rss: int | None = None
    rss_ready: int | None = None  # VmHWM once ready, before the measured scrapes
    startup_s: float | None = None
    background: Background | None = None  # query-exporter's own querying, unscraped
    spot: float | None = None  # the SPOT total it served on a quiet table
    truth: int | None = None  # the same total by SQL, read while that table was quiet

    def quiet(self) -> Serial:
        return self.serial[0]


def serial_runs(side: Side, admin: psycopg.Connection[Any], role: str, fn: Callable[[], object],
                runs: int, new_counts: Sequence[int], pid: int | None) -> None:
    """Scrapes spread evenly over one query-exporter interval (back to back if they take longer).

    Prometheus's scrapes fall at any moment of the peer's rounds, and at 10M a round keeps the
    2 cores busy for most of its 15 s: back to back, 20 scrapes (0.1 s) fell either inside or
    between its heavy statements, and its median came out 2.9 ms in one run and 10.4 ms in the
    next. Spread over the interval, every side is sampled across a whole round.
    """
    spacing = SERIAL_SPAN_S / runs
    for new in new_counts:
        before = statements(admin, role)
        cpu0 = cpu_seconds(pid) if pid else 0.0
        times: list[float] = []
        start = time.monotonic()
        for i in range(runs):
            time.sleep(max(0.0, start + i * spacing - time.monotonic()))
            new_rows(admin, new)
            times.append(timed(fn))
        cpu = cpu_seconds(pid) - cpu0 if pid else None
        side.serial[new] = Serial(new, times, statements(admin, role).minus(before), cpu)
