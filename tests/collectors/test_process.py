"""The process-group collector (``collectors/process.py``).

Its grouping logic is tested through its ``process_iter`` seam with fake process tables: a
property test against a brute-force reading of the rule in the module docstring, plus the own
process, unreadable fields and the deadline. Two tests stay on real child processes, for what a
fake cannot show: that psutil's figures per pid are what the collector sums, and that the
default groups recognise the shop's real command lines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.process import ProcessGroupCollector
from exporter.collector import CollectorError, Deadline, Reason
from exporter.config import ProcessConfig, ProcessGroupConfig
from tests.exposition import promtool_problems, samples

COUNT = "customer_sync_processes"
RSS = "customer_sync_process_resident_memory_bytes"
CPU = "customer_sync_process_cpu_seconds_total"

# Allocate and touch memory, burn a little CPU, say ready, then sleep (RSS and CPU stand still).
CHILD = """
import sys, time
block = bytearray(int(sys.argv[2]))
for i in range(0, len(block), 4096):
    block[i] = 1
end = time.process_time() + 0.05
while time.process_time() < end:
    pass
print("ready", flush=True)
time.sleep(60)
"""


class Children:
    """Real child processes this test starts and always stops."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, args: list[str]) -> int:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc.pid

    def python(self, marker: str, megabytes: int) -> int:
        pid = self.start([sys.executable, "-c", CHILD, marker, str(megabytes * 1024 * 1024)])
        assert self.procs[-1].stdout is not None
        assert self.procs[-1].stdout.readline().strip() == "ready"
        return pid

    def stop(self, pid: int) -> None:
        for proc in self.procs:
            if proc.pid == pid:
                proc.kill()
                proc.wait(5)

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def children() -> Iterator[Children]:
    c = Children()
    yield c
    c.stop_all()


def independent(pids: list[int]) -> tuple[int, float]:
    """RSS and CPU seconds read with psutil, one pid at a time."""
    rss = cpu = 0.0
    for pid in pids:
        p = psutil.Process(pid)
        rss += p.memory_info().rss
        times = p.cpu_times()
        cpu += times.user + times.system
    return int(rss), cpu


def test_groups_by_cmdline_match_psutil_per_pid(children: Children) -> None:
    tag = uuid.uuid4().hex[:8]
    a = [children.python(f"import-{tag}", 30), children.python(f"import-{tag}", 10)]
    b = [children.python(f"worker-{tag}", 20)]
    config = ProcessConfig(
        groups=[
            ProcessGroupConfig(name="import", cmdline_regex=rf"\bimport-{tag}\b"),
            ProcessGroupConfig(name="worker", cmdline_regex=rf"\bworker-{tag}\b"),
            ProcessGroupConfig(name="absent", cmdline_regex=rf"nothing-runs-{tag}"),
        ]
    )
    families = ProcessGroupCollector(config).collect(Deadline.after(5))
    count = samples(families, "customer_sync_processes", by="group")
    rss = samples(families, "customer_sync_process_resident_memory_bytes", by="group")
    cpu = samples(families, "customer_sync_process_cpu_seconds_total", by="group")
    assert count == {"import": 2, "worker": 1, "absent": 0}
    for group, pids in (("import", a), ("worker", b)):
        want_rss, want_cpu = independent(pids)
        assert abs(rss[group] - want_rss) <= 64 * 1024  # a few pages of interpreter noise
        assert cpu[group] == pytest.approx(want_cpu, abs=0.02)
        assert cpu[group] >= 0.05 * len(pids) - 0.01
    assert rss["import"] > 40 * 1024 * 1024 > rss["worker"] > 20 * 1024 * 1024
    assert rss["absent"] == 0 and cpu["absent"] == 0

    children.stop(a[0])  # an import finishes: the group shrinks on the next scrape
    families = ProcessGroupCollector(config).collect(Deadline.after(5))
    assert samples(families, "customer_sync_processes", by="group")["import"] == 1
    want_rss, _ = independent([a[1]])
    got = samples(families, "customer_sync_process_resident_memory_bytes", by="group")["import"]
    assert abs(got - want_rss) <= 64 * 1024






def test_default_groups_find_celery_and_the_import_command(
    children: Children, tmp_path: Path
) -> None:
    """The default config recognises the shop's real command lines."""
    script = tmp_path / "manage.py"
    script.write_text("import time\nprint('ready', flush=True)\ntime.sleep(60)\n")
    children.start([sys.executable, str(script), "import_customers_from_1c", "--file", "x.xml"])
    fake_celery = tmp_path / "celery"
    fake_celery.write_text(script.read_text())
    children.start([sys.executable, str(fake_celery), "-A", "freesport", "worker", "-l", "info"])
    for proc in children.procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    families = ProcessGroupCollector(ProcessConfig()).collect(Deadline.after(5))
    count = samples(families, "customer_sync_processes", by="group")
    assert count["customer_import"] >= 1 and count["celery_worker"] >= 1


# --- a fake process table through the process_iter seam ----------------------------------------


