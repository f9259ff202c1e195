"""This exporter, query-exporter and a raw-SQL floor, side by side on one PostgreSQL, in one run.

    .venv/bin/python bench/scrape_bench.py

For each size (default: 1M rows spread over 30 days, then 10M rows at 1M per 24 h) it loads the
FREESPORT tables into a dedicated embedded PostgreSQL (its own generator, in the DATA.md shapes:
1C-import rows without duration, sync-logger rows with durations and details, resolver
conflicts; ``--conflicts`` rows of common_syncconflict, 50,000 users) and measures three sides,
one after the other so none loads the machine while another is timed:

* the raw SQL floor: what an exporter that queries on scrape pays, the windows, totals,
  percentiles and connection counts of ``FLOOR`` as 6 statements on one psycopg connection;
* query-exporter (pinned ``PEER_VERSION``, in its own venv under ``--data-dir``, never in the
  project's), running the floor's SQL every 15 s in the background and serving the cached values
  (up to 15 s stale);
* this exporter with the synclog, business and postgres collectors (exact at scrape time).

For every side: the median (and p95) of ``--scrapes`` serial scrapes, spread over one 15 s
interval, with no new rows and with ``--new-rows`` rows written before every scrape; scrapes/s
of 10 concurrent scrapers for 10 s; database statements per scrape (pg_stat_statements ``calls``
of the side's own role, SETs and set_config included, and how many name the log table); process
CPU time per scrape; peak RSS (VmHWM). For this exporter also the start-up: from the port
accepting connections until every collector reports success, as a ratio of one floor scrape. A
spot check compares one value (the updated/success total) served by both exporters with SQL. It
ends with the targets of issue 16 as a pass/fail table computed from the same run, and exits 1
if any target failed.

The data directory is kept (``--data-dir``, default ``.bench/``) so a size is loaded only once
(the same rows every time: the generator is seeded); rows a run added are deleted by the next,
and when the data has aged (newest row older than ``STALE_AFTER_S``) the rows of its last
``RECENT`` are moved forward by that age, so every window holds what it held at load. Older rows
keep their time: a hole as long as the age opens before them, outside every window.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scrape.common import CONCURRENT_SCRAPERS, CONCURRENT_SECONDS, log
from bench.scrape.data import USERS, ensure_roles, load, role_url
from bench.scrape.floor import run_floor
from bench.scrape.ours import run_ours
from bench.scrape.peer import peer_venv, run_peer
from bench.scrape.report import Result, print_targets, report
from exporter.demo.ports import free_port
from exporter.demo.postgres import EmbeddedPostgres


def machine(pg: EmbeddedPostgres) -> str:
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal:"))
    os_name = next((line.split("=", 1)[1].strip('"') for line in
                    Path("/etc/os-release").read_text().splitlines()
                    if line.startswith("PRETTY_NAME=")), platform.system())
    with psycopg.connect(pg.dsn("postgres")) as conn:
        (version,) = conn.execute("SHOW server_version").fetchone()  # type: ignore[misc]
    return (f"{time.strftime('%Y-%m-%d %H:%M %Z')}; {os.cpu_count()} cores, "
            f"{mem / 2**20:.0f} GiB, {os_name}, embedded PostgreSQL {version}, "
            f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f}")


def run_size(pg: EmbeddedPostgres, rows: int, days: float, args: argparse.Namespace,
             peer: tuple[Path, str], data: Path) -> Result:
    name = f"bench_{rows}"
    dsn = pg.create_database(name)
    log(f"== {rows:,} rows over {days:g} days ({rows / days:,.0f} per 24 h), "
        f"{args.conflicts:,} conflicts, {USERS:,} users")
    load(dsn, rows, days, args.conflicts)
    load_start = os.getloadavg()[0]
    with psycopg.connect(dsn, autocommit=True) as admin:
        ensure_roles(admin, ("floor", "qe", "exporter"))
        url = {r: role_url(pg.port, r, name) for r in ("floor", "exporter")}
        qe_dsn = (role_url(pg.port, "qe", name, "postgresql+psycopg")
                  + "?application_name=query-exporter")
        log("  floor ...")
        floor = run_floor(admin, url["floor"], args)
        with tempfile.TemporaryDirectory() as tmp:
            log("  query-exporter ...")
            peer_side = run_peer(admin, qe_dsn, peer[0], data / f"query-exporter-{rows}.yaml",
                                 args, Path(tmp))
            log("  this exporter ...")
            ours = run_ours(admin, url["exporter"], args, Path(tmp))
    res = Result(rows, days, floor, peer_side, ours, data / f"query-exporter-{rows}.yaml",
                 load_start, os.getloadavg()[0])
    report(res, args, peer[1])
    return res


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--rows", default="1000000,10000000",
                   help="comma-separated table sizes (default: 1M and 10M)")
    p.add_argument("--days", default="30,10",
                   help="days each size's rows span, comma-separated like --rows, or one value"
                        " for all (default: 1M over 30 days, 10M at 1M per 24 h)")
    p.add_argument("--conflicts", type=int, default=1_000_000)
    p.add_argument("--new-rows", type=int, default=1000)
    p.add_argument("--scrapes", type=int, default=20, help="serial scrapes per exporter run")
    p.add_argument("--floor-scrapes", type=int, default=20, help="serial floor scrapes per run")
    p.add_argument("--data-dir", default=".bench")
    args = p.parse_args(argv)
    try:
        args.sizes = [int(r) for r in args.rows.split(",")]
        days = [float(d) for d in args.days.split(",")]
    except ValueError as exc:
        p.error(f"--rows/--days: {exc}")
    if len(days) == 1:
        days *= len(args.sizes)
    if len(days) != len(args.sizes):
        p.error(f"--days has {len(days)} values for {len(args.sizes)} sizes in --rows")
    if min(args.sizes) < 1 or min(days) <= 0:
        p.error("--rows and --days must be positive")
    if args.new_rows < 1 or args.scrapes < 1 or args.floor_scrapes < 1:
        p.error("--new-rows, --scrapes and --floor-scrapes must be at least 1")
    args.spans = days
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data = Path(args.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    peer = peer_venv(data)
    pg = EmbeddedPostgres(data / "pg", port=free_port(),
                          settings={"shared_buffers": "1GB", "work_mem": "64MB",
                                    "max_parallel_workers_per_gather": "2"}).start()
    try:
        log(f"# {machine(pg)}")
        log(f"# {peer[1]}; collectors synclog + business + postgres; {args.scrapes} serial "
            f"scrapes ({args.floor_scrapes} for the floor), then {CONCURRENT_SCRAPERS} scrapers "
            f"for {CONCURRENT_SECONDS:g} s")
        results = [run_size(pg, rows, days, args, peer, data)
                   for rows, days in zip(args.sizes, args.spans, strict=True)]
    finally:
        pg.stop()
    return 0 if print_targets(results, args) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
