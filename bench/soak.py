"""Soak: the demo traffic at 20x speed against the exporter running as its own process.

    .venv/bin/python bench/soak.py                      # 30 minutes, report every minute
    .venv/bin/python bench/soak.py --duration 60s --report-every 10s --windows 3s,6s,12s

Why: exporters are known to creep to gigabytes over weeks (query-exporter#187, celery-exporter
#263, postgres_exporter#363). This runs the whole demo stack (real PostgreSQL, Redis with a
real Celery worker and beat, the 1C stand-in with its outage cycle, import processes, a log folder)
with the traffic model's clock at ``--speed`` times real time, starts
``customer-sync-exporter serve`` as a separate process (so its RSS is its own) and scrapes it
every ``--scrape-interval``. Every ``--report-every`` it prints one ``[soak] elapsed=...`` line:
the exporter's RSS, open file descriptors and PostgreSQL connections, the series in the scrape,
the rows in the log table and the scrape p95 over the interval.

Windows: the exporter's sliding windows are configured short (``5m`` and ``1h`` divided by the
speed, the ``24h`` one shortened to at most a fifth of the run), so they fill during warm-up and
then slide: rows enter and leave every window thousands of times per run. Retention deletes log
rows older than ``--retention`` (default twice the longest window) every report interval, in
batches of 1000 like ``cleanup_sync_logs``, so the table stays bounded as in production.

Verdict (exit 1 on any failure, 0 otherwise, 2 for bad arguments):

* warm-up ends at ``--warmup`` (default: the longer of 20 % of the run and the longest window,
  i.e. the time the longest window needs to fill); it must end within the first third;
* RSS: the median of the per-scrape RSS samples in the last report interval may exceed the
  median in the report interval that ends warm-up by at most ``--rss-slack`` (3 %);
* fds, DB connections, series: the maximum over the last third of the run may exceed the maximum
  over the middle third by at most a small slack (2 fds, 1 connection, 2 % of the series);
* DB connections never exceed the pool size plus the start-up pass's own connection;
* no scrape fails, and the exporter exits 0 on SIGTERM at the end;
* ground truth after the traffic stops: every window's ``customer_sync_recent_operations`` sum
  equals ``count(*)`` of the rows in that window by SQL (bounded by the database clock read just
  before and after the scrape), and ``customer_sync_operations_total`` sums to every row the
  traffic wrote, deleted ones included (no row lost or counted twice over the whole run).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psutil
import psycopg
import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.config import Config, parse_duration
from exporter.demo.celery_app import QUEUE as CELERY_QUEUE
from exporter.demo.celery_processes import CeleryProcesses, CelerySettings
from exporter.demo.celery_traffic import CeleryTraffic
from exporter.demo.import_processes import ImportProcesses
from exporter.demo.logfolder import LogFolder
from exporter.demo.onec import OneCStandIn
from exporter.demo.ports import free_port
from exporter.demo.postgres import EmbeddedPostgres
from exporter.demo.redis import RedisServer
from exporter.demo.run import OUTAGE, outage_switch
from exporter.demo.traffic import TrafficSimulator

PRODUCTION_WINDOWS = (300.0, 3600.0, 86400.0)  # 5m, 1h, 24h
POOL_MAX_SIZE = 3  # the exporter's default database.pool_max_size
APP_NAME = "customer-sync-exporter"
DELETE_BATCH = 1000  # cleanup_sync_logs' SYNC_LOG_BATCH_SIZE
SLACK = {"fds": 2.0, "db_conns": 1.0}
SERIES_SLACK = 0.02
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def say(line: str) -> None:
    print(line, flush=True)


def label(seconds: float) -> str:
    """A Prometheus-style duration for a window label: 15s, 3m, 6m, 1h12m, 750ms."""
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{ms}ms"
    s = ms // 1000
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            out += f"{s // size}{unit}"
            s %= size
    return out or "0s"


# --- arguments ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    duration: float
    speed: float
    rate: float
    scrape_interval: float
    report_every: float
    windows: list[float]
    warmup: float
    retention: float
    rss_slack: float
    seed: int
    keep: bool

    @property
    def longest(self) -> float:
        return max(self.windows)


def parse_args(argv: Sequence[str] | None = None) -> Plan:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--duration", default="30m", help="wall-clock run time (default 30m)")
    p.add_argument("--speed", type=float, default=20.0,
                   help="traffic clock speed-up: outages, bursts and rows per second (default 20)")
    p.add_argument("--rate", type=float, default=5.0,
                   help="log rows per traffic-clock second, as the demo's --rate (default 5)")
    p.add_argument("--scrape-interval", default="1s", help="time between scrapes (default 1s)")
    p.add_argument("--report-every", default="1m", help="time between report lines (default 1m)")
    p.add_argument("--windows", default="auto",
                   help="the exporter's windows, e.g. 15s,3m,6m (default auto: 5m and 1h "
                        "divided by --speed, 24h divided by --speed but at most 1/5 of the run)")
    p.add_argument("--warmup", default=None,
                   help="end of warm-up (default: max(20%% of the run, the longest window))")
    p.add_argument("--retention", default=None,
                   help="delete log rows older than this (default: twice the longest window)")
    p.add_argument("--rss-slack", type=float, default=0.03,
                   help="allowed RSS growth after warm-up, as a ratio (default 0.03)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep the data directory")
    a = p.parse_args(argv)
    duration = parse_duration(a.duration)
    if a.windows == "auto":
        windows = [w / a.speed for w in PRODUCTION_WINDOWS]
        windows[-1] = min(windows[-1], duration / 5)
    else:
        windows = [parse_duration(w) for w in a.windows.split(",")]
    if any(b <= c for b, c in zip(windows[1:], windows, strict=False)) or min(windows) <= 0:
        p.error(f"windows must be positive and increasing, got {[label(w) for w in windows]}; "
                "for a short run pass --windows (e.g. 3s,6s,12s)")
    warmup = parse_duration(a.warmup) if a.warmup else max(0.2 * duration, max(windows))
    if warmup > duration / 3:
        p.error(f"warm-up {label(warmup)} ends after the first third of a {label(duration)} run: "
                "run longer or pass shorter --windows")
    report_every = parse_duration(a.report_every)
    if report_every > duration / 3:
        p.error("--report-every must fit three times into --duration")
    return Plan(
        duration=duration, speed=a.speed, rate=a.rate,
        scrape_interval=parse_duration(a.scrape_interval), report_every=report_every,
        windows=windows, warmup=warmup,
        retention=parse_duration(a.retention) if a.retention else 2 * max(windows),
        rss_slack=a.rss_slack, seed=a.seed if a.seed is not None else random.randrange(2**31),
        keep=a.keep,
    )


# --- the stack ---------------------------------------------------------------------------------


@dataclass
class Stack:
    """What the soak started, stopped in reverse order (children first)."""

    root: Path
    stops: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        for stop in reversed(self.stops):
            try:
                stop()
            except Exception as exc:  # keep stopping the rest
                say(f"[soak] stop failed: {type(exc).__name__}: {exc}")
        self.stops.clear()


def _secret(path: Path, value: str) -> Path:
    path.write_text(value, encoding="utf-8")
    path.chmod(0o600)
    return path


def exporter_config(
    root: Path, pg: EmbeddedPostgres, redis_port: int, redis_password: str, onec: OneCStandIn,
    onec_password: str, log_dir: Path, windows: list[float],
) -> Path:
    """The demo's config (``exporter/demo/run.py`` ``build_config``: every collector on) with
    short windows, and secrets in ``*_file`` keys rather than in the file."""
    secrets_dir = root / "secrets"
    secrets_dir.mkdir(mode=0o700)
    data: dict[str, Any] = {
        "scrape_timeout": "10s",
        "database": {
            "dsn": pg.dsn("freesport", with_password=False),
            "password_file": str(_secret(secrets_dir / "pg", pg.password)),
            "pool_max_size": POOL_MAX_SIZE,
            "application_name": APP_NAME,
        },
        "collectors": {
            "synclog": {"enabled": True, "windows": [label(w) for w in windows]},
            "business": {"enabled": True},
            "postgres": {"enabled": True,
                         "application_names": ["freesport-demo-traffic", APP_NAME]},
            "redis": {"enabled": True, "url": f"redis://127.0.0.1:{redis_port}/0",
                      "password_file": str(_secret(secrets_dir / "redis", redis_password)),
                      "queues": [CELERY_QUEUE]},
            "disk": {"enabled": True, "dirs": [{"name": "freesport_logs", "path": str(log_dir)}]},
            "onec": {"enabled": True, "url": onec.url, "username": onec.username,
                     "password_file": str(_secret(secrets_dir / "onec", onec_password)),
                     "json_field": "status", "json_value": "ok"},
            "process": {"enabled": True},
        },
    }
    Config.model_validate(data)  # fail here, not in the child, if the shape is wrong
    path = root / "exporter.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _commit() -> str:
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                              text=True, timeout=10, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: no orphan if we are killed


@dataclass
class ExporterProcess:
    """``customer-sync-exporter serve`` as its own process, so the RSS measured is its alone;
    ``stop`` keeps the exit code SIGTERM got, which the verdict checks."""

    proc: subprocess.Popen[bytes]
    port: int
    exit_code: int | None = None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.exit_code = self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_exporter(root: Path, config: Path) -> ExporterProcess:
    exe = Path(sys.executable).parent / "customer-sync-exporter"
    if not exe.exists():
        raise RuntimeError(f"{exe} is missing: install the project (pip install -e .)")
    port = free_port()
    with (root / "exporter.log").open("ab") as err:
        proc = subprocess.Popen(
            [str(exe), "serve", "--config.file", str(config),
             "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warning"],
            stdin=subprocess.DEVNULL, stdout=err, stderr=err, preexec_fn=_die_with_parent,
        )
    return ExporterProcess(proc, port)


def start_stack(plan: Plan, stack: Stack) -> tuple[str, TrafficSimulator, Path]:
    """PostgreSQL, Redis + Celery worker, 1C stand-in, log folder, import processes, traffic
    with a sped-up clock; returns the DSN, the simulator and the exporter's config file."""
    root = stack.root
    rng = random.Random(plan.seed)
    pg = EmbeddedPostgres(root / "postgres")
    stack.stops.append(pg.stop)
    pg.start()
    dsn = pg.create_database("freesport")
    redis_password = os.urandom(12).hex()
    redis_server = RedisServer(root / "redis", password=redis_password)
    stack.stops.append(redis_server.stop)
    redis_server.start()
    onec_password = os.urandom(12).hex()
    onec = OneCStandIn(username="exchange", password=onec_password, slow_seconds=20.0 / plan.speed)
    stack.stops.append(onec.stop)
    onec.start()
    folder = LogFolder(root / "logs")
    speed = plan.speed
    # Beat's schedule and the imports' retries at the traffic's speed, so the worker keeps up.
    settings = CelerySettings(redis_server.url(), dsn, onec.url, "exchange", onec_password,
                              beat_speedup=60.0 * speed, retry_seconds=10.0 / speed)
    workers = CeleryProcesses(settings, folder.path, root / "celery")
    stack.stops.append(workers.stop)
    workers.start()
    celery = CeleryTraffic(redis_server.url(), random.Random(rng.getrandbits(64)))
    stack.stops.append(celery.stop)
    celery.start()
    imports = ImportProcesses(folder, random.Random(rng.getrandbits(64)))
    stack.stops.append(imports.stop)
    traffic = TrafficSimulator(dsn, rng, rate=plan.rate, schedule=OUTAGE,
                               clock=lambda: time.monotonic() * speed)
    traffic.on_outage.append(outage_switch(onec))
    traffic.on_batch.extend([imports.on_batch, celery.on_batch])
    traffic.load_state()
    stack.stops.append(traffic.stop)
    traffic.start()
    config = exporter_config(root, pg, redis_server.port, redis_password, onec, onec_password,
                             folder.path, plan.windows)
    return dsn, traffic, config


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float  # seconds since the exporter first answered
    rss: int
    fds: int
    db_conns: int
    series: int
    scrape_s: float
    ok: bool


