"""``customer-sync-exporter demo``: the whole FREESPORT customer sync on one machine, then the
exporter on top of it.

Why: a new user should see every metric move without a shop. This starts a real PostgreSQL with
the FREESPORT tables, a real Redis holding the Celery ``celery`` queue (and a stand-in worker
process consuming it), the stand-in 1C HTTP service, a log folder that grows, and the traffic
simulator (with a 1C outage every few minutes, which also switches the stand-in 1C into an
outage), and runs the exporter against all of them. Ctrl-C or SIGTERM stops everything it
started, children included, and exits 0.

Data live in a temporary directory removed at exit, unless ``--data-dir`` names one: then the
database survives and the next run continues from it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import gzip
import itertools
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from exporter.config import Config
from exporter.demo.onec import Mode, OneCStandIn
from exporter.demo.postgres import EmbeddedPostgres, free_port
from exporter.demo.redis import RedisServer
from exporter.demo.traffic import (
    Op,
    OutageSchedule,
    SessionRow,
    SessionUpdate,
    TrafficSimulator,
)
from exporter.http import parse_listen_address

log = structlog.get_logger(__name__)

OUTAGE = OutageSchedule(first=90.0, every=180.0, duration=40.0)
OUTAGE_MODES = (Mode.DOWN, Mode.ERROR, Mode.SLOW, Mode.DEGRADED)
CELERY_QUEUE = "celery"
PRIORITY_SEP = "\x06\x16"  # kombu's Redis priority separator: "celery\x06\x163" etc.
SLOW_KEY = "demo:worker:slow"
CELERY_TASKS = (
    "apps.integrations.tasks.run_selective_import_task",
    "apps.users.tasks.monitor_pending_verification_queue",
    "apps.products.tasks.cleanup_stale_import_sessions",
    "apps.cart.tasks.clear_abandoned_carts_task",
    "apps.users.tasks.send_verification_email",
)
REPO_ROOT = Path(__file__).resolve().parents[2]

# Child processes die with the demo even if it is SIGKILLed (PR_SET_PDEATHSIG; note it fires when
# the spawning *thread* ends, which for import processes is the traffic thread, stopped only at
# shutdown), and only get secrets through the environment, never on the command line.
_CHILD_PRELUDE = r"""
import ctypes, os, signal, sys, time
ctypes.CDLL(None).prctl(1, signal.SIGTERM)
if os.getppid() != int(os.environ["DEMO_PARENT_PID"]):
    sys.exit(0)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
"""
# A Celery worker stand-in: really consumes the queue (priority sub-queues too), slower while
# the 1C outage lasts, and writes a worker log.
_WORKER_CODE = _CHILD_PRELUDE + r"""
import json, random
import redis
r = redis.Redis.from_url(os.environ["DEMO_REDIS_URL"])
keys = ["celery", "celery\x06\x163", "celery\x06\x166", "celery\x06\x169"]
out = open(os.environ["DEMO_LOG"], "a", buffering=1, encoding="utf-8")
while True:
    item = r.brpop(keys, timeout=1)
    if item is None:
        continue
    headers = json.loads(item[1])["headers"]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    out.write(f"[{stamp},000: INFO/MainProcess] Task {headers['task']}[{headers['id']}] received\n")
    spent = random.uniform(2.0, 4.0) if r.exists("demo:worker:slow") else random.uniform(0.1, 0.6)
    time.sleep(spent)
    out.write(f"[{stamp},000: INFO/ForkPoolWorker-1] Task {headers['task']}[{headers['id']}]"
              f" succeeded in {spent:.3f}s: None\n")
"""
# ``manage.py import_customers_from_1c`` stand-in: lives while an import session runs and holds
# memory like a big import does, so the process-group metrics move.
_IMPORT_CODE = _CHILD_PRELUDE + r"""
ballast = bytearray(int(os.environ["DEMO_IMPORT_MB"]) * 1024 * 1024)
for i in range(0, len(ballast), 4096):
    ballast[i] = 1
while True:
    time.sleep(3600)
