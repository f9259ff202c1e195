"""The fault catalogue's stack: a private PostgreSQL, Redis and 1C stand-in (TLS, basic auth), log
folders, the exporter as a real subprocess, a sync-log writer, and ten scrapers that never stop.

Why one helper for test_faults and test_secrets: both break the same real pieces, and the secrets
test must see the exporter's output under those same faults. Every configured secret is a
distinct marker, so any leak anywhere (log, page, metric, error) can be found by substring.

The exporter runs without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (``setpriv``), as an exporter
should: a folder with mode 000 is then really unreadable to it, although we are root.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.demo.onec import Mode, OneCStandIn
from exporter.demo.postgres import EmbeddedPostgres, free_port
from exporter.demo.redis import RedisServer
from tests.conftest import require_binary, server_dir
from tests.pg_majors import DEFAULT_MAJOR, PgMajor, exporter_role_dsn, grant_exporter
from tests.synclog_rows import LogRow, insert_rows
from tests.tls_certs import Issued, issue, make_ca

EXE = Path(sys.executable).parent / "customer-sync-exporter"
TABLE = "common_customersynclog"
# What Prometheus would send: the exporter answers within this minus its 0.5 s offset.
SCRAPE_TIMEOUT_HEADER = 3.0
HEADERS = {"X-Prometheus-Scrape-Timeout-Seconds": f"{SCRAPE_TIMEOUT_HEADER:g}"}
BUDGET = SCRAPE_TIMEOUT_HEADER - 0.5
WALK_TIMEOUT = 1.0
ONEC_PATH = "/freesport/hs/exchange/ping"
WRITER_APP = "faults-writer"
OPERATIONS = (("created", "success"), ("updated", "success"), ("error", "error"),
              ("import_from_1c", "failed"), ("customer_identification", "success"),
              ("conflict_resolution", "warning"), ("export_to_1c", "pending"))
_OPS_LINE = re.compile(
    r'^customer_sync_operations_total\{operation_type="([^"]*)",status="([^"]*)"\} (\S+)$',
    re.MULTILINE,
)
_TOOK_LINE = re.compile(
    r'^customer_sync_exporter_collector_duration_seconds\{collector="([^"]*)"\} (\S+)$', re.MULTILINE
)
DROP_DAC = "-dac_override,-dac_read_search"


@dataclass(frozen=True)
class Markers:
    """A distinct marker in every secret field, so a leak names the field it came from."""

    pg_password: str = "pgPw-MARK-61f2"
    redis_password: str = "redisPw-MARK-73a9"
    onec_password: str = "onecPw-MARK-8b15"
    onec_token: str = "onecTok-MARK-94d0"
    onec_password_file: str = "onecPwFile-MARK-a2c6"
    onec_token_file: str = "onecTokFile-MARK-b3e8"
    pg_password_file: str = "pgPwFile-MARK-c4f1"
    redis_password_file: str = "redisPwFile-MARK-d5a7"
    extra: tuple[str, ...] = ()

    def all(self) -> list[str]:
        return [v for k, v in vars(self).items() if k != "extra"] + list(self.extra)


def leaks(text: str, markers: Markers) -> list[str]:
    """Every marker found in ``text`` (also in its URL-quoted form)."""
    from urllib.parse import quote

    return [m for m in markers.all() if m in text or quote(m, safe="") in text]


# --- reading the exposition ----------------------------------------------------------------------

Labels = tuple[tuple[str, str], ...]


@dataclass
class Probe:
    """One scrape made by the test itself, parsed whole."""

    status: int
    elapsed: float
    text: str
    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)

    @classmethod
    def parse(cls, status: int, elapsed: float, text: str) -> Probe:
        probe = cls(status, elapsed, text)
        if status == 200:
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    probe.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return probe

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def select(self, name: str, **fixed: str) -> dict[Labels, float]:
        out = {}
        for (n, labels), v in self.samples.items():
            d = dict(labels)
            if n == name and all(d.get(k) == val for k, val in fixed.items()):
                out[tuple((k, val) for k, val in labels if k not in fixed)] = v
        return out

    def up(self, dependency: str) -> float | None:
        return self.value(f"customer_sync_{dependency}_up")

    def success(self, collector: str) -> float | None:
        return self.value("customer_sync_exporter_collector_success", collector=collector)

    def reasons(self, collector: str) -> list[str]:
        """The failure reasons set to 1 for ``collector`` (at most one when all is well)."""
        return sorted(dict(labels)["reason"] for labels, v in self.select(
            "customer_sync_exporter_collector_failure", collector=collector).items() if v == 1)

    def operations(self) -> dict[tuple[str, str], int]:
        ops = self.select("customer_sync_operations_total")
        for labels, v in ops.items():
            assert v >= 0 and v == int(v), (labels, v)
        return {(dict(k)["operation_type"], dict(k)["status"]): int(v) for k, v in ops.items() if v}

    def dir_value(self, what: str, name: str) -> float | None:
        return self.value(f"customer_sync_log_dir_{what}", dir=name)

    def summary(self) -> str:
        success = {dict(k)["collector"]: v for k, v in self.select(
            "customer_sync_exporter_collector_success").items()}
        failures = {c: self.reasons(c) for c, ok in success.items() if not ok}
        return f"status={self.status} elapsed={self.elapsed:.2f}s success={success} {failures}"


# --- the exporter process ----------------------------------------------------------------------


@dataclass
class ExporterProcess:
    """``customer-sync-exporter serve`` in its own process, without DAC override."""

    config: Path
    log_path: Path
    log_format: str = "json"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ExporterProcess:
        if not EXE.exists():
            pytest.fail(f"{EXE} is missing: pip install -e '.[test]' into the venv")
        setpriv = require_binary("setpriv")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [setpriv, f"--bounding-set={DROP_DAC}", "--", str(EXE), "serve",
                 "--config.file", str(self.config), "--web.listen-address",
                 f"127.0.0.1:{self.port}", "--log.format", self.log_format,
                 "--log.level", "debug"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        end = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"exporter exited {self.proc.returncode}: {self.log()}"
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{self.url}/health/live", timeout=2).status_code == 200:
                    return self
            assert time.monotonic() < end, f"exporter did not answer in {timeout}s: {self.log()}"
            time.sleep(0.05)

    def capabilities(self) -> int:
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.M).group(1), 16)  # type: ignore[union-attr]

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def rss(self) -> int:
        """Resident memory of the exporter process now, in bytes (VmRSS)."""
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s*(\d+) kB$", status, re.M).group(1)) * 1024  # type: ignore[union-attr]

    def events(self) -> list[dict[str, Any]]:
        """JSON log lines; a line that is not JSON (a raw traceback) fails the test."""
        out = []
        lines = self.log().splitlines()
        for i, line in enumerate(lines):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    context = "\n".join(lines[i : i + 40])
                    raise AssertionError(f"not a JSON log line:\n{context}") from None
        return out

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def probe(self) -> Probe:
        start = time.monotonic()
        response = requests.get(f"{self.url}/metrics", headers=HEADERS, timeout=20)
        return Probe.parse(response.status_code, time.monotonic() - start, response.text)

    def pages(self) -> dict[str, str]:
        """Every page the exporter serves, as text (readiness may be 503: it is read anyway)."""
        out = {}
        for path in ("/metrics", "/", "/health/live", "/health/ready", "/nonexistent"):
            response = requests.get(f"{self.url}{path}", headers=HEADERS, timeout=20)
            out[path] = f"{response.status_code} {dict(response.headers)}\n{response.text}"
        return out


class RssSampler:
    """The exporter's RSS every 50 ms in a thread, so peaks between probes are seen too."""

    def __init__(self, exporter: ExporterProcess) -> None:
        self.exporter = exporter
        self.samples: list[tuple[float, int]] = []  # (monotonic time, bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss")

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.samples.append((time.monotonic(), self.exporter.rss()))

    def between(self, start: float, end: float) -> list[int]:
        return [rss for at, rss in self.samples if start <= at <= end]