def parse_samples(text: str) -> Iterator[tuple[str, str, float]]:
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            yield m.group(1), m.group(2) or "", float(m.group(3))


def series_count(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Probe:
    """Scrapes like Prometheus (one keep-alive connection) and reads the exporter's figures."""

    def __init__(self, port: int, pid: int, dsn: str) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.session = requests.Session()
        self.process = psutil.Process(pid)
        self.db = psycopg.connect(dsn, autocommit=True, application_name="customer-sync-soak")

    def scrape(self) -> tuple[bool, float, str]:
        started = time.perf_counter()
        try:
            r = self.session.get(self.url, timeout=30)
            ok, text = r.status_code == 200, r.text
        except requests.RequestException as exc:
            ok, text = False, f"{type(exc).__name__}: {exc}"
        return ok, time.perf_counter() - started, text

    def db_conns(self) -> int:
        (n,) = self.db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (APP_NAME,)
        ).fetchone()  # type: ignore[misc]
        return int(n)

    def log_rows(self) -> int:
        (n,) = self.db.execute("SELECT count(*) FROM common_customersynclog").fetchone()  # type: ignore[misc]
        return int(n)

    def sample(self, t: float) -> tuple[Sample, str]:
        ok, took, text = self.scrape()
        sample = Sample(
            t=t, rss=self.process.memory_info().rss, fds=self.process.num_fds(),
            db_conns=self.db_conns(), series=series_count(text) if ok else 0, scrape_s=took, ok=ok,
        )
        return sample, text

    def retention(self, keep_seconds: float) -> int:
        """``cleanup_sync_logs``: delete rows older than the retention, 1000 at a time."""
        deleted = 0
        while True:
            cur = self.db.execute(
                "DELETE FROM common_customersynclog WHERE id IN (SELECT id FROM"
                " common_customersynclog WHERE created_at < now() - make_interval(secs => %s)"
                " ORDER BY id LIMIT %s)", (keep_seconds, DELETE_BATCH),
            )
            deleted += cur.rowcount
            if cur.rowcount < DELETE_BATCH:
                return deleted

    def close(self) -> None:
        self.session.close()
        self.db.close()


