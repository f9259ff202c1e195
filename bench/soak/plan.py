"""The soak's plan: its command line and what follows from it (windows, warm-up, retention).

Kept apart from the stack so the rules for a plan (windows increasing, warm-up in the first
third) are checked, and tested, before anything starts.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from dataclasses import dataclass

from exporter.config import parse_duration

DESCRIPTION = "Soak: the demo traffic at 20x speed against the exporter running as its own process."
PRODUCTION_WINDOWS = (300.0, 3600.0, 86400.0)  # 5m, 1h, 24h


def label(seconds: float) -> str:
    """A Prometheus-style duration for a window label: 15s, 3m, 6m, 1h12m, 750ms."""
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{ms}ms"
    s = ms // 1000
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            out += f"{s // size}{unit}"
            s %= size
    return out or "0s"


@dataclass(frozen=True)
class Plan:
    duration: float
    speed: float
    rate: float
    scrape_interval: float
    report_every: float
    windows: list[float]
    warmup: float
    retention: float
    rss_slack: float
    seed: int
    keep: bool

    @property
    def longest(self) -> float:
        return max(self.windows)


def parse_args(argv: Sequence[str] | None = None) -> Plan:
    p = argparse.ArgumentParser(description=DESCRIPTION)
    p.add_argument("--duration", default="30m", help="wall-clock run time (default 30m)")
    p.add_argument("--speed", type=float, default=20.0,
                   help="traffic clock speed-up: outages, bursts and rows per second (default 20)")
    p.add_argument("--rate", type=float, default=5.0,
                   help="log rows per traffic-clock second, as the demo's --rate (default 5)")
    p.add_argument("--scrape-interval", default="1s", help="time between scrapes (default 1s)")
    p.add_argument("--report-every", default="1m", help="time between report lines (default 1m)")
    p.add_argument("--windows", default="auto",
                   help="the exporter's windows, e.g. 15s,3m,6m (default auto: 5m and 1h "
                        "divided by --speed, 24h divided by --speed but at most 1/5 of the run)")
    p.add_argument("--warmup", default=None,
                   help="end of warm-up (default: max(20%% of the run, the longest window))")
    p.add_argument("--retention", default=None,
                   help="delete log rows older than this (default: twice the longest window)")
    p.add_argument("--rss-slack", type=float, default=0.03,
                   help="allowed RSS growth after warm-up, as a ratio (default 0.03)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep the data directory")
    a = p.parse_args(argv)
    duration = parse_duration(a.duration)
    if a.windows == "auto":
        windows = [w / a.speed for w in PRODUCTION_WINDOWS]
        windows[-1] = min(windows[-1], duration / 5)
    else:
        windows = [parse_duration(w) for w in a.windows.split(",")]
    if any(b <= c for b, c in zip(windows[1:], windows, strict=False)) or min(windows) <= 0:
        p.error(f"windows must be positive and increasing, got {[label(w) for w in windows]}; "
                "for a short run pass --windows (e.g. 3s,6s,12s)")
    warmup = parse_duration(a.warmup) if a.warmup else max(0.2 * duration, max(windows))
    if warmup > duration / 3:
        p.error(f"warm-up {label(warmup)} ends after the first third of a {label(duration)} run: "
                "run longer or pass shorter --windows")
    report_every = parse_duration(a.report_every)
    if report_every > duration / 3:
        p.error("--report-every must fit three times into --duration")
    return Plan(
        duration=duration, speed=a.speed, rate=a.rate,
        scrape_interval=parse_duration(a.scrape_interval), report_every=report_every,
        windows=windows, warmup=warmup,
        retention=parse_duration(a.retention) if a.retention else 2 * max(windows),
        rss_slack=a.rss_slack, seed=a.seed if a.seed is not None else random.randrange(2**31),
        keep=a.keep,
    )
