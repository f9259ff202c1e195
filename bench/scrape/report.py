"""The results of a size as a table, and the targets of issue 16 as pass or fail."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.scrape.common import CONCURRENT_SCRAPERS, PEER_INTERVAL_S, SPOT, log
from bench.scrape.floor import FLOOR
from bench.scrape.measure import Side


@dataclass
class Result:
    rows: int
    days: float
    floor: Side
    peer: Side
    ours: Side
    peer_config: Path
    load_start: float
    load_end: float


def ms(seconds: float | None, digits: int = 1) -> str:
    return "–" if seconds is None else f"{seconds * 1000:,.{digits}f} ms"


def mib(n: int | None) -> str:
    return "–" if n is None else f"{n / 2**20:.1f} MiB"


def row_figures(side: Side, new: int) -> list[str]:
    quiet, busy = side.quiet(), side.serial[new]
    if side.background is not None:
        per = side.background.per_round(side.background.stmts.calls)
        st = f"0 ({'–' if per is None else f'{per:.0f}'} per {PEER_INTERVAL_S} s round)"
    else:
        st = (f"{quiet.per_scrape(quiet.stmts.calls):.1f}"
              f" ({quiet.per_scrape(quiet.stmts.on_log):.1f} on log)")
    cpu = "–" if quiet.cpu_s is None else ms(quiet.per_scrape(quiet.cpu_s), 2)
    rate = "–" if side.rate is None else f"{side.rate:.1f}/s"
    return [side.name, ms(quiet.median, 2), ms(busy.median, 2), rate, st, cpu, mib(side.rss)]


def table(rows: Sequence[Sequence[str]], left: int = 1) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [c.ljust(w) if i < left else c.rjust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        log("  " + "  ".join(cells))


def report(res: Result, args: argparse.Namespace, peer_name: str) -> None:
    new = args.new_rows
    log(f"-- results at {res.rows:,} rows over {res.days:g} days "
        f"(load average {res.load_start:.1f} before, {res.load_end:.1f} after)")
    table([
        ["side", "serial median", f"+{new:,} rows/scrape", f"{CONCURRENT_SCRAPERS} scrapers",
         "statements/scrape", "CPU/scrape", "peak RSS"],
        *(row_figures(s, new) for s in (res.floor, res.peer, res.ours)),
    ])
    log(f"  query-exporter is {peer_name}, values up to {PEER_INTERVAL_S} s stale; its "
        f"configuration: {res.peer_config}")
    for s in (res.floor, res.peer, res.ours):
        parts = []
        for n, run in sorted(s.serial.items()):
            parts.append(f"{n:,} new: p95 {ms(run.p95, 2)}, DB exec "
                         f"{ms(run.per_scrape(run.stmts.exec_ms) / 1000, 3)}/scrape")
            if s.background is None:
                parts[-1] += (f", {run.per_scrape(run.stmts.calls):.1f} statements"
                              f" ({run.per_scrape(run.stmts.on_log):.1f} on log)")
            if run.cpu_s is not None:
                parts[-1] += f", CPU {ms(run.per_scrape(run.cpu_s), 2)}"
        if s.rate_p95 is not None:
            parts.append(f"{CONCURRENT_SCRAPERS} scrapers p95 {ms(s.rate_p95)},"
                         f" {s.errors} failed")
        if s.rss_ready is not None:
            parts.append(f"peak RSS {mib(s.rss_ready)} once ready, {mib(s.rss)} at the end")
        log(f"  {s.name}: " + "; ".join(parts))
    if (bg := res.peer.background) is not None:
        log(f"  query-exporter unscraped for {bg.seconds:.0f} s: {bg.rounds:.2f} rounds of the "
            f"floor's {len(FLOOR)} statements (one due every {PEER_INTERVAL_S} s), "
            f"{bg.stmts.calls} statements ({bg.stmts.on_log} on log), "
            f"{bg.stmts.exec_ms / 1000:.2f} s DB exec, CPU {ms(bg.cpu_s)}"
            + (f"; a round every {bg.seconds / bg.rounds:.1f} s" if bg.rounds else ""))
        if bg.rounds:
            log(f"  query-exporter per round: {bg.per_round(bg.stmts.calls):.1f} statements "
                f"(BEGIN and COMMIT around each query), "
                f"{ms(bg.per_round(bg.stmts.exec_ms / 1000))} DB exec, "
                f"{ms(bg.per_round(bg.cpu_s), 2)} CPU")
    floor_scrape = res.floor.quiet().median
    assert res.ours.startup_s is not None
    log(f"  start-up: this exporter warm {res.ours.startup_s:.2f} s after it started listening"
        f" = {res.ours.startup_s / floor_scrape:.2f}x one floor scrape ({ms(floor_scrape)})")
    for s in (res.peer, res.ours):
        log(f"  spot check, {SPOT[0]}/{SPOT[1]} total on a quiet table: {s.name} "
            f"{fmt_count(s.spot)}, SQL {fmt_count(s.truth)} -> {spot_verdict(s)}")


def fmt_count(v: float | None) -> str:
    return "absent" if v is None else f"{v:,.0f}"


def spot_verdict(side: Side) -> str:
    return "same" if side.spot is not None and side.spot == side.truth else "DIFFERENT"


@dataclass(frozen=True)
class Target:
    what: str
    measured: str
    bound: str
    met: bool


def targets(res: Result, args: argparse.Namespace) -> list[Target]:
    ours, peer, floor = res.ours, res.peer, res.floor
    q, p = ours.quiet(), peer.quiet()
    busy = ours.serial[args.new_rows]
    out = [
        Target("serial median <= 0.5x query-exporter's",
               f"{ms(q.median, 2)} / {ms(p.median, 2)} = {q.median / p.median:.2f}x", "0.50x",
               q.median <= 0.5 * p.median),
        Target(f"median with {args.new_rows:,} new rows <= 1.5x no new rows",
               f"{ms(busy.median, 2)} / {ms(q.median, 2)} = {busy.median / q.median:.2f}x",
               "1.50x", busy.median <= 1.5 * q.median),
    ]
    assert ours.rate is not None and peer.rate is not None
    out.append(Target(f"{CONCURRENT_SCRAPERS} scrapers >= 3x query-exporter's scrapes/s",
                      f"{ours.rate:.0f}/s / {peer.rate:.0f}/s = {ours.rate / peer.rate:.2f}x",
                      "3.00x", ours.rate >= 3 * peer.rate))
    per = q.per_scrape(q.stmts.calls)
    out.append(Target("statements per scrape, quiet table", f"{per:.1f}", "2", per <= 2))
    assert q.cpu_s is not None
    cpu = q.per_scrape(q.cpu_s)
    out.append(Target("CPU per scrape, no new rows", ms(cpu, 2), "5 ms", cpu <= 0.005))
    assert ours.rss is not None and peer.rss is not None
    if res.rows >= 10_000_000:
        out.append(Target("peak RSS <= 110 MiB", mib(ours.rss), "110 MiB",
                          ours.rss <= 110 * 2**20))
    else:
        out.append(Target("peak RSS <= query-exporter's", f"{mib(ours.rss)} vs {mib(peer.rss)}",
                          mib(peer.rss), ours.rss <= peer.rss))
    assert ours.startup_s is not None
    ratio = ours.startup_s / floor.quiet().median
    out.append(Target("start-up <= 0.5x one floor scrape" +
                      ("" if res.rows >= 10_000_000 else " (target at 10M; shown)"),
                      f"{ours.startup_s:.2f} s = {ratio:.2f}x", "0.50x",
                      ratio <= 0.5 or res.rows < 10_000_000))
    for s in (peer, ours):
        out.append(Target(f"spot check: {s.name} serves the SQL total", fmt_count(s.spot),
                          fmt_count(s.truth), spot_verdict(s) == "same"))
    return out


def print_targets(results: Sequence[Result], args: argparse.Namespace) -> bool:
    log("== targets of issue 16, from this run")
    rows = [["size", "target", "measured", "bound", "result"]]
    met = True
    for res in results:
        for t in targets(res, args):
            rows.append([f"{res.rows / 1e6:g}M", t.what, t.measured, t.bound,
                         "pass" if t.met else "FAIL"])
            met = met and t.met
    table(rows, left=2)
    return met