"""


def _child(code: str, argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        env={**os.environ, "DEMO_PARENT_PID": str(os.getpid()), **env},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # a terminal's Ctrl-C reaches the demo only; it stops them
    )


def _end(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- the log folder ----------------------------------------------------------------------------


class LogFolder:
    """A log folder like the shop's: rotated old files plus files that grow while the demo runs."""

    MAX_BYTES = 1024 * 1024

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.mkdir(parents=True, exist_ok=True)
        now = time.time()
        old = {
            "import_customers.log.1": (1, "ИТОГ: создано=31, обновлено=4120, пропущено=380\n"),
            "celery.log.1": (2, "[INFO/MainProcess] celery@freesport ready.\n"),
            "sync.log.2.gz": (7, "customer sync report\n"),
        }
        for name, (days, text) in old.items():
            file = path / name
            if not file.exists():
                data = text.encode() * 200
                file.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
                os.utime(file, (now - days * 86400, now - days * 86400))

    def append(self, name: str, line: str) -> None:
        with self._lock:
            file = self.path / name
            if file.exists() and file.stat().st_size > self.MAX_BYTES:
                file.replace(self.path / f"{name}.1")
            with file.open("a", encoding="utf-8") as out:
                out.write(line)


# --- Celery traffic ----------------------------------------------------------------------------


def celery_message(rng: random.Random, task: str, priority: int) -> str:
    """A Celery protocol-2 message as kombu stores it in the Redis list."""
    task_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    body = base64.b64encode(json.dumps([[], {}, {"callbacks": None}]).encode()).decode()
    return json.dumps({
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": task, "id": task_id, "root_id": task_id,
                    "parent_id": None, "retries": 0, "eta": None, "expires": None},
        "properties": {"correlation_id": task_id, "delivery_mode": 2, "priority": priority,
                       "delivery_tag": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                       "delivery_info": {"exchange": "", "routing_key": CELERY_QUEUE},
                       "body_encoding": "base64"},
    })


