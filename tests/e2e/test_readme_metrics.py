"""README.md's metrics table against a live scrape of the demo with every collector enabled.

A metric the exporter emits but the table lacks fails, and so does a table row the scrape lacks
unless the row says *(conditional*: the table is a contract with users' dashboards.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import COLLECTOR_NAMES
from exporter.demo.ports import free_port

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\|\s*`([a-z_:][a-z0-9_:]*)`\s*\|\s*(\w*)\s*\|")


def table() -> dict[str, str]:
    """``{metric name: whole row}`` for the README's metrics table."""
    rows = {}
    for line in README.read_text().splitlines():
        match = ROW.match(line)
        if match and match.group(2) in {"counter", "gauge", "histogram"}:
            rows[match.group(1)] = line
    assert rows, "README.md has no metrics table"
    return rows


def exposed_names(text: str) -> set[str]:
    """Metric names as users query them (counters with _total, histograms by base name)."""
    names = set()
    for family in text_string_to_metric_families(text):
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "info":
            names.add(f"{family.name}_info")
        else:
            names.add(family.name)
    return names


def test_readme_table_matches_a_live_scrape(tmp_path: Path) -> None:
    port = free_port()
    exe = Path(sys.executable).with_name("customer-sync-exporter")
    log = (tmp_path / "demo.log").open("wb")
    proc = subprocess.Popen(
        [str(exe), "demo", "--web.listen-address", f"127.0.0.1:{port}", "--data-dir",
         str(tmp_path / "demo"), "--seed", "3", "--rate", "30"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        text = ""
        wanted = [f'customer_sync_exporter_collector_success{{collector="{c}"}} 1.0'
                  for c in COLLECTOR_NAMES]
        end = time.monotonic() + 90
        while time.monotonic() < end:
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            except requests.RequestException:
                text = ""
            if all(w in text for w in wanted) and "customer_sync_recent_duration_seconds" in text:
                break
            if proc.poll() is not None:
                pytest.fail(f"demo exited: {(tmp_path / 'demo.log').read_text()[-2000:]}")
            time.sleep(1)
        else:
            pytest.fail(f"not every collector succeeded within 90 s:\n{text[-3000:]}")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    rows = table()
    process_row = rows.get("process_resident_memory_bytes", "")
    emitted = exposed_names(text)
    undocumented = {n for n in emitted if n not in rows and n not in process_row}
    assert not undocumented, f"emitted but not in README's table: {sorted(undocumented)}"
    missing = {n for n, row in rows.items() if n not in emitted and "(conditional" not in row}
    assert not missing, f"in README's table but not emitted: {sorted(missing)}"