# --- ten scrapers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scrape:
    thread: int
    started: float
    elapsed: float
    status: int
    ops: dict[tuple[str, str], float] | None
    leaked: tuple[str, ...] = ()
    error: str = ""
    took: dict[str, float] = field(default_factory=dict)  # each collector's duration, per the body


_SCRAPER_CODE = r"""
import json, re, signal, sys, threading, time
from urllib.parse import quote
import requests
url, n, header, markers, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]), sys.argv[5]
ops_line = re.compile(sys.argv[6], re.MULTILINE)
took_line = re.compile(sys.argv[7], re.MULTILINE)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
lock = threading.Lock()
sink = open(out, "a", buffering=1)
def loop(i):
    with requests.Session() as session:
        while not stop.is_set():
            start = time.monotonic()
            rec = {"thread": i, "started": start, "status": 0, "ops": None, "leaked": [], "error": ""}
            try:
                r = session.get(url, headers={"X-Prometheus-Scrape-Timeout-Seconds": header}, timeout=30)
                body = r.text
                rec["status"] = r.status_code
                if r.status_code == 200:
                    rec["ops"] = [[m[1], m[2], float(m[3])] for m in ops_line.finditer(body)]
                    rec["took"] = {m[1]: float(m[2]) for m in took_line.finditer(body)}
                rec["leaked"] = [m for m in markers if m in body or quote(m, safe="") in body]
            except requests.RequestException as exc:
                rec["error"] = type(exc).__name__
            rec["elapsed"] = time.monotonic() - start
            with lock:
                sink.write(json.dumps(rec) + "\n")
            stop.wait(0.05)
threads = [threading.Thread(target=loop, args=(i,)) for i in range(n)]
for t in threads: t.start()
for t in threads: t.join()
"""


