"""The production topology on loopback, shared by tests/e2e/test_ha.py and test_fleet.py.

Real parts only: shops (a FREESPORT database on the session's PostgreSQL, a 1C stand-in and an
exporter each), the HA Prometheus pair built from prometheus/ha/replica-{a,b}.yml, a gossip
cluster of Alertmanagers started by alertmanager/render-config, a third Prometheus receiving
remote_write. What tests change in the shipped files is listed in ``REPLICA_CHANGES`` and
checked: addresses, intervals, and where the (time-scaled) rule files are.

Shortened for tests, everything else production: scrape and evaluation every 1 s (production
15 s), scrape timeout 1 s (10 s), every ``for:``/``keep_firing_for:`` divided by 60, rule group
intervals dropped (the 30-day group runs every 5 m), Alertmanager ``group_wait`` 1 s (30 s) and
``group_interval`` 12 s (1 m / 5 m), ``--cluster.peer-timeout`` 4 s (15 s), remote_write batches
every 1 s (5 s).
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
import yaml

from exporter.config import Config, parse_duration
from exporter.demo.alertsink import AlertSink
from exporter.demo.onec import OneCStandIn
from exporter.demo.ports import free_port
from exporter.demo.postgres import EmbeddedPostgres
from exporter.demo.processes import stop_process
from exporter.service import Exporter
from tests.alert_receivers import RunningAlertmanager, start_alertmanager, wait_ready
from tests.conftest import require_binary

REPO = Path(__file__).resolve().parents[2]
HA = REPO / "prometheus" / "ha"

SCRAPE_INTERVAL = 1.0
SCRAPE_TIMEOUT = 1.0
EVAL_INTERVAL = 1.0
TIME_SCALE = 60  # production for:/keep_firing_for: are divided by this
GROUP_WAIT = 1.0
# peer timeout well under group_interval, as in production (15 s vs 1 m): a peer whose wait
# outlasts a group interval can send a stale FIRING after its peer's RESOLVED (alertmanager#2447).
GROUP_INTERVAL = 12.0
# Also long enough for the first peer's notification to be sent and gossiped on a busy machine
# (a peer records a notification only once its receivers answered).
PEER_TIMEOUT = 4.0
SEND_MARGIN = 2.0  # Prometheus -> Alertmanager -> the HTTP receivers

# Production values of the same steps, for the printed worst cases (docs/runbook.md). The
# Alertmanager timeout counts only for a peer host that does not answer at all; a killed process
# on loopback refuses at once, so the test's own sum leaves it out.
PRODUCTION = {"scrape_interval": 15.0, "scrape_timeout": 10.0, "evaluation_interval": 15.0,
              "group_wait": 30.0, "send": 3.0, "peer_timeout": 15.0,
              "alertmanager_timeout": 10.0}  # fmt: skip


def worst_case(for_seconds: float, *, production: bool) -> float:
    """Fault -> notification, the runbook's sum: next scrape + scrape + next evaluation + for: +
    group_wait + one peer's wait (the first peer is dead or slow) + the HTTP calls."""
    if production:
        return for_seconds + sum(PRODUCTION.values())
    return (SCRAPE_INTERVAL + SCRAPE_TIMEOUT + EVAL_INTERVAL + for_seconds / TIME_SCALE
            + GROUP_WAIT + PEER_TIMEOUT + SEND_MARGIN)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               debug: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{debug()}")
        time.sleep(0.1)


def _get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.load(resp)


# --- shops --------------------------------------------------------------------------------------


def insert_rows(dsn: str, n: int, operation_type: str, status: str, error: str = "") -> None:
    """Sync-log rows shaped like the 1C import's (DATA.md 3.1): session set, fresh uuid each."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO common_customersynclog (onec_id, operation_type, status, error_message,
                details, created_at, session, correlation_id, updated_at, user_agent)
            SELECT '', %s, %s, %s, '{}'::jsonb, now(), '42', gen_random_uuid(), now(), ''
            FROM generate_series(1, %s)
            """,
            (operation_type, status, error, n),
        )


