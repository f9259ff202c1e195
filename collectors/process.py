"""Memory and CPU of the shop's worker processes, summed per configured group.

Big 1C imports run in Celery workers or ``manage.py import_customers_from_1c``; their resident
memory shows whether an import is about to exhaust the host. A process belongs to a group when
every regex the group sets matches (``name_regex`` against the process name, ``cmdline_regex``
against the command line joined by spaces; both searched, not anchored). The exporter's own
process is never counted: the standard process collector reports it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.collector import CollectorError, Deadline, Reason
from exporter.config import ProcessConfig, ProcessGroupConfig

_ATTRS = ["pid", "name", "cmdline", "memory_info", "cpu_times"]

ProcessIter = Callable[..., Iterable[psutil.Process]]


@dataclass
class _Group:
    name: str
    name_re: re.Pattern[str] | None
    cmdline_re: re.Pattern[str] | None
    count: int = 0
    rss: int = 0
    cpu: float = 0.0

    @classmethod
    def of(cls, config: ProcessGroupConfig) -> _Group:
        return cls(
            config.name,
            re.compile(config.name_regex) if config.name_regex else None,
            re.compile(config.cmdline_regex) if config.cmdline_regex else None,
        )

    def matches(self, name: str, cmdline: str) -> bool:
        if self.name_re is not None and not self.name_re.search(name):
            return False
        return self.cmdline_re is None or bool(self.cmdline_re.search(cmdline))


class ProcessGroupCollector:
    """One pass over the process table per scrape, summing RSS and CPU per group."""

    name = "process"

    def __init__(
        self,
        config: ProcessConfig,
        *,
        process_iter: ProcessIter = psutil.process_iter,
        self_pid: int | None = None,
    ) -> None:
        self.config = config
        self._process_iter = process_iter
        self._self_pid = os.getpid() if self_pid is None else self_pid

    def collect(self, deadline: Deadline) -> list[Metric]:
        groups = [_Group.of(g) for g in self.config.groups]
        for proc in self._process_iter(_ATTRS):
            if deadline.expired():
                raise CollectorError(Reason.TIMEOUT, "the process table walk ran out of time")
            info: dict[str, Any] = proc.info  # type: ignore[attr-defined]
            if info["pid"] == self._self_pid:
                continue
            name = info["name"] or ""
            cmdline = " ".join(info["cmdline"] or ())
            for group in groups:
                if group.matches(name, cmdline):
                    group.count += 1
                    if info["memory_info"] is not None:  # None: access denied or a zombie
                        group.rss += info["memory_info"].rss
                    if info["cpu_times"] is not None:
                        group.cpu += info["cpu_times"].user + info["cpu_times"].system
        return _families(groups)


def _families(groups: list[_Group]) -> list[Metric]:
    count = GaugeMetricFamily(
        "customer_sync_processes",
        "Processes currently matching the group (0 when none runs).",
        labels=["group"],
    )
    rss = GaugeMetricFamily(
        "customer_sync_process_resident_memory_bytes",
        "Resident memory (RSS) summed over the group's processes; shared pages count once "
        "per process.",
        labels=["group"],
    )
    cpu = CounterMetricFamily(
        "customer_sync_process_cpu_seconds_total",
        "User and system CPU time summed over the group's running processes; it drops when a "
        "process exits, which rate() treats as a counter reset.",
        labels=["group"],
    )
    for g in groups:
        count.add_metric([g.name], g.count)
        rss.add_metric([g.name], g.rss)
        cpu.add_metric([g.name], g.cpu)
    return [count, rss, cpu]
