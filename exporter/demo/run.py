"""``customer-sync-exporter demo``: the whole FREESPORT customer sync on one machine, then the
exporter on top of it.

Why: a new user should see every metric move without a shop. This starts a real PostgreSQL with
the FREESPORT tables, a real Redis as the Celery broker with a real ``celery worker`` and
``celery beat`` running the demo's Celery app (the shop's task names), the stand-in 1C HTTP
service, a log folder that grows, and the traffic simulator (with a 1C outage every few minutes,
which also switches the stand-in 1C into an outage: the Celery imports then retry and fail), and
runs the exporter against all of them, the celery collector included. Ctrl-C or SIGTERM stops
everything it started, children included, and exits 0.

Data live in a temporary directory removed at exit, unless ``--data-dir`` names one: then the
database survives and the next run continues from it.
"""

from __future__ import annotations

import argparse
import itertools
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import structlog

from exporter.config import Config
from exporter.demo.celery_app import APPLICATION_NAME as CELERY_APPLICATION_NAME
from exporter.demo.celery_app import QUEUE as CELERY_QUEUE
from exporter.demo.celery_processes import WORKER_COMMAND as CELERY_WORKER_COMMAND
from exporter.demo.celery_processes import CeleryProcesses, CelerySettings
from exporter.demo.celery_traffic import CeleryTraffic
from exporter.demo.import_processes import ImportProcesses
from exporter.demo.logfolder import LogFolder
from exporter.demo.onec import Mode, OneCStandIn
from exporter.demo.postgres import EmbeddedPostgres
from exporter.demo.prometheus_stack import start_prometheus_stack
from exporter.demo.redis import RedisServer
from exporter.demo.stack import DemoStack
from exporter.demo.traffic import Op, OutageSchedule, TrafficSimulator
from exporter.httpserver import parse_listen_address

if TYPE_CHECKING:
    from exporter.logs import SecretMasker
    from exporter.service import Exporter

log = structlog.get_logger(__name__)

OUTAGE = OutageSchedule(first=90.0, every=180.0, duration=40.0)
OUTAGE_MODES = (Mode.DOWN, Mode.ERROR, Mode.SLOW, Mode.DEGRADED)


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
                         "application_names": ["freesport-demo-traffic", CELERY_APPLICATION_NAME,
                                               "customer-sync-exporter"]},
            "redis": {"enabled": True, "url": redis_url, "queues": [CELERY_QUEUE]},
            "disk": {"enabled": True, "dirs": [{"name": "freesport_logs", "path": str(log_dir)}]},
            "onec": {"enabled": True, "url": onec.url, "username": onec.username,
                     "password": onec_password, "json_field": "status", "json_value": "ok"},
            "process": {"enabled": True},
            "celery": {"enabled": True, "broker_url": redis_url, "inspect_interval": "10s"},
        },
    })


def outage_switch(onec: OneCStandIn) -> Callable[[bool], None]:
    """The traffic's outage callback: each outage breaks the 1C stand-in in the next way
    (refused, HTTP 500, too slow, maintenance); the Celery imports find out by asking it."""
    modes = itertools.cycle(OUTAGE_MODES)

    def switch(active: bool) -> None:
        mode = next(modes) if active else Mode.OK
        onec.set_mode(mode)
        log.info("1C stand-in mode", mode=str(mode))

    return switch


def run_demo(args: argparse.Namespace, *, masker: SecretMasker | None = None) -> int:
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
        return _run(args, stack, stop, masker)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"demo could not start: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _run(args: argparse.Namespace, stack: DemoStack, stop: threading.Event,
         masker: SecretMasker | None) -> int:
    """The start-up steps in order, each registering its stop with ``stack`` before it starts;
    returns early (0) if a signal arrives between steps. ``masker`` is the logs'."""
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    rng = random.Random(seed)
    pg, dsn = _postgres(stack)
    if stop.is_set():
        return 0
    redis_server = _redis(stack)
    onec, onec_password = _onec(stack)
    folder = LogFolder(stack.data_dir / "logs")
    settings = CelerySettings(redis_server.url(), dsn, onec.url, onec.username or "", onec_password)
    celery = _celery(stack, settings, random.Random(rng.getrandbits(64)), folder)
    imports = ImportProcesses(folder, random.Random(rng.getrandbits(64)))
    stack.started("imports", imports.stop)
    if stop.is_set():
        return 0
    _traffic(stack, TrafficSimulator(dsn, rng, rate=args.rate, schedule=OUTAGE),
             outage_switch(onec), [imports.on_batch, celery.on_batch])
    config = build_config(dsn, redis_server.url(), onec, onec_password, folder.path)
    exporter = _exporter(stack, config, args.listen_address, masker)
    if exporter is None:
        return 1
    lines = (start_prometheus_stack(stack, f"127.0.0.1:{exporter.port}")
             if args.with_prometheus else [])
    print("\n".join(banner(
        seed, args.rate, _urls(args.listen_address, exporter.port), pg, redis_server, onec,
        folder.path, stack, lines,
    )), flush=True)
    stop.wait()
    return 0