def operation_counts(dsn: str) -> dict[tuple[str, str], int]:
    """Ground truth for customer_sync_operations_total: rows per (operation_type, status)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT operation_type, status, count(*) FROM common_customersynclog "
                            "GROUP BY 1, 2").fetchall()
    return {(op, status): int(n) for op, status, n in rows}


@dataclass
class Shop:
    """One shop: its own database, 1C stand-in and exporter."""

    name: str
    dsn: str
    database: str
    onec: OneCStandIn
    exporter: Exporter

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.exporter.port}"

    def synclog_ready(self) -> bool:
        with urllib.request.urlopen(f"http://{self.instance}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        return 'customer_sync_exporter_collector_success{collector="synclog"} 1.0' in text


def start_shop(pg: EmbeddedPostgres, name: str, history: dict[tuple[str, str], int]) -> Shop:
    """A fresh database from the FREESPORT template with ``history`` rows, and its exporter."""
    database = f"shop_{name}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}" TEMPLATE freesport_template')
    dsn = pg.dsn(database)
    for (operation_type, status), n in history.items():
        insert_rows(dsn, n, operation_type, status)
    onec = OneCStandIn().start()
    config = Config.model_validate({
        "scrape_timeout": "10s",
        "database": {"dsn": dsn},
        "collectors": {
            "synclog": {"enabled": True},
            **{c: {"enabled": False} for c in ("business", "postgres", "redis", "disk",
                                                "process")},
            "onec": {"enabled": True, "url": onec.url, "json_field": "status",
                     "json_value": "ok"},
        },
    })  # fmt: skip
    return Shop(name, dsn, database, onec, Exporter(config, "127.0.0.1:0").start())


def stop_shop(pg: EmbeddedPostgres, shop: Shop) -> None:
    shop.exporter.stop()
    shop.onec.stop()
    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{shop.database}" WITH (FORCE)')


def write_targets(path: Path, shops: list[Shop]) -> Path:
    """The file_sd file, in the format of prometheus/targets/shops.yml."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(
        [{"targets": [s.instance], "labels": {"shop": s.name}} for s in shops]))
    return path


# --- rules and Prometheus -------------------------------------------------------------------------


def scaled(duration: str) -> str:
    seconds = parse_duration(duration) / TIME_SCALE
    return f"{max(seconds, 1.0):g}s"


def scaled_rules(out_dir: Path) -> tuple[list[Path], dict[str, float]]:
    """prometheus/rules/*.yml with every for:/keep_firing_for: divided by TIME_SCALE and no
    group interval of their own. Returns the files and, per alert, the longest production
    ``for:`` in seconds."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fors: dict[str, float] = {}
    files = []
    for source in sorted((REPO / "prometheus" / "rules").glob("*.yml")):
        doc = yaml.safe_load(source.read_text())
        for group in doc["groups"]:
            group.pop("interval", None)
            for rule in group["rules"]:
                if "alert" in rule:
                    seconds = parse_duration(rule.get("for", "0s"))
                    fors[rule["alert"]] = max(fors.get(rule["alert"], 0.0), seconds)
                for key in ("for", "keep_firing_for"):
                    if key in rule:
                        rule[key] = scaled(rule[key])
        target = out_dir / source.name
        target.write_text(yaml.safe_dump(doc, sort_keys=False))
        files.append(target)
    return files, fors


@dataclass
class Prometheus:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = _get_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def alerts(self) -> list[dict[str, Any]]:
        """The firing alerts as this server evaluates them (labels, annotations, value)."""
        alerts = _get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]
        return [a for a in alerts if a["state"] == "firing"]

    def firing(self, alertname: str) -> list[dict[str, str]]:
        """Labels of the firing alerts of this name."""
        return [a["labels"] for a in self.alerts() if a["labels"]["alertname"] == alertname]

    def kill(self) -> None:
        """A crash: SIGKILL, no shutdown."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        stop_process(self.process, timeout=15)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_prometheus(name: str, workdir: Path, config: dict[str, Any],
                     *flags: str) -> Prometheus:
    """Debian's Prometheus on ``config`` (checked by promtool first), ready when it returns."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    check = subprocess.run([require_binary("promtool"), "check", "config", str(path)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [require_binary("prometheus"), f"--config.file={path}",
             f"--storage.tsdb.path={workdir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
             *flags],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    prom = Prometheus(name, process, f"http://127.0.0.1:{port}", log_path)
    wait_ready(f"prometheus {name}", f"{prom.url}/-/ready", process, log_path, timeout=30,
               on_timeout=prom.stop)
    return prom


# What a test may change in prometheus/ha/replica-*.yml (paths into the YAML); nothing else.
REPLICA_CHANGES = {
    "global.scrape_interval", "global.scrape_timeout", "global.evaluation_interval",
    "rule_files", "alerting.alertmanagers", "scrape_configs[0].scrape_interval",
    "scrape_configs[0].scrape_timeout", "scrape_configs[0].file_sd_configs", "remote_write",
}


def changed_paths(a: Any, b: Any, path: str = "") -> set[str]:
    """Where two YAML documents differ, as dotted paths (a changed subtree counts once)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: set[str] = set()
        for key in a.keys() | b.keys():
            sub = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                out.add(sub)
            else:
                out |= changed_paths(a[key], b[key], sub)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and path != "rule_files":
        return set().union(*(changed_paths(x, y, f"{path}[{i}]")
                             for i, (x, y) in enumerate(zip(a, b, strict=True))))
    return set() if a == b else {path}


