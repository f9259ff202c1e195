"""CPU of consuming new sync-log rows, without a database: a baseline tree beside this one.

    .venv/bin/python bench/ingest_bench.py --base <dir with a checkout of the baseline>

Issue 16's "1,000 new rows per scrape" path from the rows psycopg returns to every aggregate
updated: ``Polled.split`` of the poll's rows into records, then ``LogTail._consume``
(``RowReader.tailed``, the subscribers' ``on_groups``, the windows' ``add`` and their
consumers' ``enter``); and separately the ``advance`` that moves the windows on (rows leave
them). Both collectors of the log (synclog and business) are attached, on the default windows
and buckets. The rows are drawn, seeded, as ``bench/scrape/data.py`` loads them (13 operation
types, 7 statuses, durations, customers, details, a few legacy and unusable values), ``--rows``
per batch with times in id order over the ``--interval-us`` before each batch (2 % up to a
second older: late commits); ``--fill`` rows spread over the longest window are consumed
first, so the windows hold rows as they do in production.

Each tree runs in a process of its own (``PYTHONPATH``), the trees taking turns ``--rounds``
times. Printed per tree: the median CPU per batch of ``consume`` (the split included) and of
``advance``. The trees must agree on every number: a digest of the families both collectors
build from the log is compared, and a difference fails the run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from bisect import bisect_right
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent

OPS = [  # (operation_type, weight, writes a duration, has a customer, details kind)
    ("updated", 30, False, True, "role"), ("created", 15, False, True, "role"),
    ("skipped", 10, False, False, "reason"), ("error", 5, False, False, None),
    ("customer_identification", 10, True, True, "search"),
    ("conflict_resolution", 6, True, True, "conflict"),
    ("import_from_1c", 6, True, True, None), ("batch_operation", 6, True, False, None),
    ("sync_changes", 6, True, False, None), ("data_validation", 5, True, False, None),
    ("export_to_1c", 1, True, True, None), ("notification_failed", 1, False, False, None),
    ("identify_customer", 1, True, True, "legacy"),
]  # fmt: skip
STATUSES = ["success", "failed", "error", "warning", "skipped", "pending", "not_found"]
STATUS_WEIGHTS = [80, 4, 6, 3, 4, 2, 1]


def records(rnd: random.Random, first_id: int, n: int, lo_us: int, hi_us: int,
            thresholds: list[int]) -> list[Any]:
    """``n`` log records with ids from ``first_id`` and times in ``(lo_us, hi_us]``."""
    from collectors.logsql import LogRecord

    names = [o[0] for o in OPS]
    weights = [o[1] for o in OPS]
    kinds = {o[0]: o for o in OPS}
    bounds = [t + 1 for t in thresholds]  # width_bucket over the thresholds plus one
    out = []
    for i in range(n):
        op = rnd.choices(names, weights)[0]
        _, _, timed, has_customer, kind = kinds[op]
        status = rnd.choices(STATUSES, STATUS_WEIGHTS)[0]
        roll = rnd.random()
        # In id order, as created_at = now() of each writer's transaction is, but for a few
        # rows of a transaction that began up to a second before and committed late.
        created: int | None = lo_us + (i + 1) * (hi_us - lo_us) // n
        if rnd.random() < 0.02:
            created -= rnd.randint(0, 1_000_000)
        duration = int(2.718 ** (rnd.random() * 9)) if timed else None
        if roll < 0.002:
            created = None  # infinity
        elif roll < 0.004 and duration is not None:
            duration = -duration
        bucket = None if duration is None or duration < 0 else bisect_right(bounds, duration)
        source = email = method = found = legacy = None
        if kind == "conflict":
            source = ["portal_registration", "data_import", ""][i % 3]
            email = "true" if roll < 0.5 else "false"
        elif kind == "search":
            method = ["onec_id", "onec_guid", "tax_id", "email"][i % 4]
            found = "true" if roll < 0.9 else "false"
        elif kind == "legacy":
            legacy = ["onec_id", "email", "not_found", "\x1b[0m"][i % 4]
        customer = 1 + (first_id + i) * 7919 % 50_000 if has_customer else None
        out.append(LogRecord(first_id + i, op, status, created, duration, customer, bucket,
                             source, email, method, found, legacy))
    return out


def child(args: argparse.Namespace) -> None:
    """One tree's run, in this process: prints a JSON line of timings and the digest."""
    sys.path.insert(0, args.tree)
    import collectors
    from collectors.business import BusinessCollector
    from collectors.logsql import LogRecord, Polled
    from collectors.synclog import SyncLogCollector
    from collectors.synclog_source import SyncLogSource, bucket_thresholds_ms
    from exporter.config.schema import BusinessConfig, SyncLogConfig

    assert Path(collectors.__file__).resolve().is_relative_to(Path(args.tree).resolve())
    config = SyncLogConfig()
    source = SyncLogSource(None, config)  # type: ignore[arg-type]  # no poll: no database
    synclog = SyncLogCollector(config, source=source)
    business = BusinessCollector(None, BusinessConfig(), source=source)  # type: ignore[arg-type]
    thresholds = bucket_thresholds_ms(config.buckets)
    tail, sliding = source.tail, source.sliding
    rnd = random.Random(args.seed)
    now = 1_800_000_000_000_000
    sliding.advance(now)
    next_id = 1
    step = sliding.longest // max(1, args.fill // args.rows)
    start = now - sliding.longest
    for k in range(args.fill // args.rows):  # the windows' contents, oldest first
        batch = records(rnd, next_id, args.rows, start + k * step, start + (k + 1) * step,
                        thresholds)
        tail._consume(batch)
        next_id += args.rows
    consume, advance = [], []
    # The poll's rows as psycopg returns them: the info row, then the log rows after NULLs.
    head = (now, 1, 2, 0, 1, 0, *(None for _ in LogRecord._fields))
    for _ in range(args.batches):
        batch = records(rnd, next_id, args.rows, now, now + args.interval_us, thresholds)
        fetched = [head, *((None,) * (len(head) - len(rec)) + rec for rec in batch)]
        next_id += args.rows
        now += args.interval_us
        cpu0 = time.process_time()
        sliding.advance(now)
        cpu1 = time.process_time()
        tail._consume(Polled.split(fetched, []).rows)
        cpu2 = time.process_time()
        advance.append(cpu1 - cpu0)
        consume.append(cpu2 - cpu1)
    families = [*synclog._families(), *business._from_log()]
    samples = sorted((s.name, sorted(s.labels.items()), repr(s.value))
                     for f in families for s in f.samples)
    digest = hashlib.sha256(repr(samples).encode()).hexdigest()[:16]
    print(json.dumps({"consume": consume, "advance": advance, "digest": digest,
                      "samples": len(samples)}))


def run(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", "--tree", str(tree)]
    for name in ("rows", "batches", "fill", "seed", "interval_us"):
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, help="a checkout of the baseline tree")
    parser.add_argument("--rows", type=int, default=1_000, help="rows per batch (a scrape)")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--fill", type=int, default=100_000,
                        help="rows over the longest window consumed before measuring")
    parser.add_argument("--interval-us", type=int, default=15_000_000,
                        help="time between batches (a scrape interval)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    trees = {"this tree": HERE}
    if args.base is not None:
        trees = {"base": args.base.resolve(), **trees}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            runs[name].append(run(tree, args))
    digests = {r["digest"] for rs in runs.values() for r in rs}
    print(f"{args.rows} rows a batch, {args.batches} batches, windows filled with {args.fill} "
          f"rows; {args.rounds} rounds, CPU medians per batch:")
    for name, rs in runs.items():
        consume = statistics.median(t for r in rs for t in r["consume"]) * 1000
        advance = statistics.median(t for r in rs for t in r["advance"]) * 1000
        print(f"  {name:10s} consume {consume:7.3f} ms  advance {advance:7.3f} ms  "
              f"({rs[0]['samples']} samples, digest {rs[0]['digest']})")
    if len(digests) != 1:
        sys.exit(f"the trees disagree on the numbers: digests {sorted(digests)}")
    print("every tree built the same numbers")


if __name__ == "__main__":
    main()
