"""The process-group collector on real child processes, checked against psutil per pid."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from prometheus_client.core import Metric

from collectors.process import ProcessGroupCollector
from exporter.collector import Deadline
from exporter.config import ProcessConfig, ProcessGroupConfig

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


def samples(families: list[Metric], name: str) -> dict[str, float]:
    return {s.labels["group"]: s.value for f in families for s in f.samples if s.name == name}


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
    count = samples(families, "customer_sync_processes")
    rss = samples(families, "customer_sync_process_resident_memory_bytes")
    cpu = samples(families, "customer_sync_process_cpu_seconds_total")
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
    assert samples(families, "customer_sync_processes")["import"] == 1
    want_rss, _ = independent([a[1]])
    got = samples(families, "customer_sync_process_resident_memory_bytes")["import"]
    assert abs(got - want_rss) <= 64 * 1024


def test_name_regex_and_both_regexes_must_match(children: Children, tmp_path: Path) -> None:
    name = f"cs{uuid.uuid4().hex[:8]}"  # under 15 characters: the kernel's comm keeps it whole
    sleeper = tmp_path / name
    shutil.copy(shutil.which("sleep") or "/bin/sleep", sleeper)
    pid = children.start([str(sleeper), "60"])
    config = ProcessConfig(
        groups=[
            ProcessGroupConfig(name="by_name", name_regex=rf"^{name}$"),
            ProcessGroupConfig(name="both", name_regex=rf"^{name}$", cmdline_regex=r"\b60$"),
            ProcessGroupConfig(name="name_only", name_regex=rf"^{name}$", cmdline_regex=r"\b61$"),
        ]
    )
    families = ProcessGroupCollector(config).collect(Deadline.after(5))
    assert samples(families, "customer_sync_processes") == {
        "by_name": 1,
        "both": 1,
        "name_only": 0,
    }
    want_rss, _ = independent([pid])
    assert samples(families, "customer_sync_process_resident_memory_bytes")["by_name"] == want_rss


def test_own_process_is_excluded(children: Children) -> None:
    me = psutil.Process()
    own = " ".join(me.cmdline())
    config = ProcessConfig(
        groups=[ProcessGroupConfig(name="me", cmdline_regex=f"^{re.escape(own)}$")]
    )
    others = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if " ".join(p.info["cmdline"] or ()) == own and p.pid != me.pid
    ]
    families = ProcessGroupCollector(config).collect(Deadline.after(5))
    assert samples(families, "customer_sync_processes")["me"] == len(others)

    # A real child standing in as "self" is left out; counted by a collector that is not it.
    marker = f"self-{uuid.uuid4().hex[:8]}"
    pid = children.python(marker, 1)
    config = ProcessConfig(groups=[ProcessGroupConfig(name="m", cmdline_regex=marker)])
    as_child = ProcessGroupCollector(config, self_pid=pid).collect(Deadline.after(5))
    assert samples(as_child, "customer_sync_processes")["m"] == 0
    assert samples(as_child, "customer_sync_process_resident_memory_bytes")["m"] == 0
    as_us = ProcessGroupCollector(config).collect(Deadline.after(5))
    assert samples(as_us, "customer_sync_processes")["m"] == 1


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
    count = samples(families, "customer_sync_processes")
    assert count["customer_import"] >= 1 and count["celery_worker"] >= 1
