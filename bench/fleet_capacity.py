"""What one shop costs a Prometheus replica, measured on the demo: series, samples, rule time.

    .venv/bin/python bench/fleet_capacity.py --shops 1,25,100 --seconds 150

Starts ``customer-sync-exporter demo`` (every collector, its own PostgreSQL, Redis, 1C stand-in
and traffic), then for each fleet size K a fresh Debian Prometheus with the repository's rule
files at the production intervals (15 s scrape and evaluation) scraping K "shops": K targets
with their own ``shop`` label, all pointing at the one demo exporter (Prometheus keeps them apart
by the label, so the series, rules and alerts are those of K shops; the exporter shares
concurrent scrapes). After ``--seconds`` it prints, per K: series exported per shop (the
scrape's sample count), recorded series per shop, head series, samples ingested per second,
the rule groups' mean evaluation time over the last 2 minutes, the replica's CPU and resident
memory, and the machine's load average (other work on the machine slows the rules too).
docs/scaling.md holds the figures and what they mean for a fleet.

The demo's sync log is young, so the 3-day and 30-day windows read only what exists; their cost
at full history is computed in docs/scaling.md from the samples per window.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.demo.postgres import free_port

REPO = Path(__file__).resolve().parent.parent
JOB = "customer_sync_exporter"


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.load(resp)


def query(base: str, expr: str) -> list[dict[str, Any]]:
    body = _get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def scalar(base: str, expr: str) -> float:
    result = query(base, expr)
    return float(result[0]["value"][1]) if result else float("nan")


def start_demo(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "demo", "--web.listen-address",
         f"127.0.0.1:{port}", "--data-dir", str(work / "demo"), "--seed", "1"],
        stdout=open(work / "demo.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
        start_new_session=True)  # fmt: skip
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo exited:\n{(work / 'demo.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as resp:
                if 'collector_success{collector="synclog"} 1.0' in resp.read().decode():
                    return proc, address
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit("the demo's sync log never became ready")


def measure(work: Path, demo: str, shops: int, seconds: float) -> dict[str, float]:
    folder = work / f"prometheus-{shops}"
    folder.mkdir()
    port = free_port()
    config = {
        "global": {"scrape_interval": "15s", "scrape_timeout": "10s",
                   "evaluation_interval": "15s"},
        "rule_files": [str(p) for p in sorted((REPO / "prometheus" / "rules").glob("*.yml"))],
        "scrape_configs": [{"job_name": JOB, "static_configs": [
            {"targets": [demo], "labels": {"shop": f"shop{i:03d}"}} for i in range(shops)]},
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
    }  # fmt: skip
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [shutil.which("prometheus") or "prometheus", f"--config.file={folder / 'prometheus.yml'}",
         f"--storage.tsdb.path={folder / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
         "--log.level=warn"],
        stdout=open(folder / "prometheus.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    base = f"http://127.0.0.1:{port}"
    try:
        time.sleep(seconds)
        one = 'shop="shop000"'
        out = {
            "shops": shops,
            "exported series per shop": scalar(base, f"scrape_samples_scraped{{{one}}}"),
            "recorded series per shop": scalar(
                base, f'count({{__name__=~".+:.+", {one}}})'),
            "head series (fleet)": scalar(
                base, 'prometheus_tsdb_head_series - scalar(count({job="prometheus"}))'),
            "samples/s ingested (all)": scalar(
                base, "rate(prometheus_tsdb_head_samples_appended_total[1m])"),
            "scrape duration p50 (ms)": 1000 * scalar(
                base, f'quantile(0.5, scrape_duration_seconds{{job="{JOB}"}})'),
            "rss (MiB)": psutil.Process(proc.pid).memory_info().rss / 2**20,
            "replica CPU (cores, last 2 min)": scalar(
                base, 'rate(process_cpu_seconds_total{job="prometheus"}[2m])'),
            "machine load average (1 min)": os.getloadavg()[0],
        }
        # mean of the evaluations of the last 2 minutes (one evaluation is a noisy sample)
        for r in query(base, "avg_over_time(prometheus_rule_group_last_duration_seconds[2m])"):
            group = r["metric"]["rule_group"].rsplit(";", 1)[-1]
            out[f"rules {group} (ms)"] = float(r["value"][1]) * 1000
        return out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shops", default="1,25,100", help="fleet sizes, comma-separated")
    p.add_argument("--seconds", type=float, default=150.0, help="run time per fleet size")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fleet-capacity-"))
    demo, address = start_demo(work)
    try:
        rows = [measure(work, address, int(k), args.seconds) for k in args.shops.split(",")]
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    for key in keys:
        print(f"{key:<36}" + "".join(f"{r.get(key, float('nan')):>14.1f}" for r in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