def report_line(elapsed: float, window: list[Sample], log_rows: int) -> str:
    last = window[-1]
    times = [s.scrape_s for s in window if s.ok]
    p95 = pct(times, 0.95) * 1000 if times else float("nan")
    return (
        f"[soak] elapsed={elapsed:.0f}s rss_mib={last.rss / 2**20:.1f} fds={last.fds} "
        f"db_conns={last.db_conns} series={last.series} log_rows={log_rows} "
        f"scrape_p95_ms={p95:.1f} scrapes={len(window)} failed={sum(not s.ok for s in window)}"
    )


def figures(plan: Plan, samples: list[Sample]) -> list[str]:
    """The run in a few lines, for the record: RSS at start, end of warm-up, end; the range of
    every other figure after warm-up."""
    if not samples:
        return ["[soak] figures: no samples"]
    r = plan.report_every
    warm = [s.rss for s in samples if plan.warmup - r < s.t <= plan.warmup] or [samples[0].rss]
    end = [s.rss for s in samples if s.t > samples[-1].t - r]
    after = [s for s in samples if s.t > plan.warmup and s.ok] or samples
    base, last = statistics.median(warm), statistics.median(end)

    def span(name: str) -> str:
        values = [getattr(s, name) for s in after]
        return f"{name}={min(values)}..{max(values)}"

    times = sorted(s.scrape_s for s in samples if s.ok)
    return [
        f"[soak] figures: rss_mib start={samples[0].rss / 2**20:.1f} "
        f"warmup_end={base / 2**20:.1f} end={last / 2**20:.1f} "
        f"peak={max(s.rss for s in after) / 2**20:.1f} growth_after_warmup={last / base - 1:+.2%}",
        f"[soak] figures after warm-up: {span('fds')} {span('db_conns')} {span('series')} "
        f"scrape_p50_ms={pct(times, 0.5) * 1000:.1f} scrape_p99_ms={pct(times, 0.99) * 1000:.1f}"
        if times else "[soak] figures after warm-up: no successful scrape",
    ]


