"""History for the benchmark (``exporter/demo/traffic/history.py``): rows spread evenly and
monotonically over the past span, no row older than what it refers to."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from exporter.demo.traffic import (
    bulk_load,
)
from tests.exporter.demo.traffic.conftest import one, q


def test_bulk_load_spreads_history_monotonically(db_dsn: str) -> None:
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(hours=6)
    stats = bulk_load(db_dsn, random.Random(3), 20_000, start, end, chunk=7_000)
    assert stats.log_rows == 20_000
    n, lo, hi, backwards = q(db_dsn, """
        SELECT count(*), min(created_at), max(created_at),
               count(*) FILTER (WHERE created_at < prev)
        FROM (SELECT created_at, lag(created_at) OVER (ORDER BY id) AS prev
              FROM common_customersynclog) t""")[0]
    assert n == 20_000 and start <= lo and hi < end and backwards == 0
    assert hi - lo > timedelta(hours=5, minutes=59)
    # each hour holds about a sixth of the rows
    hours = [c for (c,) in q(db_dsn, "SELECT count(*) FROM common_customersynclog"
                                     " GROUP BY date_trunc('hour', created_at)")]
    assert len(hours) in (6, 7) and max(hours) < 20_000 / 6 * 1.1
    # no row refers to a user or session that did not exist yet at its time
    assert one(db_dsn, "SELECT count(*) FROM common_customersynclog l JOIN users u"
                       " ON u.id = l.customer_id WHERE u.created_at > l.created_at") == 0
    assert one(db_dsn, "SELECT count(*) FROM common_customersynclog l JOIN import_sessions s"
                       " ON s.id::text = l.session WHERE l.operation_type <> 'identify_customer'"
                       " AND (s.started_at > l.created_at OR s.finished_at < l.created_at)") == 0
    assert one(db_dsn, "SELECT count(*) FROM users") == stats.users
    assert one(db_dsn, "SELECT count(*) FROM import_sessions") == stats.sessions
    assert one(db_dsn, "SELECT count(*) FROM common_syncconflict") == stats.conflicts
    assert one(db_dsn, "SELECT count(*) FROM import_sessions WHERE status = 'completed'") > 10
    # the whole history is in the processor/logger shapes too
    assert one(db_dsn, "SELECT count(DISTINCT operation_type) FROM common_customersynclog") == 13
