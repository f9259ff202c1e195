"""The soak's run: start the stack and the exporter, measure until the end, then judge.

Everything started is stopped, in reverse order, however the run ends; the data directory goes
too unless ``--keep``. ``main`` is what ``bench/soak.py`` runs.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import psycopg

from bench.soak.exporter_process import ExporterProcess, start_exporter
from bench.soak.plan import Plan, parse_args
from bench.soak.probe import Probe, Sample
from bench.soak.report import figures, plan_lines, report_line, say, summary_line
from bench.soak.stack import Stack, start_stack
from bench.soak.verdict import Verdict, judge_growth, judge_truth
from exporter.demo.traffic import TrafficSimulator


def wait_ready(probe: Probe, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until the sync-log collector has read the table once."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the exporter exited with {proc.returncode} during start-up")
        ok, _, text = probe.scrape()
        if ok and 'customer_sync_exporter_collector_success{collector="synclog"} 1.0' in text:
            return
        time.sleep(0.2)
    raise RuntimeError("the exporter did not become ready")


@dataclass
class Running:
    """The parts a started soak measures and stops: its data, traffic, exporter and probe."""

    root: Path
    traffic: TrafficSimulator
    exporter: ExporterProcess
    probe: Probe


@dataclass
class Measured:
    """What the run gathered: every per-scrape sample and the rows retention deleted."""

    samples: list[Sample] = field(default_factory=list)
    deleted: int = 0


def measure(plan: Plan, running: Running, stop: threading.Event, verdict: Verdict) -> Measured:
    """Scrape every ``scrape_interval`` and report every ``report_every`` (retention first)
    until the run's end, a signal, or the exporter's death (a failure)."""
    probe, proc = running.probe, running.exporter.proc
    measured = Measured()
    t0 = time.monotonic()
    next_scrape = 0.0
    next_report = plan.report_every
    interval: list[Sample] = []
    while not stop.is_set():
        now = time.monotonic() - t0
        if now >= plan.duration:
            break
        if proc.poll() is not None:
            verdict.check(False, f"the exporter exited with {proc.returncode} mid-run")
            break
        if now >= next_scrape:
            sample, _ = probe.sample(now)
            measured.samples.append(sample)
            interval.append(sample)
            next_scrape += plan.scrape_interval
            next_scrape = max(next_scrape, time.monotonic() - t0)
        if now >= next_report and interval:
            measured.deleted += probe.retention(plan.retention)
            say(report_line(next_report, interval, probe.log_rows()))
            interval = []
            next_report += plan.report_every
        stop.wait(max(0.0, min(next_scrape, next_report) - (time.monotonic() - t0)))
    if interval and not stop.is_set():
        measured.deleted += probe.retention(plan.retention)
        say(report_line(time.monotonic() - t0, interval, probe.log_rows()))
    return measured


def conclude(plan: Plan, running: Running, measured: Measured, verdict: Verdict) -> int:
    """Stop the traffic, judge growth and ground truth, stop the exporter, print the verdict."""
    traffic, exporter = running.traffic, running.exporter
    traffic.stop()
    time.sleep(2 * plan.scrape_interval)
    judge_growth(plan, measured.samples, verdict)
    judge_truth(running.probe, plan, traffic.totals.log_rows, verdict)
    exporter.stop()
    verdict.check(exporter.exit_code == 0, f"exporter exit code on SIGTERM: {exporter.exit_code}")
    say(summary_line(plan, len(measured.samples), traffic.totals.log_rows, measured.deleted,
                     traffic.failures))
    for line in [*figures(plan, measured.samples), *verdict.lines]:
        say(line)
    if verdict.failures:
        tail = (running.root / "exporter.log").read_text(errors="replace")[-3000:]
        if tail.strip():
            say("[soak] exporter log tail:\n" + tail)
    say(f"[soak] result: {'FAIL' if verdict.failures else 'PASS'}")
    return 1 if verdict.failures else 0


def soak(plan: Plan, stop: threading.Event) -> int:
    """Start the stack and the exporter, measure, judge; always stop everything started and
    remove the data directory unless ``--keep``. 130 if interrupted (no verdict)."""
    root = Path(tempfile.mkdtemp(prefix="csx-soak-"))
    stack = Stack(root)
    try:
        for line in plan_lines(plan, root):
            say(line)
        dsn, traffic, config = start_stack(plan, stack)
        exporter = start_exporter(root, config)
        stack.stops.append(exporter.stop)
        probe = Probe(exporter.port, exporter.proc.pid, dsn)
        stack.stops.append(probe.close)
        wait_ready(probe, exporter.proc)
        running = Running(root, traffic, exporter, probe)
        verdict = Verdict()
        measured = measure(plan, running, stop, verdict)
        if stop.is_set():
            say("[soak] interrupted: no verdict")
            return 130
        return conclude(plan, running, measured, verdict)
    finally:
        stack.stop()
        if plan.keep:
            say(f"[soak] data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    from exporter.logs import setup_logging

    plan = parse_args(argv)
    setup_logging("warning", "console")  # the demo parts' outage chatter would drown the report
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, on_signal)
    try:
        return soak(plan, stop)
    except (OSError, RuntimeError, psycopg.Error, subprocess.SubprocessError) as exc:
        say(f"[soak] could not run: {type(exc).__name__}: {exc}")
        return 1
