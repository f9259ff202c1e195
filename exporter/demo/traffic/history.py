"""History for the benchmark: millions of rows spread over a past time span, by COPY in chunks.

It uses the same model as the live demo, so the benchmark measures the same shapes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import psycopg

from exporter.demo.traffic.ids import SequenceIds
from exporter.demo.traffic.model import TrafficModel
from exporter.demo.traffic.rows import LogRow, Op
from exporter.demo.traffic.simulator import NO_OUTAGES, OutageSchedule
from exporter.demo.traffic.state import Mix
from exporter.demo.traffic.writer import WriteStats, write_stream


def bulk_load(
    dsn: str,
    rng: random.Random,
    rows: int,
    start: datetime,
    end: datetime,
    *,
    mix: Mix | None = None,
    schedule: OutageSchedule = NO_OUTAGES,
    chunk: int = 100_000,
    progress: Callable[[int], None] | None = None,
) -> WriteStats:
    """Write ``rows`` historical log rows (plus users, sessions, conflicts) with ``created_at``
    spread evenly and monotonically over ``[start, end)``, by COPY in chunks of ``chunk`` rows.

    The model is the live demo's, with bigger import runs by default.
    """
    if rows <= 0:
        return WriteStats()
    span = (end - start).total_seconds()
    mix = mix or Mix(import_size=(200, 600), initial_catalog=400, new_counterparties=(2, 8),
                     import_gap_seconds=span / max(rows, 1) * 50)
    totals = WriteStats()
    with psycopg.connect(dsn, autocommit=True, application_name="freesport-bulk-load") as conn:
        ids = SequenceIds(lambda: conn, chunk=4096)
        model = TrafficModel(rng, ids, mix)
        model.load(conn)

        def chunk_pairs(first: int, n: int) -> Iterator[tuple[Op, datetime]]:
            ts = start + timedelta(seconds=span * first / rows)
            logs = 0
            while logs < n:
                model.outage = schedule.active(model.t)
                op = model.next_op()
                if type(op) is LogRow:
                    offset = span * (first + logs + rng.random()) / rows
                    model.t = offset
                    ts = start + timedelta(seconds=offset)
                    logs += 1
                yield op, ts

        written = 0
        while written < rows:
            n = min(chunk, rows - written)
            ids.reserve(users=n // 4 + mix.initial_catalog, sessions=n // 50 + 8)
            with conn.transaction():
                totals.add(write_stream(conn, chunk_pairs(written, n)))
            written += n
            if progress is not None:
                progress(written)
    return totals