def replica_config(replica: str, *, targets: Path, rule_files: list[Path],
                   alertmanagers: list[str], remote_write: str | None) -> dict[str, Any]:
    """prometheus/ha/replica-<replica>.yml pointed at this test's processes."""
    shipped = yaml.safe_load((HA / f"replica-{replica}.yml").read_text())
    config = copy.deepcopy(shipped)
    config["global"].update(scrape_interval=f"{SCRAPE_INTERVAL:g}s",
                            scrape_timeout=f"{SCRAPE_TIMEOUT:g}s",
                            evaluation_interval=f"{EVAL_INTERVAL:g}s")
    config["rule_files"] = [str(p) for p in rule_files]
    (am,) = config["alerting"]["alertmanagers"]
    am["static_configs"] = [{"targets": alertmanagers}]
    (job,) = config["scrape_configs"]
    job.update(scrape_interval=f"{SCRAPE_INTERVAL:g}s", scrape_timeout=f"{SCRAPE_TIMEOUT:g}s")
    job["file_sd_configs"][0]["files"] = [str(targets)]
    if remote_write is None:
        del config["remote_write"]
    else:
        (rw,) = config["remote_write"]
        rw["url"] = remote_write
        rw["queue_config"]["batch_send_deadline"] = "1s"
    unexpected = {c for c in changed_paths(shipped, config)
                  if not any(c == a or c.startswith((f"{a}.", f"{a}[")) for a in REPLICA_CHANGES)}
    assert not unexpected, f"the test changed more of replica-{replica}.yml: {unexpected}"
    assert config["global"]["external_labels"] == {"cluster": "customer-sync",
                                                   "replica": replica}
    return config


# --- the Alertmanager cluster -------------------------------------------------------------------


def am_status(am: RunningAlertmanager) -> dict[str, Any]:
    status: dict[str, Any] = _get_json(f"{am.url}/api/v2/status")["cluster"]
    return status


def position(am: RunningAlertmanager) -> int:
    """Alertmanager's own notion: the index of its name among the live peers' sorted names; a
    peer at position p waits p x --cluster.peer-timeout before it notifies."""
    status = am_status(am)
    return sorted(p["name"] for p in status["peers"]).index(status["name"])


def start_alertmanager_cluster(workdir: Path, sink: AlertSink,
                               peers: int = 2) -> list[RunningAlertmanager]:
    """``peers`` Alertmanagers with the repository's config, each knowing the others."""
    ports = [free_port() for _ in range(peers)]
    cluster: list[RunningAlertmanager] = []
    try:
        for i, port in enumerate(ports):
            cluster.append(start_alertmanager(
                REPO, workdir / f"am{i}", sink, group_wait=f"{GROUP_WAIT:g}s",
                group_interval=f"{GROUP_INTERVAL:g}s",
                cluster=[f"--cluster.listen-address=127.0.0.1:{port}",
                         *(f"--cluster.peer=127.0.0.1:{p}" for p in ports if p != port),
                         f"--cluster.peer-timeout={PEER_TIMEOUT:g}s"],
            ))  # fmt: skip
    except BaseException:
        for am in cluster:
            am.stop()
        raise

    def settled() -> bool:
        statuses = [am_status(am) for am in cluster]
        return all(s["status"] == "ready" and len(s["peers"]) == peers for s in statuses)

    try:
        wait_until(settled, 60, "the Alertmanager cluster to settle",
                   lambda: "\n".join(am.log()[-1500:] for am in cluster))
        assert sorted(position(am) for am in cluster) == list(range(peers))
    except BaseException:
        for am in cluster:
            am.stop()
        raise
    return cluster


def kill_alertmanager(am: RunningAlertmanager) -> None:
    """A crash of the Alertmanager process itself (render-config's child): SIGKILL, so it
    never leaves the cluster politely; its peers find out by probing."""
    children = psutil.Process(am.process.pid).children(recursive=True)
    (binary,) = [c for c in children if "alertmanager" in c.name()]
    os.kill(binary.pid, signal.SIGKILL)
    am.process.wait(timeout=15)


@dataclass
class Stack:
    """Everything a topology test started, stopped in reverse order by ``close``."""

    shops: list[Shop]
    replicas: list[Prometheus]
    fors: dict[str, float]
    sink: AlertSink | None = None
    alertmanagers: tuple[RunningAlertmanager, ...] = ()
    longterm: Prometheus | None = None

    def debug(self) -> str:
        parts = []
        for prom in self.replicas:
            if prom.process.poll() is None:
                try:
                    parts.append(f"{prom.name} ALERTS: {prom.query('ALERTS')}")
                except OSError as exc:
                    parts.append(f"{prom.name}: {exc}")
        for i, am in enumerate(self.alertmanagers):
            parts.append(f"alertmanager {i} log tail:\n{am.log()[-2000:]}")
        return "\n".join(parts)
