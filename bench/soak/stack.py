"""The demo stack a soak runs against, started in order and stopped in reverse (children first).

The same parts ``customer-sync-exporter demo`` wires (``exporter/demo/run.py``), with the
traffic's clock and beat's schedule at ``--speed``, so a long run turns every window over many
times.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.soak.exporter_process import exporter_config
from bench.soak.plan import Plan
from bench.soak.report import say
from exporter.demo.celery_processes import CeleryProcesses, CelerySettings
from exporter.demo.celery_traffic import CeleryTraffic
from exporter.demo.import_processes import ImportProcesses
from exporter.demo.logfolder import LogFolder
from exporter.demo.onec import OneCStandIn
from exporter.demo.postgres import EmbeddedPostgres
from exporter.demo.redis import RedisServer
from exporter.demo.run import OUTAGE, outage_switch
from exporter.demo.traffic import TrafficSimulator


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