@dataclass
class FakeProcess:
    """One row of a process table; ``None`` where psutil gives None (access denied, zombie)."""

    pid: int
    name: str | None
    cmdline: list[str] | None
    rss: int | None
    cpu: tuple[float, float] | None  # user, system

    def as_psutil(self, attrs: list[str]) -> SimpleNamespace:
        """What ``psutil.process_iter(attrs)`` yields: ``info`` holds exactly the asked attrs."""
        every: dict[str, Any] = {
            "pid": self.pid, "name": self.name, "cmdline": self.cmdline,
            "memory_info": None if self.rss is None else SimpleNamespace(rss=self.rss),
            "cpu_times": None if self.cpu is None else SimpleNamespace(
                user=self.cpu[0], system=self.cpu[1]),
        }
        return SimpleNamespace(info={a: every[a] for a in attrs})


class FakeTable:
    """A ``process_iter`` replacement over fixed rows; remembers what it was asked for."""

    def __init__(self, rows: Iterable[FakeProcess]) -> None:
        self.rows = list(rows)
        self.asked: list[list[str]] = []

    def __call__(self, attrs: list[str]) -> Iterator[SimpleNamespace]:
        self.asked.append(list(attrs))
        return (row.as_psutil(attrs) for row in self.rows)


def oracle(rows: list[FakeProcess], group: ProcessGroupConfig, me: int) -> tuple[int, int, float]:
    """The module docstring's rule, brute force: count, RSS and CPU of one group."""
    count = rss = 0
    cpu = 0.0
    for row in rows:
        if row.pid == me:
            continue
        name, cmdline = row.name or "", " ".join(row.cmdline or [])
        if group.name_regex and re.search(group.name_regex, name) is None:
            continue
        if group.cmdline_regex and re.search(group.cmdline_regex, cmdline) is None:
            continue
        count += 1
        rss += row.rss or 0
        cpu += sum(row.cpu) if row.cpu else 0.0
    return count, rss, cpu


WORDS = st.sampled_from(["celery", "worker", "-A", "freesport", "manage.py",
                         "import_customers_from_1c", "python3", "beat", "x.xml"])
ROWS = st.lists(st.builds(
    FakeProcess,
    pid=st.integers(1, 40),
    name=st.none() | st.sampled_from(["python3", "celery", "postgres", "sleep"]),
    cmdline=st.none() | st.lists(WORDS, max_size=5),
    rss=st.none() | st.integers(0, 2**32),
    cpu=st.none() | st.tuples(st.floats(0, 1e4), st.floats(0, 1e4)),
), max_size=25)
MATCHERS = st.lists(st.tuples(
    st.none() | st.sampled_from([r"^python", "celery", r"gres$"]),
    st.none() | st.sampled_from([r"celery\b.*\bworker\b", r"manage\.py\s+import", "beat", "^$"]),
).filter(lambda m: m != (None, None)), min_size=1, max_size=4)  # a group needs a matcher


@settings(max_examples=300, deadline=None)
@given(ROWS, MATCHERS, st.integers(1, 40))
def test_groups_sum_what_the_rule_selects(
    rows: list[FakeProcess], matchers: list[tuple[str | None, str | None]], me: int
) -> None:
    groups = [ProcessGroupConfig(name=f"g{i}", name_regex=name_re, cmdline_regex=cmd_re)
              for i, (name_re, cmd_re) in enumerate(matchers)]
    table = FakeTable(rows)
    families = ProcessGroupCollector(
        ProcessConfig(groups=groups), process_iter=table, self_pid=me
    ).collect(Deadline.after(5))
    count, rss, cpu = (samples(families, n, by="group") for n in (COUNT, RSS, CPU))
    for group in groups:
        want_count, want_rss, want_cpu = oracle(rows, group, me)
        assert count[group.name] == want_count
        assert rss[group.name] == want_rss
        assert cpu[group.name] == pytest.approx(want_cpu)
    assert len(table.asked) == 1  # one pass over the table per scrape


def test_the_exporter_itself_is_left_out_by_default() -> None:
    me = FakeProcess(os.getpid(), "python3", ["celery", "-A", "x", "worker"], 10**9, (5.0, 5.0))
    other = FakeProcess(os.getpid() + 1, "python3", ["celery", "worker"], 100, (1.0, 0.5))
    families = ProcessGroupCollector(
        ProcessConfig(), process_iter=FakeTable([me, other])
    ).collect(Deadline.after(5))
    assert samples(families, COUNT, by="group") == {"celery_worker": 1, "customer_import": 0}
    assert samples(families, RSS, by="group")["celery_worker"] == 100
    assert samples(families, CPU, by="group")["celery_worker"] == 1.5
    assert promtool_problems(families) == ""


class Countdown:
    """A deadline that expires after ``left`` checks, however fast the walk is."""

    def __init__(self, left: int) -> None:
        self.left = left

    def expired(self) -> bool:
        self.left -= 1
        return self.left < 0


def test_a_walk_that_outlasts_the_deadline_fails_as_a_timeout() -> None:
    rows = [FakeProcess(100 + i, "python3", ["celery", "worker"], 1, (0.0, 0.0)) for i in range(5)]
    collector = ProcessGroupCollector(ProcessConfig(), process_iter=FakeTable(rows), self_pid=1)
    assert samples(collector.collect(Countdown(5)), COUNT, by="group")["celery_worker"] == 5
    with pytest.raises(CollectorError) as caught:
        collector.collect(Countdown(3))  # type: ignore[arg-type]
    assert caught.value.reason is Reason.TIMEOUT