class Scrapers:
    """``n`` scrapers in their own process (as Prometheus would be: the test's own work cannot
    slow them), scraping /metrics back to back; each answer is recorded (status, time, the
    operation counters, any secret marker in the body)."""

    def __init__(self, url: str, markers: Markers, out: Path, n: int = 10) -> None:
        self.url = url
        self.markers = markers
        self.out = out
        self.n = n
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Scrapers:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SCRAPER_CODE, f"{self.url}/metrics", str(self.n),
             f"{SCRAPE_TIMEOUT_HEADER:g}", json.dumps(self.markers.all()), str(self.out),
             _OPS_LINE.pattern, _TOOK_LINE.pattern],
            stdin=subprocess.DEVNULL,
        )
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def snapshot(self) -> list[Scrape]:
        records: list[Scrape] = []
        if not self.out.exists():
            return records
        for line in self.out.read_text().splitlines():
            if not line.endswith("}"):
                continue  # being written
            r = json.loads(line)
            ops = None if r["ops"] is None else {(o, s): v for o, s, v in r["ops"]}
            records.append(Scrape(r["thread"], r["started"], r["elapsed"], r["status"], ops,
                                  tuple(r["leaked"]), r["error"], r.get("took") or {}))
        return records


# --- writing the sync log ------------------------------------------------------------------------


def log_rows(rng: random.Random, n: int) -> list[LogRow]:
    now = datetime.now(UTC)
    rows = []
    for _ in range(n):
        op, status = rng.choice(OPERATIONS)
        rows.append(LogRow(op, status, now, duration_ms=rng.randint(5, 900),
                           customer_id=None))
    return rows


