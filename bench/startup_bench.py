"""This exporter's start-up against one floor scrape, on scrape_bench.py's data, and nothing else.

    .venv/bin/python bench/startup_bench.py --rows 10000000 --days 10 --baseline-tree DIR

The start-up target of issue 16 in minutes where scrape_bench.py takes twenty. The data is
scrape_bench.py's (the same seeded rows, kept in ``--data-dir``); the floor scrape is its median
of three after an untimed one; a start-up is from the port accepting a connection until a scrape
shows the synclog, business and postgres collectors successful, with VmHWM at that moment. With
``--baseline-tree`` (another revision's source, e.g. ``git archive main | tar -x -C DIR``, run
with this venv's packages) each run of this tree follows one of that tree, so both meet the same
load; the medians are given as ratios of the floor scrape.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scrape.common import log
from bench.scrape.data import ensure_roles, load, role_url
from bench.scrape.floor import FLOOR
from bench.scrape.measure import peak_rss
from bench.scrape.ours import ours_ready, start_exporter, write_config
from bench.scrape.scraping import Scraper, stop, wait_listening, wait_until
from exporter.demo.ports import free_port
from exporter.demo.postgres import EmbeddedPostgres


def floor_scrape(dsn: str) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        for q in FLOOR:
            conn.execute(q.sql).fetchall()
        return time.perf_counter() - started


def start_up(dsn: str, workdir: Path, tree: Path | None) -> tuple[float, int]:
    """Seconds from listening to ready, and VmHWM then, of one exporter process."""
    port = free_port()
    proc = start_exporter(write_config(workdir, dsn), port, workdir, tree)
    try:
        listening = wait_listening(port, proc, "the exporter")
        wait_until(Scraper(port), proc, "the exporter", ours_ready)
        return time.monotonic() - listening, peak_rss(proc.pid)
    finally:
        stop(proc)


def measure(url: dict[str, str], args: argparse.Namespace) -> None:
    floor_scrape(url["floor"])  # untimed: every side meets a warm cache
    floors = [floor_scrape(url["floor"]) for _ in range(3)]
    floor = statistics.median(floors)
    log(f"  floor scrape median {floor:.2f} s ({', '.join(f'{f:.2f}' for f in floors)})")
    trees: dict[str, Path | None] = {"this tree": None}
    if args.baseline_tree:
        trees = {f"baseline {args.baseline_tree}": Path(args.baseline_tree).resolve(), **trees}
    took: dict[str, list[float]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):
            for name, tree in trees.items():
                seconds, rss = start_up(url["exporter"], Path(tmp), tree)
                took[name].append(seconds)
                log(f"  {name}: start-up {seconds:.2f} s, VmHWM once ready {rss / 2**20:.1f}"
                    f" MiB (load average {os.getloadavg()[0]:.1f})")
    for name, times in took.items():
        median = statistics.median(times)
        log(f"{name}: median start-up {median:.2f} s = {median / floor:.2f}x one floor scrape"
            f" ({', '.join(f'{t:.2f}' for t in times)})")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--days", type=float, default=10.0, help="the days the rows span")
    p.add_argument("--conflicts", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=3, help="start-ups per tree")
    p.add_argument("--baseline-tree", help="another revision's source tree, run alternately")
    p.add_argument("--data-dir", default=".bench")
    args = p.parse_args(argv)
    if args.rows < 1 or args.days <= 0 or args.runs < 1:
        p.error("--rows, --days and --runs must be positive")
    if args.baseline_tree and not (Path(args.baseline_tree) / "exporter" / "cli.py").exists():
        p.error(f"--baseline-tree: no exporter/cli.py in {args.baseline_tree}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data = Path(args.data_dir).resolve()
    pg = EmbeddedPostgres(data / "pg", port=free_port(),
                          settings={"shared_buffers": "1GB", "work_mem": "64MB",
                                    "max_parallel_workers_per_gather": "2"}).start()
    try:
        name = f"bench_{args.rows}"
        dsn = pg.create_database(name)
        log(f"== {args.rows:,} rows over {args.days:g} days ({args.rows / args.days:,.0f} per"
            f" 24 h); load average {os.getloadavg()[0]:.1f}")
        load(dsn, args.rows, args.days, args.conflicts)
        with psycopg.connect(dsn, autocommit=True) as admin:
            ensure_roles(admin, ("floor", "exporter"))
        measure({r: role_url(pg.port, r, name) for r in ("floor", "exporter")}, args)
    finally:
        pg.stop()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
