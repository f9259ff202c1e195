"""The sync-log tail's per-scrape queries read through the primary key on every PostgreSQL major.

The log has no index on ``created_at`` (DATA.md), so what keeps a scrape at O(new rows) is the
planner reading new rows, pending gaps and ``max(id)`` by primary key. A planner that chose a
sequential scan would still give right numbers, so only the plan shows it; it is checked on each
major, as the exporter's role, on a table big enough for a sequential scan to be a real option.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pydantic import SecretStr

from collectors.logtail import OPERATION_TYPES, STATUSES, LabelSet, LogTail
from exporter.config import DatabaseConfig
from exporter.db import Database

pytestmark = pytest.mark.every_pg_major

TABLE = "common_customersynclog"
ROWS = 50_000


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


def test_new_rows_gaps_and_max_id_are_read_by_primary_key(
    conn: psycopg.Connection[Any], exporter_dsn: str
) -> None:
    conn.execute(
        f"INSERT INTO {TABLE} (onec_id, operation_type, status, error_message, details,"
        " created_at, session, correlation_id, customer_id, duration_ms, updated_at, user_agent)"
        " SELECT '', 'created', 'success', '', '{}', now() - g * interval '1 second', '',"
        " gen_random_uuid(), NULL, g %% 1000, now(), '' FROM generate_series(1, %s) g", (ROWS,))
    conn.execute(f"ANALYZE {TABLE}")
    (pkey,) = conn.execute(
        "SELECT conindid::regclass::text FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype = 'p'", (TABLE,)).fetchone() or (None,)
    db = Database(DatabaseConfig(dsn=SecretStr(exporter_dsn)))
    tail = LogTail(db=db, table=TABLE, bucket_thresholds_ms=[100, 1000],
                   ops=LabelSet(OPERATION_TYPES, 5), statuses=LabelSet(STATUSES, 5),
                   longest_window_us=86_400_000_000)
    queries = {
        "tail": {"cursor": ROWS - 100, "limit": 50_000},  # the rows since the last scrape
        "gaps": {"ids": [5, ROWS // 2, ROWS - 1]},
        "info": {},  # max(id)
    }
    with psycopg.connect(exporter_dsn) as exporter:
        for name, params in queries.items():
            query = sql.SQL("EXPLAIN (FORMAT JSON) ") + tail._sql[name]
            ((plan,),) = exporter.execute(query, params).fetchall()
            on_log = [n for n in plan_nodes(plan[0]["Plan"]) if n.get("Relation Name") == TABLE]
            assert on_log, (name, plan)
            for node in on_log:
                assert node["Node Type"] in ("Index Scan", "Index Only Scan"), (name, node)
                assert node["Index Name"] == pkey, (name, node)
