"""``bench/soak.py`` at CI size, and its verdict rules on made-up figures.

The short run is the real thing shrunk: a minute of 20x demo traffic against the exporter as a
separate process, windows of 3s/6s/12s so they fill and slide, a scrape every second and a
report line every 10 s. The soak itself checks the exporter's windows and totals against SQL;
here we check that it ran, that every report line parses and is plausible, and that it left no
process or data directory behind. The rule tests prove the verdict can fail: a soak whose leak
check cannot fire would pass forever.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from bench.soak.plan import label, parse_args
from bench.soak.probe import Sample
from bench.soak.verdict import Verdict, judge_growth

REPO = Path(__file__).resolve().parents[2]
REPORT = re.compile(
    r"^\[soak\] elapsed=(?P<elapsed>\d+)s rss_mib=(?P<rss_mib>[\d.]+) fds=(?P<fds>\d+) "
    r"db_conns=(?P<db_conns>\d+) series=(?P<series>\d+) log_rows=(?P<log_rows>\d+) "
    r"scrape_p95_ms=(?P<scrape_p95_ms>[\d.]+) scrapes=(?P<scrapes>\d+) failed=(?P<failed>\d+)$"
)


@pytest.mark.e2e
def test_short_soak_passes_with_parseable_reports_and_cleans_up() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak.py"), "--duration", "60s",
         "--report-every", "10s", "--windows", "3s,6s,12s", "--seed", "3",
         # In its first minute the allocator is still settling: every run measured grew 2.9-3.0 %
         # between 12 s and 60 s. The 3 % verdict belongs to the long run (docs/soak.md);
         # here the rules' wiring is what is checked (and the tests below prove they can fail).
         "--rss-slack", "0.08"],
        capture_output=True, text=True, timeout=150, cwd=REPO,
    )
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-2000:]

    reports = [m.groupdict() for line in out.splitlines() if (m := REPORT.match(line))]
    assert [int(r["elapsed"]) for r in reports] == [10, 20, 30, 40, 50, 60], out
    for r in reports:
        assert 20 < float(r["rss_mib"]) < 1024
        assert int(r["fds"]) >= 3  # at least stdin/stdout/stderr
        assert 1 <= int(r["db_conns"]) <= 4  # pool of 3 + the start-up pass
        assert int(r["series"]) > 100  # every collector's families, windows included
        assert int(r["log_rows"]) > 0
        assert float(r["scrape_p95_ms"]) > 0
        assert 8 <= int(r["scrapes"]) <= 11  # one a second
        assert int(r["failed"]) == 0
    # Retention: rows older than 24 s are deleted, so the table stops growing at about
    # 24 s x 100 rows/s; the last report cannot hold the whole minute's rows.
    written = int(re.search(r"summary: \d+ scrapes in 1m, (\d+) rows written", out).group(1))  # type: ignore[union-attr]
    assert int(reports[-1]["log_rows"]) < written * 0.75

    for window in ("3s", "6s", "12s"):
        assert re.search(rf"^\[soak\] ok   window {window}: exporter \d+ rows, SQL \d+\.\.\d+$",
                         out, re.M), out
    totals = re.search(r"operations_total: (\d+), rows the traffic wrote: (\d+)", out)
    assert totals is not None and totals.group(1) == totals.group(2) == str(written)
    assert re.search(r"^\[soak\] figures: rss_mib start=[\d.]+ warmup_end=[\d.]+ end=[\d.]+ "
                     r"peak=[\d.]+ growth_after_warmup=[+-][\d.]+%$", out, re.M), out
    assert re.search(r"^\[soak\] figures after warm-up: fds=\d+\.\.\d+ db_conns=\d+\.\.\d+ "
                     r"series=\d+\.\.\d+ scrape_p50_ms=[\d.]+ scrape_p99_ms=[\d.]+$", out, re.M), out
    assert "[soak] FAIL" not in out
    assert out.rstrip().endswith("[soak] result: PASS")

    data_dir = re.search(r"data=(\S+)", out).group(1)  # type: ignore[union-attr]
    assert not Path(data_dir).exists()
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if data_dir in cmdline:
            left.append(cmdline)
    assert not left


def samples(n: int, **grow: float) -> list[Sample]:
    """One sample a second for ``n`` seconds; ``grow`` adds a per-second slope to a figure."""
    return [
        Sample(t=t, rss=int(100 * 2**20 + grow.get("rss", 0) * t), fds=10 + int(
            grow.get("fds", 0) * t), db_conns=3 + int(grow.get("db_conns", 0) * t),
            series=800 + int(grow.get("series", 0) * t), scrape_s=0.01, ok=True)
        for t in range(1, n + 1)
    ]


def judge(data: list[Sample]) -> list[str]:
    plan = parse_args(["--duration", "300s", "--report-every", "30s", "--windows", "5s,10s,60s"])
    verdict = Verdict()
    judge_growth(plan, data, verdict)
    return [str(f) for f in verdict.failures]


def test_flat_figures_pass() -> None:
    assert judge(samples(300)) == []


def test_rss_growth_over_the_slack_fails() -> None:
    # +60 KiB a second is +14 MiB (14 %) between the end of warm-up (60 s) and the end (300 s).
    failures = judge(samples(300, rss=60 * 1024))
    assert len(failures) == 1 and failures[0].startswith("RSS:"), failures
    # +10 KiB a second is +2.3 %: inside the 3 % slack.
    assert judge(samples(300, rss=10 * 1024)) == []


@pytest.mark.parametrize("figure", ["fds", "series"])
def test_a_figure_still_rising_in_the_last_third_fails(figure: str) -> None:
    failures = judge(samples(300, **{figure: 0.5}))
    assert [f.split(":")[0] for f in failures] == [figure], failures


def test_connections_above_the_pool_fail() -> None:
    data = samples(300)
    data[10].db_conns = 6
    failures = judge(data)
    assert [f.split(":")[0] for f in failures] == ["db_conns"], failures


def test_a_failed_scrape_fails() -> None:
    data = samples(300)
    data[200].ok = False
    assert [f.split(":")[0] for f in judge(data)] == ["scrapes"]


def test_auto_windows_and_warmup() -> None:
    plan = parse_args([])
    assert [label(w) for w in plan.windows] == ["15s", "3m", "6m"]
    assert plan.warmup == 360 and plan.retention == 720
    two_hours = parse_args(["--duration", "2h"])  # the long run
    assert [label(w) for w in two_hours.windows] == ["15s", "3m", "24m"]
    assert two_hours.warmup == 24 * 60 and two_hours.rss_slack == 0.03
    long = parse_args(["--duration", "6h"])
    assert [label(w) for w in long.windows] == ["15s", "3m", "1h12m"]  # 24h / 20
    with pytest.raises(SystemExit):  # a 60 s run cannot fill a 3 m window in its first third
        parse_args(["--duration", "60s"])