class Writer:
    """A sync-log writer like the shop's: small transactions every few tens of milliseconds,
    retrying while the database is away. ``pause()`` returns once no transaction is open."""

    def __init__(self, dsn: str, seed: int = 7, interval: float = 0.05) -> None:
        self.dsn = dsn
        self.rng = random.Random(seed)
        self.interval = interval
        self.committed = 0
        self.failures = 0
        self._conn: psycopg.Connection[Any] | None = None
        self._busy = threading.Lock()
        self._paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="writer")

    def start(self) -> Writer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        if self._conn is not None:
            self._conn.close()

    def pause(self) -> None:
        self._paused.set()
        with self._busy:
            pass

    def resume(self) -> None:
        self._paused.clear()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self._paused.is_set():
                continue
            with self._busy:
                if self._paused.is_set():
                    continue
                rows = log_rows(self.rng, self.rng.randint(1, 4))
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=2,
                                                     application_name=WRITER_APP)
                    with self._conn.transaction():
                        insert_rows(self._conn, rows)
                    self.committed += len(rows)
                except psycopg.Error:
                    self.failures += 1
                    if self._conn is not None:
                        self._conn.close()
                    self._stop.wait(0.2)


# --- the 1M-file folder --------------------------------------------------------------------------


class HugeFolder:
    """A million directory entries in their own tmpfs, made by a background process at idle
    priority (so the other cases run meanwhile, on CPU they leave free, without slowing the
    exporter) and shown at ``target`` by a bind mount; unmounting removes them at once.

    Every entry is a hard link to one 7-byte file: to the walk each is a regular file to list and
    lstat, and the partial sum it reports can be checked (bytes = 7 x files).
    """

    FILES = 1_000_000
    SIZE = 7

    def __init__(self, staging: Path, target: Path) -> None:
        self.staging = staging
        self.target = target
        self.proc: subprocess.Popen[bytes] | None = None
        self.mounted = False

    def start(self) -> HugeFolder:
        mount = require_binary("mount")
        self.staging.mkdir(parents=True)
        subprocess.run([mount, "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs",
                        str(self.staging)], check=True)
        self.mounted = True
        code = (
            "import os, sys, time\n"
            "os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
            "base = sys.argv[1]; n = int(sys.argv[2]); t0 = time.monotonic()\n"
            "src = os.path.join(base, 'src.log')\n"
            "with open(src, 'w') as f: f.write('x' * 7)\n"
            "per = 10000\n"
            "for d in range(n // per):\n"
            "    sub = os.path.join(base, f'd{d:03}')\n"
            "    os.mkdir(sub)\n"
            "    for i in range(per - (1 if d == 0 else 0)):\n"
            "        os.link(src, f'{sub}/f{i}.log')\n"
            "print(f'{n} files in {time.monotonic() - t0:.1f}s', file=sys.stderr)\n"
        )
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(self.staging),
                                      str(self.FILES)])
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.proc is not None
        assert self.proc.wait(timeout) == 0

    def show(self) -> None:
        subprocess.run(["mount", "--bind", str(self.staging), str(self.target)], check=True)

    def hide(self) -> None:
        subprocess.run(["umount", "-l", str(self.target)], check=False, capture_output=True)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.hide()
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.staging)], check=False, capture_output=True)
            self.mounted = False


# --- the whole stack -----------------------------------------------------------------------------


