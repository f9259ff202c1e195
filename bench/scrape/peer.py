"""query-exporter, the peer: its own venv, its configuration from the floor, its run."""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench.scrape.common import PEER_INTERVAL_S, SPOT, log
from bench.scrape.data import spot_truth
from bench.scrape.floor import FLOOR
from bench.scrape.measure import (
    Background,
    Side,
    Statements,
    cpu_seconds,
    peak_rss,
    serial_runs,
    statements,
)
from bench.scrape.scraping import Scraper, concurrent, sample, stop, wait_listening, wait_until
from exporter.demo.ports import free_port

PEER_VERSION = "5.0.2"  # the query-exporter release the table was measured with
PEER_IDLE_S = 2.0 * PEER_INTERVAL_S  # query-exporter's own load is counted, unscraped, this long


def peer_venv(data: Path) -> tuple[Path, str]:
    """query-exporter in its own venv (never the project's), installed once; its versions."""
    venv = data / "qe-venv"
    exe = venv / "bin" / "query-exporter"
    psycopg_version = importlib.metadata.version("psycopg")  # the same driver on both sides
    wanted = [f"query-exporter=={PEER_VERSION}", f"psycopg[binary]=={psycopg_version}"]

    def versions() -> str:
        out = subprocess.run(
            [str(venv / "bin" / "python"), "-c",
             "import importlib.metadata as m; print(*(m.version(d) for d in"
             " ('query-exporter', 'SQLAlchemy', 'psycopg', 'prometheus-client')))"],
            capture_output=True, text=True, check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    have = versions() if exe.exists() else ""
    if have.split(" ")[:1] != [PEER_VERSION] or have.split(" ")[2:3] != [psycopg_version]:
        log(f"  installing {' '.join(wanted)} into {venv}")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *wanted],
                       check=True)
        have = versions()
    qe, sqlalchemy, driver, client = have.split(" ")
    return exe, (f"query-exporter {qe} (SQLAlchemy {sqlalchemy}, psycopg {driver},"
                 f" prometheus_client {client})")


def peer_config(dsn: str) -> dict[str, Any]:
    """query-exporter's configuration: the floor's statements, each every PEER_INTERVAL_S."""
    metrics: dict[str, Any] = {}
    for q in FLOOR:
        for m in q.metrics:
            metrics[m] = {"type": "gauge", "description": f"{q.name}: {m}"}
            if q.labels:
                metrics[m]["labels"] = list(q.labels)
    return {
        "databases": {"bench": {"dsn": dsn}},
        "metrics": metrics,
        "queries": {q.name: {"interval": PEER_INTERVAL_S, "databases": ["bench"],
                             "metrics": list(q.metrics), "sql": q.sql} for q in FLOOR},
    }


class _BlockDumper(yaml.SafeDumper):
    """Writes the SQL as YAML literal blocks, so the configuration reads like the floor."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def peer_ready(text: str) -> bool:
    """Every floor statement has succeeded at least once."""
    done = {s.labels.get("query") for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "queries_total" and s.labels.get("status") == "success" and s.value}
    return done >= {q.name for q in FLOOR}


def peer_executions(text: str) -> float:
    """How many floor statements query-exporter has run, by its own queries_total."""
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "queries_total")


def run_peer(admin: psycopg.Connection[Any], dsn: str, exe: Path, config: Path,
             args: argparse.Namespace, workdir: Path) -> Side:
    side = Side("query-exporter")
    side.truth = spot_truth(admin)  # no rows are written from here until its serial runs
    config.write_text(yaml.dump(peer_config(dsn), Dumper=_BlockDumper, sort_keys=False,
                                width=100, allow_unicode=True))
    port = free_port()
    proc = subprocess.Popen(
        [str(exe), "--config", str(config), "-H", "127.0.0.1", "-p", str(port), "-L", "warning"],
        stderr=open(workdir / "query-exporter.log", "ab"),  # noqa: SIM115
    )
    scraper = Scraper(port)
    try:
        wait_listening(port, proc, "query-exporter")
        text = wait_until(scraper, proc, "query-exporter", peer_ready)
        side.spot = sample(text, "floor_rows", operation_type=SPOT[0], status=SPOT[1])
        side.rss_ready = peak_rss(proc.pid)
        serial_runs(side, admin, "qe", scraper.get, args.scrapes,
                    (0, args.new_rows), proc.pid)
        side.rate, side.rate_p95, side.errors = concurrent(port)
        side.rss = peak_rss(proc.pid)
        # Its statements during the serial runs were background ones, none caused by a scrape;
        # what the background costs is measured apart, with nobody scraping.
        for s in side.serial.values():
            s.stmts = Statements(0, 0, 0.0)
        started, stmts0, cpu0 = time.monotonic(), statements(admin, "qe"), cpu_seconds(proc.pid)
        done0 = peer_executions(scraper.text())
        time.sleep(PEER_IDLE_S)
        done1 = peer_executions(scraper.text())
        side.background = Background(statements(admin, "qe").minus(stmts0),
                                     cpu_seconds(proc.pid) - cpu0, time.monotonic() - started,
                                     done1 - done0, len(FLOOR))
    finally:
        stop(proc)
    return side
