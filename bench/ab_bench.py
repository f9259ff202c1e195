"""Exporter trees side by side on one database, their scrapes interleaved: quiet and +N rows.

    .venv/bin/python bench/ab_bench.py <tree> [<tree> ...] [--new-rows 1000] [--spacing 0.3]

Every tree runs as ``customer-sync-exporter serve`` (synclog, business and postgres collectors,
as the big bench runs it) from its own source tree (``PYTHONPATH``), all at once against one
embedded PostgreSQL loaded by ``scrape_bench``'s generator. Scrapes then alternate between the
trees, ``--spacing`` seconds apart, so load from other work falls on every tree alike (runs of
one tree after another drifted by more than the differences measured). First ``--scrapes``
rounds on a quiet table, then as many with ``--new-rows`` rows written before each round (each
tree reads them all). Printed per tree and phase: the median scrape (Prometheus's headers:
OpenMetrics, gzip) and the exporter's CPU during its scrapes (the kernel's process CPU clock
read just before and after each; idle CPU between scrapes is left out).

``--spacing`` matters: CPython's cost of the same scrape grows with the time since the last one
(caches gone cold), see ``bench/floors_bench.py``; the big bench spaces its serial scrapes
0.75 s apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scrape.data import bench_database, new_rows
from bench.scrape.measure import cpu_seconds
from bench.scrape.ours import ours_ready, start_exporter, write_config
from bench.scrape.scraping import Scraper, stop, wait_listening, wait_until
from exporter.demo.ports import free_port


def start(tree: Path, config: Path) -> tuple[subprocess.Popen[bytes], Scraper]:
    """The exporter of source tree ``tree`` on a port of its own (its log beside ``config``),
    and a scraper of it."""
    port = free_port()
    return start_exporter(config, port, config.parent, tree), Scraper(port)


def rounds(sides: dict[Path, tuple[subprocess.Popen[bytes], Scraper]],
           admin: psycopg.Connection[object], args: argparse.Namespace,
           new: int) -> dict[Path, tuple[list[float], float]]:
    """``args.scrapes`` rounds: per tree its scrape times and its CPU in them (seconds)."""
    times: dict[Path, list[float]] = {tree: [] for tree in sides}
    cpu = dict.fromkeys(sides, 0.0)
    order = list(sides)
    for i in range(args.scrapes):
        new_rows(admin, new)
        for tree in order if i % 2 == 0 else order[::-1]:
            proc, scraper = sides[tree]
            time.sleep(args.spacing)
            cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
            scraper.get()
            times[tree].append(time.perf_counter() - t0)
            cpu[tree] += cpu_seconds(proc.pid) - cpu0
    return {tree: (times[tree], cpu[tree]) for tree in sides}


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("trees", nargs="+", type=Path, help="source trees (checkouts) to compare")
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--days", type=float, default=2)
    p.add_argument("--conflicts", type=int, default=20_000)
    p.add_argument("--scrapes", type=int, default=60, help="rounds per phase")
    p.add_argument("--new-rows", type=int, default=1000)
    p.add_argument("--spacing", type=float, default=0.3, help="seconds before each scrape")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/expo-bench"))
    args = p.parse_args()
    sides: dict[Path, tuple[subprocess.Popen[bytes], Scraper]] = {}
    with (bench_database(args.data_dir, args.rows, args.days, args.conflicts) as (dsn, url),
          psycopg.connect(dsn, autocommit=True) as admin, tempfile.TemporaryDirectory() as tmp):
        config = write_config(Path(tmp), url)  # the exporters' logs go beside it
        try:
            for tree in args.trees:
                sides[tree.resolve()] = start(tree.resolve(), config)
            for proc, scraper in sides.values():
                wait_listening(scraper.conn.port, proc, "exporter")
                wait_until(scraper, proc, "exporter", ours_ready)
                for _ in range(5):
                    scraper.get()
            print(f"# {args.rows:,} rows over {args.days:g} days; {args.scrapes} rounds a phase,"
                  f" {args.spacing:g} s before each scrape")
            for new in (0, args.new_rows):
                for tree, (times, cpu) in rounds(sides, admin, args, new).items():
                    print(f"+{new:<6,} {tree!s:<32} median"
                          f" {statistics.median(times) * 1000:7.2f} ms"
                          f"  CPU {cpu / args.scrapes * 1000:6.2f} ms/scrape"
                          f"  load {os.getloadavg()[0]:.1f}", flush=True)
        finally:
            for proc, _ in sides.values():
                stop(proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