@dataclass
class Stack:
    base: Path
    markers: Markers
    pg: EmbeddedPostgres
    redis: RedisServer
    onec: OneCStandIn
    ca: Issued
    server_cert: tuple[Path, Path]
    logs: Path
    config: Path
    exporter: ExporterProcess
    dirs: dict[str, Path]
    exporter_dsn: str  # what the exporter's config says: the README's role, or the superuser
    scrapers: Scrapers | None = None
    writer: Writer | None = None
    reset_windows: list[tuple[float, float]] = field(default_factory=list)
    cases: list[tuple[str, float, float]] = field(default_factory=list)  # (test, start, end)

    def case_of(self, scrape: Scrape) -> list[str]:
        """The test cases a scrape overlapped, to say where a late answer came from."""
        end = scrape.started + scrape.elapsed
        return [name for name, a, b in self.cases if scrape.started <= b and a <= end]

    # -- database --

    def dsn(self, dbname: str = "freesport") -> str:
        """The superuser's: for the test's writers and ground truth."""
        return self.pg.dsn(dbname)

    def create_database(self) -> None:
        """``freesport`` with the schema, and the README's grants when the exporter uses them."""
        self.pg.create_database()
        if self.exporter_dsn != self.dsn():
            grant_exporter(self.pg, "freesport", password=self.markers.pg_password)

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn(), autocommit=True, application_name="faults-test",
                               **kwargs)

    def truth(self) -> dict[tuple[str, str], int]:
        """Ground truth: the table's own count by type and status."""
        with self.connect() as conn:
            rows = conn.execute(
                f"SELECT operation_type, status, count(*) FROM {TABLE} GROUP BY 1, 2"
            ).fetchall()
        return {(op, status): n for op, status, n in rows}

    # -- waiting on the exporter --

    def wait_until(self, check: Callable[[Probe], bool], what: str, timeout: float = 20.0,
                   exporter: ExporterProcess | None = None) -> Probe:
        end = time.monotonic() + timeout
        while True:
            probe = (exporter or self.exporter).probe()
            assert probe.status == 200, probe.text[:500]
            assert probe.elapsed < SCRAPE_TIMEOUT_HEADER, probe.summary()
            if check(probe):
                return probe
            if time.monotonic() > end:
                tail = (exporter or self.exporter).log().splitlines()[-6:]
                alive = {"postgres": self.pg.running, "redis": self.redis.process is not None
                         and self.redis.process.poll() is None}
                raise AssertionError(f"not reached in {timeout}s: {what}; last: {probe.summary()}"
                                     f"; processes running: {alive}; exporter log ends: "
                                     + "\n".join(tail))
            time.sleep(0.2)

    def assert_counts_match(self, timeout: float = 25.0) -> Probe:
        """At a quiet moment (writer paused), the exported counters equal the table's counts and
        no gap is pending: nothing lost, nothing counted twice."""
        assert self.writer is not None
        with self.writer.paused():
            truth = self.truth()
            assert sum(truth.values()) > 0
            last: dict[str, Any] = {}

            def matches(p: Probe) -> bool:
                last["ops"] = p.operations()
                last["gaps"] = p.value("customer_sync_exporter_log_pending_gaps")
                return bool(last["ops"] == truth and last["gaps"] == 0)

            try:
                return self.wait_until(matches, "operations_total equals the table", timeout)
            except AssertionError:
                ops = last.get("ops", {})
                diff = {k: (ops.get(k), truth.get(k)) for k in set(ops) | set(truth)
                        if ops.get(k) != truth.get(k)}
                raise AssertionError(f"exported != table (exported, table): {diff}; "
                                     f"pending gaps {last.get('gaps')}") from None

    def healthy(self, p: Probe) -> bool:
        return all(p.success(c) == 1 for c in ("synclog", "business", "postgres", "redis",
                                                "disk", "onec", "process"))

    def wait_healthy(self, timeout: float = 25.0,
                     exporter: ExporterProcess | None = None) -> Probe:
        return self.wait_until(self.healthy, "every collector succeeds", timeout, exporter)

    # -- dependencies --

    def restart_onec(self, cert: tuple[Path, Path] | None = None,
                     password: str | None = None) -> None:
        """Start the stand-in again on its port, with another certificate or password."""
        port = self.onec.port
        self.onec.stop()
        certfile, keyfile = cert or self.server_cert
        self.onec = OneCStandIn(port=port, path=ONEC_PATH, username="exporter",
                                password=password or self.markers.onec_password,
                                certfile=certfile,
                                keyfile=keyfile, slow_seconds=30).start()

    def restart_redis(self) -> None:
        self.redis.kill()
        self.redis = RedisServer(self.base / "redis", port=self.redis.port,
                                 password=self.markers.redis_password).start()

    def set_onec_mode(self, mode: Mode) -> None:
        self.onec.set_mode(mode)


