"""CPU and memory of this exporter alone, a baseline tree beside the working tree, in one run.

    .venv/bin/python bench/expo_bench.py --base <dir with a checkout of the baseline>

Issue 16's exporter figures without the peer and the floor (``bench/scrape_bench.py`` measures
those): on one embedded PostgreSQL loaded by ``scrape_bench``'s own seeded generator, each tree
is run as ``customer-sync-exporter serve`` (synclog, business, postgres collectors, as the big
bench runs it), warmed up, then scraped ``--scrapes`` times spread over ``--span`` seconds as
Prometheus scrapes (OpenMetrics, gzip) on a quiet table. Printed per tree: the serial median,
CPU per scrape (the kernel's process CPU clock) and peak RSS (VmHWM) once ready and at the end.
The trees take turns ``--rounds`` times, so load from other work falls on both alike.

``--profile N`` instead runs N quiet scrapes of the working tree in this process under cProfile
and prints the top functions by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scrape.data import bench_database
from bench.scrape.measure import cpu_seconds, peak_rss, timed
from bench.scrape.ours import ours_ready, start_exporter, write_config
from bench.scrape.scraping import Scraper, stop, wait_listening, wait_until
from exporter.demo.ports import free_port


def rss_now(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def run_tree(tree: Path | None, config: Path, args: argparse.Namespace) -> dict[str, float]:
    """One exporter process from ``tree`` (None: the installed working tree), measured."""
    port = free_port()
    proc = start_exporter(config, port, config.parent, tree)
    scraper = Scraper(port)
    try:
        wait_listening(port, proc, "exporter")
        wait_until(scraper, proc, "exporter", ours_ready)
        for _ in range(5):  # warm: every lazy cache built, first-scrape allocations done
            scraper.get()
        rss_ready = peak_rss(proc.pid)
        spacing = args.span / args.scrapes
        cpu0 = cpu_seconds(proc.pid)
        times = []
        start = time.monotonic()
        for i in range(args.scrapes):
            time.sleep(max(0.0, start + i * spacing - time.monotonic()))
            times.append(timed(scraper.get))
        cpu = cpu_seconds(proc.pid) - cpu0
        return {"median_ms": statistics.median(times) * 1000,
                "cpu_ms": cpu / args.scrapes * 1000,
                "rss_ready_mib": rss_ready / 2**20,
                "rss_mib": peak_rss(proc.pid) / 2**20, "rss_now_mib": rss_now(proc.pid) / 2**20}
    finally:
        stop(proc)


def profile(dsn: str, scrapes: int) -> None:
    """Quiet scrapes of the working tree in-process, under cProfile (encoding included)."""
    from prometheus_client.openmetrics.exposition import generate_latest

    from exporter.config import load_config
    from exporter.pipeline import build_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        pipeline = build_pipeline(load_config(write_config(Path(tmp), dsn)))
    scraper = pipeline.scraper
    for _ in range(3):
        scraper.scrape_shared(scraper.deadline_for(None)).encode(
            generate_latest, "application/openmetrics-text", True)
    collect = encode = 0.0
    for _ in range(scrapes):  # unprofiled first: the split of the CPU
        time.sleep(0.02)
        cpu0 = time.process_time()
        output = scraper.scrape_shared(scraper.deadline_for(None))
        cpu1 = time.process_time()
        output.encode(generate_latest, "application/openmetrics-text", True)
        collect, encode = collect + cpu1 - cpu0, encode + time.process_time() - cpu1
    print(f"CPU per scrape: collect {collect / scrapes * 1000:.2f} ms, "
          f"encode+gzip {encode / scrapes * 1000:.2f} ms; "
          f"{sum(len(f.samples) for f in output.families)} samples")
    for collector in scraper.collectors:
        cpu0 = time.process_time()
        for _ in range(scrapes):
            collector.collect(scraper.deadline_for(None))
        print(f"  {collector.name}: {(time.process_time() - cpu0) / scrapes * 1000:.2f} ms")
    prof = cProfile.Profile()  # the collectors in this thread, where cProfile sees them
    prof.enable()
    for _ in range(scrapes):
        for collector in scraper.collectors:
            collector.collect(scraper.deadline_for(None))
        scraper.scrape_shared(scraper.deadline_for(None)).encode(
            generate_latest, "application/openmetrics-text", True)
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    pipeline.close()


class _InProcess:
    """What ``wait_until`` asks of a process, for the exporter running in this one."""

    returncode = None

    def poll(self) -> None:
        return None


def sample_stacks(dsn: str, scrapes: int) -> None:
    """Quiet scrapes of an in-process :class:`~exporter.service.Exporter` over HTTP, with every
    thread but this one's sampled each millisecond (cProfile sees one thread only): where the
    server's CPU goes, by own and by cumulative samples."""
    import collections
    import threading

    from exporter.config import load_config
    from exporter.service import Exporter

    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(write_config(Path(tmp), dsn))
    exporter = Exporter(config, f"127.0.0.1:{free_port()}").start()
    scraper = Scraper(exporter.port)
    wait_until(scraper, _InProcess(), "exporter", ours_ready)  # type: ignore[arg-type]
    own: collections.Counter[str] = collections.Counter()
    cumulative: collections.Counter[str] = collections.Counter()
    done = threading.Event()
    me = {threading.get_ident()}

    def sampler() -> None:
        me.add(threading.get_ident())
        while not done.is_set():
            for ident, frame in sys._current_frames().items():
                if ident in me:
                    continue
                seen = set()
                leaf = f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_code.co_name}"
                while frame is not None:
                    seen.add(f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:"
                             f"{frame.f_code.co_name}")
                    frame = frame.f_back  # type: ignore[assignment]
                if ("threading.py:wait" in seen or "selectors.py:select" in seen
                        or leaf in ("thread.py:_worker", "connection.py:wait")):
                    continue  # idle
                own[leaf] += 1
                cumulative.update(seen)
            time.sleep(0.001)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    for _ in range(scrapes):
        time.sleep(0.05)
        scraper.get()
    done.set()
    thread.join()
    body = gzip.decompress(scraper.get())
    exporter.stop()
    for level in (1, 5, 9):
        cpu0 = time.process_time()
        size = sum(len(gzip.compress(body, compresslevel=level)) for _ in range(100)) / 100
        print(f"gzip level {level}: {(time.process_time() - cpu0) * 10:.3f} ms, "
              f"{len(body):,} -> {size:,.0f} bytes")
    print("own:", *(f"{n:6d} {k}" for k, n in own.most_common(25)), sep="\n")
    print("cumulative:", *(f"{n:6d} {k}" for k, n in cumulative.most_common(40)), sep="\n")


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--base", type=Path, help="a checkout of the baseline tree")
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--days", type=float, default=30)
    p.add_argument("--conflicts", type=int, default=100_000)
    p.add_argument("--scrapes", type=int, default=40)
    p.add_argument("--span", type=float, default=10.0, help="seconds the serial scrapes span")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--profile", type=int, default=0, metavar="N")
    p.add_argument("--sample", type=int, default=0, metavar="N",
                   help="N scrapes of an in-process server, its threads sampled")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/expo-bench"))
    args = p.parse_args()
    with bench_database(args.data_dir, args.rows, args.days, args.conflicts) as (_, url):
        if args.profile:
            profile(url, args.profile)
            return 0
        if args.sample:
            sample_stacks(url, args.sample)
            return 0
        trees: dict[str, Path | None] = {"working tree": None}
        if args.base is not None:
            trees = {"baseline": args.base.resolve(), **trees}
        with tempfile.TemporaryDirectory() as tmp:
            config = write_config(Path(tmp), url)
            results: dict[str, list[dict[str, float]]] = {t: [] for t in trees}
            for _ in range(args.rounds):
                for label, tree in trees.items():
                    results[label].append(run_tree(tree, config, args))
    print(f"# {args.rows:,} rows over {args.days:g} days; {args.scrapes} quiet scrapes over "
          f"{args.span:g} s, {args.rounds} rounds; load average {os.getloadavg()[0]:.1f}")
    print(f"{'tree':<14}{'median ms':>11}{'CPU ms/scrape':>15}{'RSS ready MiB':>15}"
          f"{'peak RSS MiB':>14}{'RSS now MiB':>13}")
    for label, runs in results.items():
        for r in runs:
            print(f"{label:<14}{r['median_ms']:>11.2f}{r['cpu_ms']:>15.2f}"
                  f"{r['rss_ready_mib']:>15.1f}{r['rss_mib']:>14.1f}{r['rss_now_mib']:>13.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
