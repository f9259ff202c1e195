"""The ``[soak] ...`` lines: the plan, one line per report interval, the summary and figures.

Their format is what docs/soak.md shows and tests/e2e/test_soak.py parses; kept in one place so
a change to one is seen next to the others.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path

from bench.soak.plan import Plan, label
from bench.soak.probe import Sample


def say(line: str) -> None:
    print(line, flush=True)


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _commit() -> str:
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                              text=True, timeout=10, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def plan_lines(plan: Plan, root: Path) -> list[str]:
    """What runs, for the record: the plan, and which Python, libc, arenas and commit ran it."""
    return [
        f"[soak] plan: duration={label(plan.duration)} speed={plan.speed:g}x "
        f"rate={plan.rate * plan.speed:g} rows/s windows={','.join(map(label, plan.windows))}"
        f" warm-up={label(plan.warmup)} retention={label(plan.retention)} "
        f"scrape every {label(plan.scrape_interval)} rss-slack={plan.rss_slack:.0%} "
        f"seed={plan.seed} data={root}",
        f"[soak] python={platform.python_version()} libc={'-'.join(platform.libc_ver())} "
        f"MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', '(unset: the exporter sets 2)')}"
        f" commit={_commit()}",
    ]


def report_line(elapsed: float, window: list[Sample], log_rows: int) -> str:
    last = window[-1]
    times = [s.scrape_s for s in window if s.ok]
    p95 = pct(times, 0.95) * 1000 if times else float("nan")
    return (
        f"[soak] elapsed={elapsed:.0f}s rss_mib={last.rss / 2**20:.1f} fds={last.fds} "
        f"db_conns={last.db_conns} series={last.series} log_rows={log_rows} "
        f"scrape_p95_ms={p95:.1f} scrapes={len(window)} failed={sum(not s.ok for s in window)}"
    )


def summary_line(plan: Plan, scrapes: int, written: int, deleted: int, write_failures: int) -> str:
    return (
        f"[soak] summary: {scrapes} scrapes in {label(plan.duration)}, "
        f"{written} rows written ({written / plan.duration:.0f}/s), "
        f"{deleted} deleted by retention, traffic write failures {write_failures}"
    )


def figures(plan: Plan, samples: list[Sample]) -> list[str]:
    """The run in a few lines, for the record: RSS at start, end of warm-up, end; the range of
    every other figure after warm-up."""
    if not samples:
        return ["[soak] figures: no samples"]
    r = plan.report_every
    warm = [s.rss for s in samples if plan.warmup - r < s.t <= plan.warmup] or [samples[0].rss]
    end = [s.rss for s in samples if s.t > samples[-1].t - r]
    after = [s for s in samples if s.t > plan.warmup and s.ok] or samples
    base, last = statistics.median(warm), statistics.median(end)

    def span(name: str) -> str:
        values = [getattr(s, name) for s in after]
        return f"{name}={min(values)}..{max(values)}"

    times = sorted(s.scrape_s for s in samples if s.ok)
    return [
        f"[soak] figures: rss_mib start={samples[0].rss / 2**20:.1f} "
        f"warmup_end={base / 2**20:.1f} end={last / 2**20:.1f} "
        f"peak={max(s.rss for s in after) / 2**20:.1f} growth_after_warmup={last / base - 1:+.2%}",
        f"[soak] figures after warm-up: {span('fds')} {span('db_conns')} {span('series')} "
        f"scrape_p50_ms={pct(times, 0.5) * 1000:.1f} scrape_p99_ms={pct(times, 0.99) * 1000:.1f}"
        if times else "[soak] figures after warm-up: no successful scrape",
    ]