def config_text(stack_dirs: dict[str, Path], pg_dsn: str, redis_url: str, onec_url: str,
                ca_file: Path, markers: Markers) -> str:
    dirs = "\n".join(f"      - {{name: {name}, path: '{path}'}}" for name, path in stack_dirs.items())
    return f"""\
scrape_timeout: 10s
database:
  dsn: '{pg_dsn}'
  connect_timeout: 2s
collectors:
  postgres:
    application_names: [customer-sync-exporter, {WRITER_APP}]
  redis:
    url: '{redis_url}'
    queues: [celery]
  disk:
    walk_timeout: {WALK_TIMEOUT:g}s
    max_files: 5000000
    dirs:
{dirs}
  onec:
    url: '{onec_url}'
    username: exporter
    password: '{markers.onec_password}'
    token: '{markers.onec_token}'
    ca_file: '{ca_file}'
    json_field: status
    json_value: ok
"""


def build_stack(prefix: str, markers: Markers, *, log_format: str = "json",
                pg_major: PgMajor = DEFAULT_MAJOR, least_privilege: bool = False) -> Stack:
    """Everything except PostgreSQL's server process, which the caller starts (or not), then
    ``create_database()``. With ``least_privilege`` the exporter logs in as the README's role
    (password ``markers.pg_password``), else as the superuser with that password."""
    base = server_dir(prefix)
    base.chmod(0o755)
    ca = make_ca("faults CA")
    server_cert = issue(ca, "localhost", sans=("127.0.0.1", "localhost")).write(base / "tls",
                                                                                 "onec")
    ca_file = base / "tls" / "ca.crt"
    ca_file.write_text(ca.cert_pem)
    logs = base / "logs"
    dirs = {name: logs / name for name in ("app", "gone", "locked", "huge")}
    for path in dirs.values():
        path.mkdir(parents=True)
    for i in range(30):
        (dirs["app"] / f"django-{i}.log").write_text("x" * (100 + i))
    (dirs["gone"] / "celery.log").write_text("y" * 50)
    (dirs["locked"] / "secret.log").write_text("z" * 70)
    if least_privilege:
        pg = pg_major.server(base / "pg")
        exporter_dsn = exporter_role_dsn(pg, password=markers.pg_password)
    else:
        pg = pg_major.server(base / "pg", password=markers.pg_password)
        exporter_dsn = pg.dsn()
    redis_server = RedisServer(base / "redis", password=markers.redis_password).start()
    onec = OneCStandIn(path=ONEC_PATH, username="exporter", password=markers.onec_password,
                       certfile=server_cert[0], keyfile=server_cert[1], slow_seconds=30).start()
    config = base / "config.yaml"
    config.write_text(config_text(dirs, exporter_dsn, redis_server.url(), onec.url, ca_file,
                                  markers))
    exporter = ExporterProcess(config, base / "exporter.log", log_format)
    return Stack(base, markers, pg, redis_server, onec, ca, server_cert, logs, config, exporter,
                 dirs, exporter_dsn)


def close_stack(stack: Stack) -> None:
    closers: list[Callable[[], object]] = []
    if stack.scrapers is not None:
        closers.append(stack.scrapers.stop)
    if stack.writer is not None:
        closers.append(stack.writer.stop)
    for closer in (
        *closers,
        stack.exporter.stop,
        stack.onec.stop,
        stack.redis.stop,
        stack.pg.stop,
    ):
        with contextlib.suppress(Exception):
            closer()
    for path in stack.dirs.values():
        with contextlib.suppress(OSError):
            path.chmod(0o755)
    shutil.rmtree(stack.base, ignore_errors=True)
