"""This exporter as its own process, with the synclog, business and postgres collectors."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.scrape.common import SPOT
from bench.scrape.data import spot_truth
from bench.scrape.measure import Side, peak_rss, serial_runs
from bench.scrape.scraping import Scraper, concurrent, sample, stop, wait_listening, wait_until
from exporter.demo.ports import free_port


def ours_ready(text: str) -> bool:
    return all(f'customer_sync_exporter_collector_success{{collector="{c}"}} 1.0' in text
               for c in ("synclog", "business", "postgres"))


def write_config(workdir: Path, dsn: str) -> Path:
    """The exporter's configuration: the synclog, business and postgres collectors only."""
    config = workdir / "config.yaml"
    config.write_text(
        f"scrape_timeout: 30s\ndatabase:\n  dsn: {dsn}\n  required: true\n"
        "collectors:\n  synclog: {enabled: true}\n  business: {enabled: true}\n"
        "  postgres: {enabled: true, application_names: [customer-sync-exporter]}\n"
        "  redis: {enabled: false}\n  disk: {enabled: false}\n  onec: {enabled: false}\n"
        "  process: {enabled: false}\n"
    )
    return config


def start_exporter(config: Path, port: int, workdir: Path,
                   tree: Path | None = None) -> subprocess.Popen[bytes]:
    """``customer-sync-exporter serve`` on ``port``: the project's, or the source tree's at
    ``tree`` (another revision, unpacked, run with this venv's packages)."""
    serve = ["serve", "--config.file", str(config),
             "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warning"]
    log = open(workdir / "exporter.log", "ab")  # noqa: SIM115 - the process's, closed below
    try:
        if tree is None:
            exe = Path(sys.executable).parent / "customer-sync-exporter"
            return subprocess.Popen([str(exe), *serve], stderr=log)
        run = ("import sys; from exporter.cli import main;"
               " sys.argv[0] = 'customer-sync-exporter'; sys.exit(main())")
        return subprocess.Popen([sys.executable, "-c", run, *serve], stderr=log, cwd=tree,
                                env={**os.environ, "PYTHONPATH": str(tree)})
    finally:
        log.close()


def run_ours(admin: psycopg.Connection[Any], dsn: str, args: argparse.Namespace,
             workdir: Path) -> Side:
    side = Side("this exporter")
    port = free_port()
    proc = start_exporter(write_config(workdir, dsn), port, workdir)
    scraper = Scraper(port)
    try:
        listening = wait_listening(port, proc, "this exporter")
        text = wait_until(scraper, proc, "this exporter", ours_ready)
        side.startup_s = time.monotonic() - listening
        side.rss_ready = peak_rss(proc.pid)
        side.truth = spot_truth(admin)
        side.spot = sample(text, "customer_sync_operations_total", operation_type=SPOT[0],
                           status=SPOT[1])
        serial_runs(side, admin, "exporter", scraper.get, args.scrapes,
                    (0, args.new_rows), proc.pid)
        side.rate, side.rate_p95, side.errors = concurrent(port)
        side.rss = peak_rss(proc.pid)
    finally:
        stop(proc)
    return side