def _postgres(stack: DemoStack) -> tuple[EmbeddedPostgres, str]:
    log.info("starting PostgreSQL", data_dir=str(stack.data_dir / "postgres"))
    pg = EmbeddedPostgres(stack.data_dir / "postgres")
    stack.started("postgres", pg.stop)
    pg.start()
    return pg, pg.create_database("freesport")


def _redis(stack: DemoStack) -> RedisServer:
    password = secrets.token_hex(12)
    _secret_file(stack.data_dir / "redis" / "password", password)
    server = RedisServer(stack.data_dir / "redis", password=password)
    stack.started("redis", server.stop)
    server.start()
    return server


def _onec(stack: DemoStack) -> tuple[OneCStandIn, str]:
    password = secrets.token_hex(12)
    _secret_file(stack.data_dir / "onec" / "password", password)
    onec = OneCStandIn(username="exchange", password=password, slow_seconds=20.0)
    stack.started("1c", onec.stop)
    onec.start()
    return onec, password


def _celery(
    stack: DemoStack, settings: CelerySettings, rng: random.Random, folder: LogFolder
) -> CeleryTraffic:
    """The worker and beat, then the traffic publishing to them (stopped first)."""
    processes = CeleryProcesses(settings, folder.path, stack.data_dir / "celery")
    stack.started("celery", processes.stop)
    processes.start()
    celery = CeleryTraffic(settings.broker_url, rng)
    stack.started("celery traffic", celery.stop)
    return celery.start()


def _traffic(
    stack: DemoStack, traffic: TrafficSimulator, on_outage: Callable[[bool], None],
    on_batch: list[Callable[[Sequence[Op]], None]],
) -> None:
    traffic.on_outage.append(on_outage)
    traffic.on_batch.extend(on_batch)
    traffic.load_state()
    stack.started("traffic", traffic.stop)
    traffic.start()


def _exporter(stack: DemoStack, config: Config, listen_address: str,
              masker: SecretMasker | None) -> Exporter | None:
    from exporter.service import Exporter

    try:
        exporter = Exporter(config, listen_address, masker=masker)
    except (OSError, ValueError) as exc:
        print(f"cannot listen on {listen_address}: {exc}", file=sys.stderr)
        return None
    stack.started("exporter", exporter.stop)
    exporter.start()
    return exporter


def _secret_file(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value, encoding="utf-8")
    path.chmod(0o600)


def _urls(listen_address: str, port: int) -> str:
    host, _ = parse_listen_address(listen_address)
    shown = "localhost" if host in ("", "0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def banner(
    seed: int, rate: float, base: str, pg: EmbeddedPostgres, redis_server: RedisServer,
    onec: OneCStandIn, log_dir: Path, stack: DemoStack, extra: list[str],
) -> list[str]:
    """What the demo prints once it runs: where everything is and where its secrets are."""
    data_dir = stack.data_dir
    keep = "deleted on exit" if stack.temporary else "kept: the next run continues from it"
    return [
        "",
        f"FREESPORT customer-sync demo is running (seed {seed}, {rate:g} log rows/s).",
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
        f"  Celery:        worker and beat ({CELERY_WORKER_COMMAND}), broker and"
        " results in the Redis above",
        f"  Log folder:    {log_dir} (the worker's and beat's logs too)",
        *extra,
        f"  Data:          {data_dir} ({keep})",
        "Press Ctrl-C to stop.",
        "",
    ]