# --- the verdict -------------------------------------------------------------------------------


@dataclass
class Verdict:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, line: str) -> None:
        self.lines.append(f"[soak] {'ok  ' if ok else 'FAIL'} {line}")
        if not ok:
            self.failures.append(line)


def judge_growth(plan: Plan, samples: list[Sample], verdict: Verdict) -> None:
    d, r = plan.duration, plan.report_every
    warm = [s.rss for s in samples if plan.warmup - r < s.t <= plan.warmup]
    end = [s.rss for s in samples if s.t > d - r]
    if not warm or not end:
        verdict.check(False, "RSS: no samples around the end of warm-up or the end of the run")
        return
    base, last = statistics.median(warm), statistics.median(end)
    peak = max(s.rss for s in samples if s.t > plan.warmup)
    growth = last / base - 1
    verdict.check(
        growth <= plan.rss_slack,
        f"RSS: {base / 2**20:.1f} MiB at the end of warm-up ({label(plan.warmup)}), "
        f"{last / 2**20:.1f} MiB at the end, growth {growth:+.1%} (limit +{plan.rss_slack:.0%});"
        f" peak after warm-up {peak / 2**20:.1f} MiB",
    )
    middle = [s for s in samples if d / 3 < s.t <= 2 * d / 3 and s.ok]
    last_third = [s for s in samples if s.t > 2 * d / 3 and s.ok]
    if not middle or not last_third:
        verdict.check(False, "no successful samples in the middle or the last third")
        return
    for name in ("fds", "db_conns", "series"):
        m = max(getattr(s, name) for s in middle)
        z = max(getattr(s, name) for s in last_third)
        slack = SLACK.get(name, max(1.0, SERIES_SLACK * m))
        verdict.check(
            z <= m + slack,
            f"{name}: max {m} in the middle third, {z} in the last third (slack {slack:g})",
        )
    most = max(s.db_conns for s in samples)
    verdict.check(most <= POOL_MAX_SIZE + 1,
                  f"db_conns: at most {most} (pool {POOL_MAX_SIZE} + 1 for the start-up pass)")
    failed = sum(not s.ok for s in samples)
    verdict.check(failed == 0, f"scrapes: {len(samples)}, failed {failed}")


