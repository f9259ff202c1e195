"""The rules a soak is judged by: no growth once warm, and the exporter exact against SQL.

The growth rules are a pure function of the samples, so each can be fed made-up figures and
shown to fail (tests/e2e/test_soak.py); ground truth needs one last scrape and SQL.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field

from bench.soak.exporter_process import POOL_MAX_SIZE
from bench.soak.plan import Plan, label
from bench.soak.probe import Probe, Sample, parse_samples

SLACK = {"fds": 2.0, "db_conns": 1.0}
SERIES_SLACK = 0.02


@dataclass
class Verdict:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, line: str) -> None:
        self.lines.append(f"[soak] {'ok  ' if ok else 'FAIL'} {line}")
        if not ok:
            self.failures.append(line)


def judge_growth(plan: Plan, samples: list[Sample], verdict: Verdict) -> None:
    d, r = plan.duration, plan.report_every
    warm = [s.rss for s in samples if plan.warmup - r < s.t <= plan.warmup]
    end = [s.rss for s in samples if s.t > d - r]
    if not warm or not end:
        verdict.check(False, "RSS: no samples around the end of warm-up or the end of the run")
        return
    base, last = statistics.median(warm), statistics.median(end)
    peak = max(s.rss for s in samples if s.t > plan.warmup)
    growth = last / base - 1
    verdict.check(
        growth <= plan.rss_slack,
        f"RSS: {base / 2**20:.1f} MiB at the end of warm-up ({label(plan.warmup)}), "
        f"{last / 2**20:.1f} MiB at the end, growth {growth:+.1%} (limit +{plan.rss_slack:.0%});"
        f" peak after warm-up {peak / 2**20:.1f} MiB",
    )
    middle = [s for s in samples if d / 3 < s.t <= 2 * d / 3 and s.ok]
    last_third = [s for s in samples if s.t > 2 * d / 3 and s.ok]
    if not middle or not last_third:
        verdict.check(False, "no successful samples in the middle or the last third")
        return
    for name in ("fds", "db_conns", "series"):
        m = max(getattr(s, name) for s in middle)
        z = max(getattr(s, name) for s in last_third)
        slack = SLACK.get(name, max(1.0, SERIES_SLACK * m))
        verdict.check(
            z <= m + slack,
            f"{name}: max {m} in the middle third, {z} in the last third (slack {slack:g})",
        )
    most = max(s.db_conns for s in samples)
    verdict.check(most <= POOL_MAX_SIZE + 1,
                  f"db_conns: at most {most} (pool {POOL_MAX_SIZE} + 1 for the start-up pass)")
    failed = sum(not s.ok for s in samples)
    verdict.check(failed == 0, f"scrapes: {len(samples)}, failed {failed}")


def judge_truth(
    probe: Probe, plan: Plan, written: int, verdict: Verdict
) -> None:
    """After the traffic stopped: the exporter's windows and totals against SQL."""
    (t1,) = probe.db.execute("SELECT now()").fetchone()  # type: ignore[misc]
    ok, _, text = probe.scrape()
    (t2,) = probe.db.execute("SELECT now()").fetchone()  # type: ignore[misc]
    if not ok:
        verdict.check(False, f"final scrape failed: {text[:200]}")
        return
    recent: dict[str, float] = {}
    totals = 0.0
    for name, labels, value in parse_samples(text):
        if name == "customer_sync_recent_operations":
            window = re.search(r'window="([^"]*)"', labels)
            assert window is not None
            recent[window.group(1)] = recent.get(window.group(1), 0) + value
        elif name == "customer_sync_operations_total":
            totals += value
    for w in plan.windows:
        # The exporter's now() lies in [t1, t2]; no row is newer than t1, so its window count
        # lies between the rows after t2 - w and the rows after t1 - w.
        lo, hi = probe.db.execute(
            "SELECT count(*) FILTER (WHERE created_at > %(t2)s - make_interval(secs => %(w)s)),"
            " count(*) FILTER (WHERE created_at > %(t1)s - make_interval(secs => %(w)s))"
            " FROM common_customersynclog", {"t1": t1, "t2": t2, "w": w},
        ).fetchone()  # type: ignore[misc]
        got = recent.get(label(w))
        verdict.check(
            got is not None and lo <= got <= hi,
            f"window {label(w)}: exporter {got if got is None else int(got)} rows, "
            f"SQL {lo}..{hi}",
        )
    verdict.check(
        totals == written,
        f"customer_sync_operations_total: {int(totals)}, rows the traffic wrote: {written}",
    )