class CeleryTraffic:
    """Publishes Celery tasks into Redis every second or so; a real worker process consumes
    them. During a 1C outage the worker slows down, so the backlog grows and drains."""

    def __init__(self, url: str, rng: random.Random, folder: LogFolder) -> None:
        import redis

        self.url = url
        self.rng = rng
        self.folder = folder
        self.client = redis.Redis.from_url(url, socket_timeout=2)
        self.worker: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> CeleryTraffic:
        self.client.delete(SLOW_KEY)
        self.worker = _child(
            _WORKER_CODE, ["celery", "-A", "freesport", "worker", "-l", "info"],
            {"DEMO_REDIS_URL": self.url, "DEMO_LOG": str(self.folder.path / "celery.log")},
        )
        self._thread = threading.Thread(target=self._run, name="demo-celery", daemon=True)
        self._thread.start()
        return self

    def slow(self, active: bool) -> None:
        """The outage callback: imports retry against a dead 1C, so the worker falls behind."""
        with contextlib.suppress(Exception):
            if active:
                self.client.set(SLOW_KEY, "1")
            else:
                self.client.delete(SLOW_KEY)

    def publish(self, n: int) -> None:
        pipe = self.client.pipeline()
        for _ in range(n):
            priority = self.rng.choices((0, 3, 6, 9), (6, 2, 1, 1))[0]
            key = CELERY_QUEUE if priority == 0 else f"{CELERY_QUEUE}{PRIORITY_SEP}{priority}"
            pipe.lpush(key, celery_message(self.rng, self.rng.choice(CELERY_TASKS), priority))
        pipe.execute()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            with contextlib.suppress(Exception):  # Redis going away must not end the demo
                self.publish(self.rng.choice((0, 0, 1, 1, 1, 2, 3)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        _end(self.worker)
        self.client.close()


# --- import processes and the import log --------------------------------------------------------


class ImportProcesses:
    """One ``manage.py import_customers_from_1c`` stand-in process per running import session,
    and a line in ``import_customers.log`` when it ends."""

    def __init__(self, folder: LogFolder, rng: random.Random) -> None:
        self.folder = folder
        self.rng = rng
        self.running: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def on_batch(self, ops: Sequence[Op]) -> None:
        for op in ops:
            if isinstance(op, SessionRow) and op.import_type == "customers":
                self._start(op.id)
            elif isinstance(op, SessionUpdate) and op.finished:
                self._finish(op)

    def _start(self, sid: int) -> None:
        megabytes = self.rng.randint(20, 80)
        proc = _child(
            _IMPORT_CODE, ["manage.py", "import_customers_from_1c", "--data-dir", "/srv/1c/out"],
            {"DEMO_IMPORT_MB": str(megabytes)},
        )
        with self._lock:
            self.running[sid] = proc

    def _finish(self, op: SessionUpdate) -> None:
        with self._lock:
            proc = self.running.pop(op.id, None)
        _end(proc)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        report = op.report_details or {}
        summary = (
            f"создано={report.get('created', 0)}, обновлено={report.get('updated', 0)}, "
            f"пропущено={report.get('skipped', 0)}, ошибок={report.get('errors', 0)}"
            if op.status == "completed" else f"ошибка: {op.error_message}"
        )
        self.folder.append(
            "import_customers.log", f"{stamp} Сессия импорта #{op.id}: {op.status}; {summary}\n"
        )

    def stop(self) -> None:
        with self._lock:
            procs, self.running = list(self.running.values()), {}
        for proc in procs:
            _end(proc)


# --- Prometheus and Alertmanager (optional) -----------------------------------------------------


def _prometheus_config(data_dir: Path, exporter_target: str, am_port: int | None) -> Path | None:
    """The repository's prometheus.yml with this demo's targets and absolute rule paths."""
    import yaml

    source = REPO_ROOT / "prometheus" / "prometheus.yml"
    if not source.exists():
        return None
    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    config["rule_files"] = [
        str((source.parent / f).resolve()) for f in config.get("rule_files", [])
    ]
    for job in config.get("scrape_configs", []):
        if job.get("job_name") == "customer_sync_exporter":
            job["static_configs"] = [{"targets": [exporter_target]}]
    if am_port is None:
        config.pop("alerting", None)
    else:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
        }
    target = data_dir / "prometheus" / "prometheus.yml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return target


def _port_or_free(preferred: int) -> int:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


class AlertSink:
    """Where the demo's Alertmanager delivers: a loopback stand-in for both the webhook receiver
    and the Telegram Bot API (neither can be reached from here). Each notification becomes a
    line in ``received.log`` and in the demo's own log."""

    def __init__(self, record: Path) -> None:
        self.record = record
        self.count = 0
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    payload = json.loads(body or b"{}")
                except ValueError:
                    payload = {}
                answer = sink.receive(self.path, payload)
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="demo-alert-sink", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> AlertSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def receive(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.count += 1
            n = self.count
        if path.endswith("/sendMessage"):
            text = str(payload.get("text", ""))
            line = f"telegram: {' '.join(text.split())[:300]}"
            answer: dict[str, Any] = {"ok": True, "result": {
                "message_id": n, "date": int(time.time()), "text": text,
                "chat": {"id": payload.get("chat_id", 0), "type": "private"}}}
        else:
            names = sorted({a.get("labels", {}).get("alertname", "?")
                            for a in payload.get("alerts", [])})
            line = f"webhook {payload.get('receiver', '?')} {payload.get('status', '?')}: " + (
                ", ".join(names))
            answer = {}
        log.info("alert notification", notification=line)
        with self._lock, self.record.open("a", encoding="utf-8") as out:
            out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        return answer


def _alertmanager_config(folder: Path, sink: AlertSink) -> Path:
    """Render the repository's template with alertmanager/render-config, pointed at the sink."""
    out = folder / "alertmanager.yml"
    env = {k: v for k, v in os.environ.items()
           if k not in {"TELEGRAM_BOT_TOKEN_FILE", "TELEGRAM_CHAT_ID_FILE", "WEBHOOK_URL_FILE"}}
    env.update({
        "TELEGRAM_BOT_TOKEN": "123456:demo-token", "TELEGRAM_CHAT_ID": "1",
        "WEBHOOK_URL": f"{sink.url}/webhook", "TELEGRAM_API_URL": sink.url,
        "ALERTMANAGER_CONFIG_OUT": str(out),
    })
    done = subprocess.run(
        ["sh", str(REPO_ROOT / "alertmanager" / "render-config"), "--render-only"],
        env=env, capture_output=True, text=True, timeout=30,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip() or f"render-config exited {done.returncode}")
    return out


def start_prometheus_stack(stack: DemoStack, exporter_target: str) -> list[str]:
    """Prometheus with the repository's rules and, when its config renders, Alertmanager
    delivering to a local sink; registers what it starts with ``stack``. Returns lines to print."""
    data_dir = stack.data_dir
    lines: list[str] = []
    prometheus = shutil.which("prometheus")
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    am_port: int | None = None
    am_dir = data_dir / "alertmanager"
    if alertmanager is None:
        lines.append("  Alertmanager:  not started (no prometheus-alertmanager binary)")
    elif not (REPO_ROOT / "alertmanager" / "render-config").exists():
        lines.append("  Alertmanager:  not started (alertmanager/render-config is missing)")
    else:
        am_dir.mkdir(parents=True, exist_ok=True)
        sink = AlertSink(am_dir / "received.log").start()
        stack.started("alert-sink", sink.stop)
        try:
            config = _alertmanager_config(am_dir, sink)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            lines.append(f"  Alertmanager:  not started (render-config: {exc})")
        else:
            am_port = _port_or_free(9093)
            with (am_dir / "alertmanager.log").open("ab") as err:
                proc = subprocess.Popen(
                    [alertmanager, f"--config.file={config}", f"--storage.path={am_dir}",
                     f"--web.listen-address=127.0.0.1:{am_port}",
                     "--cluster.listen-address="],  # no gossip port for one demo instance
                    stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                )
            stack.started("alertmanager", functools.partial(_end, proc))
            lines.append(f"  Alertmanager:  http://localhost:{am_port}/"
                         f" (notifications land in {am_dir / 'received.log'})")
    config_file = _prometheus_config(data_dir, exporter_target, am_port)
    if prometheus and config_file is not None:
        port = _port_or_free(9090)
        with (data_dir / "prometheus" / "prometheus.log").open("ab") as err:
            proc = subprocess.Popen(
                [prometheus, f"--config.file={config_file}",
                 f"--storage.tsdb.path={data_dir / 'prometheus' / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
            )
        stack.started("prometheus", functools.partial(_end, proc))
        lines.append(f"  Prometheus:    http://localhost:{port}/alerts")
    else:
        lines.append("  Prometheus:    not started (no prometheus binary or prometheus.yml)")
    return lines


# --- the stack ---------------------------------------------------------------------------------


@dataclass
class DemoStack:
    """Everything the demo started, so stop() can undo exactly that, in reverse order."""

    data_dir: Path
    temporary: bool
    stops: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def started(self, name: str, stop: Callable[[], None]) -> None:
        self.stops.append((name, stop))

    def stop(self) -> None:
        for name, stop in reversed(self.stops):
            try:
                stop()
                log.debug("stopped", component=name)
            except Exception:
                log.exception("stop failed", component=name)
        self.stops.clear()
        if self.temporary:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _secret_file(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value, encoding="utf-8")
    path.chmod(0o600)


def build_config(
    dsn: str, redis_url: str, onec: OneCStandIn, onec_password: str, log_dir: Path
) -> Config:
    """The exporter's config for the demo: every collector enabled, pointed at the stack."""
    return Config.model_validate({
        "scrape_timeout": "10s",
        "database": {"dsn": dsn},
        "collectors": {
            "synclog": {"enabled": True},
            "business": {"enabled": True},
            "postgres": {"enabled": True,
                         "application_names": ["freesport-demo-traffic", "customer-sync-exporter"]},
            "redis": {"enabled": True, "url": redis_url, "queues": [CELERY_QUEUE]},
            "disk": {"enabled": True, "dirs": [{"name": "freesport_logs", "path": str(log_dir)}]},
            "onec": {"enabled": True, "url": onec.url, "username": onec.username,
                     "password": onec_password, "json_field": "status", "json_value": "ok"},
            "process": {"enabled": True},
        },
    })


def outage_switch(onec: OneCStandIn, celery: CeleryTraffic) -> Callable[[bool], None]:
    """The traffic's outage callback: each outage breaks the 1C stand-in in the next way
    (refused, HTTP 500, too slow, maintenance) and slows the Celery worker."""
    modes = itertools.cycle(OUTAGE_MODES)

    def switch(active: bool) -> None:
        mode = next(modes) if active else Mode.OK
        onec.set_mode(mode)
        celery.slow(active)
        log.info("1C stand-in mode", mode=str(mode))

    return switch


def _urls(listen_address: str, port: int) -> str:
    host, _ = parse_listen_address(listen_address)
    shown = "localhost" if host in ("", "0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def run_demo(args: argparse.Namespace) -> int:
    """Start the stack, serve the exporter until SIGINT/SIGTERM, stop everything, return 0."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    # Handlers first: a signal during start-up must still stop what is already running.
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    temporary = args.data_dir is None
    data_dir = (
        Path(tempfile.mkdtemp(prefix="customer-sync-demo-")) if temporary
        else Path(args.data_dir).resolve()
    )
    stack = DemoStack(data_dir, temporary)
    try:
        return _run(args, stack, stop)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"demo could not start: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _run(args: argparse.Namespace, stack: DemoStack, stop: threading.Event) -> int:
    from exporter.service import Exporter

    data_dir = stack.data_dir
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    rng = random.Random(seed)

    log.info("starting PostgreSQL", data_dir=str(data_dir / "postgres"))
    pg = EmbeddedPostgres(data_dir / "postgres")
    stack.started("postgres", pg.stop)
    pg.start()
    dsn = pg.create_database("freesport")
    if stop.is_set():
        return 0

    redis_password = secrets.token_hex(12)
    _secret_file(data_dir / "redis" / "password", redis_password)
    redis_server = RedisServer(data_dir / "redis", password=redis_password)
    stack.started("redis", redis_server.stop)
    redis_server.start()

    onec_password = secrets.token_hex(12)
    _secret_file(data_dir / "onec" / "password", onec_password)
    onec = OneCStandIn(username="exchange", password=onec_password, slow_seconds=20.0)
    stack.started("1c", onec.stop)
    onec.start()

    folder = LogFolder(data_dir / "logs")
    celery = CeleryTraffic(redis_server.url(), random.Random(rng.getrandbits(64)), folder)
    stack.started("celery", celery.stop)
    celery.start()
    imports = ImportProcesses(folder, random.Random(rng.getrandbits(64)))
    stack.started("imports", imports.stop)
    if stop.is_set():
        return 0

    traffic = TrafficSimulator(dsn, rng, rate=args.rate, schedule=OUTAGE)
    traffic.on_outage.append(outage_switch(onec, celery))
    traffic.on_batch.append(imports.on_batch)
    traffic.load_state()
    stack.started("traffic", traffic.stop)
    traffic.start()

    config = build_config(dsn, redis_server.url(), onec, onec_password, folder.path)
    try:
        exporter = Exporter(config, args.listen_address)
    except (OSError, ValueError) as exc:
        print(f"cannot listen on {args.listen_address}: {exc}", file=sys.stderr)
        return 1
    stack.started("exporter", exporter.stop)
    exporter.start()
    base = _urls(args.listen_address, exporter.port)

    lines: list[str] = []
    if args.with_prometheus:
        lines = start_prometheus_stack(stack, f"127.0.0.1:{exporter.port}")

    keep = "deleted on exit" if stack.temporary else "kept: the next run continues from it"
    print("\n".join([
        "",
        f"FREESPORT customer-sync demo is running (seed {seed}, {args.rate:g} log rows/s).",
        f"  Metrics:       {base}/metrics",
        f"  Landing page:  {base}/",
        f"  Readiness:     {base}/health/ready",
        f"  PostgreSQL:    {pg.dsn(with_password=False)}"
        f" (password in {data_dir / 'postgres' / 'password'})",
        f"  Redis:         redis://127.0.0.1:{redis_server.port}/0"
        f" (password in {data_dir / 'redis' / 'password'})",
        f"  1C stand-in:   {onec.url} (user exchange, password in"
        f" {data_dir / 'onec' / 'password'}); outage every {OUTAGE.every:g}s"
        f" for {OUTAGE.duration:g}s, first at {OUTAGE.first:g}s",
        f"  Log folder:    {folder.path}",
        *lines,
        f"  Data:          {data_dir} ({keep})",
        "Press Ctrl-C to stop.",
        "",
    ]), flush=True)
    stop.wait()
    return 0