def judge_truth(
    probe: Probe, plan: Plan, written: int, verdict: Verdict
) -> None:
    """After the traffic stopped: the exporter's windows and totals against SQL."""
    (t1,) = probe.db.execute("SELECT now()").fetchone()  # type: ignore[misc]
    ok, _, text = probe.scrape()
    (t2,) = probe.db.execute("SELECT now()").fetchone()  # type: ignore[misc]
    if not ok:
        verdict.check(False, f"final scrape failed: {text[:200]}")
        return
    recent: dict[str, float] = {}
    totals = 0.0
    for name, labels, value in parse_samples(text):
        if name == "customer_sync_recent_operations":
            window = re.search(r'window="([^"]*)"', labels)
            assert window is not None
            recent[window.group(1)] = recent.get(window.group(1), 0) + value
        elif name == "customer_sync_operations_total":
            totals += value
    for w in plan.windows:
        # The exporter's now() lies in [t1, t2]; no row is newer than t1, so its window count
        # lies between the rows after t2 - w and the rows after t1 - w.
        lo, hi = probe.db.execute(
            "SELECT count(*) FILTER (WHERE created_at > %(t2)s - make_interval(secs => %(w)s)),"
            " count(*) FILTER (WHERE created_at > %(t1)s - make_interval(secs => %(w)s))"
            " FROM common_customersynclog", {"t1": t1, "t2": t2, "w": w},
        ).fetchone()  # type: ignore[misc]
        got = recent.get(label(w))
        verdict.check(
            got is not None and lo <= got <= hi,
            f"window {label(w)}: exporter {got if got is None else int(got)} rows, "
            f"SQL {lo}..{hi}",
        )
    verdict.check(
        totals == written,
        f"customer_sync_operations_total: {int(totals)}, rows the traffic wrote: {written}",
    )


# --- the run -----------------------------------------------------------------------------------


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


def plan_lines(plan: Plan, root: Path) -> list[str]:
    """What runs, for the record: the plan, and which Python, libc, arenas and commit ran it."""
    return [
        f"[soak] plan: duration={label(plan.duration)} speed={plan.speed:g}x "
        f"rate={plan.rate * plan.speed:g} rows/s windows={','.join(map(label, plan.windows))}"
        f" warm-up={label(plan.warmup)} retention={label(plan.retention)} "
        f"scrape every {label(plan.scrape_interval)} rss-slack={plan.rss_slack:.0%} "
        f"seed={plan.seed} data={root}",
        f"[soak] python={platform.python_version()} libc={'-'.join(platform.libc_ver())} "
        f"MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', '(unset: the exporter sets 2)')}"
        f" commit={_commit()}",
    ]


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
    samples = measured.samples
    say(f"[soak] summary: {len(samples)} scrapes in {label(plan.duration)}, "
        f"{traffic.totals.log_rows} rows written ({traffic.totals.log_rows / plan.duration:.0f}"
        f"/s), {measured.deleted} deleted by retention, traffic write failures {traffic.failures}")
    for line in [*figures(plan, samples), *verdict.lines]:
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


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main())
