"""The raw SQL floor: what an exporter that queries on every scrape pays."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.scrape.measure import Side, serial_runs


@dataclass(frozen=True)
class FloorQuery:
    """One statement of the floor: its result columns are ``labels`` plus one per metric.

    The same definition drives the floor (run as is) and query-exporter's configuration (the
    columns are what query-exporter maps to metrics), so both serve the same numbers.
    """

    name: str
    sql: str
    metrics: tuple[str, ...]
    labels: tuple[str, ...] = ()


def _window_counts() -> str:
    return ",\n".join(
        f"count(*) FILTER (WHERE created_at > now() - interval '{span}') AS floor_rows_{w}"
        for w, span in (("5m", "5 minutes"), ("1h", "1 hour"), ("24h", "24 hours"))
    )


def _percentiles() -> tuple[str, str]:
    """Per window one ordered-set aggregate over three fractions, then split into columns."""
    windows = (("5m", "5 minutes"), ("1h", "1 hour"), ("24h", "24 hours"))
    aggregates = ",\n".join(
        f"percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration_ms)"
        f" FILTER (WHERE created_at > now() - interval '{span}') AS p_{w}"
        for w, span in windows
    )
    columns = ",\n".join(
        f"p_{w}[{i}] AS floor_duration_ms_p{q}_{w}"
        for w, _ in windows for i, q in ((1, "50"), (2, "95"), (3, "99"))
    )
    return aggregates, columns


_P_AGGREGATES, _P_COLUMNS = _percentiles()
_P_METRICS = tuple(f"floor_duration_ms_p{q}_{w}" for w in ("5m", "1h", "24h")
                   for q in ("50", "95", "99"))

# What SQL-on-scrape monitoring of the same numbers runs on every scrape: totals, windows,
# percentiles, distinct customers, conflicts, and the postgres collector's connection budget.
FLOOR: tuple[FloorQuery, ...] = (
    FloorQuery(
        "synclog_totals",
        f"""SELECT operation_type, status, count(*) AS floor_rows,
            {_window_counts()},
            extract(epoch FROM max(created_at)) AS floor_last_seconds
           FROM common_customersynclog GROUP BY 1, 2""",
        ("floor_rows", "floor_rows_5m", "floor_rows_1h", "floor_rows_24h", "floor_last_seconds"),
        ("operation_type", "status"),
    ),
    FloorQuery(
        "synclog_durations",
        f"""SELECT operation_type, {_P_COLUMNS}, customers AS floor_customers_24h
           FROM (SELECT operation_type, {_P_AGGREGATES},
                 count(DISTINCT customer_id) FILTER (WHERE status = 'success'
                     AND created_at > now() - interval '24 hours') AS customers
                 FROM common_customersynclog WHERE duration_ms IS NOT NULL OR status = 'success'
                 GROUP BY 1) p""",
        (*_P_METRICS, "floor_customers_24h"),
        ("operation_type",),
    ),
    FloorQuery(
        "synclog_conflicts",
        """SELECT coalesce(details->>'conflict_source', 'unknown') AS source, status,
            count(*) AS floor_conflict_rows
           FROM common_customersynclog WHERE operation_type = 'conflict_resolution'
           GROUP BY 1, 2""",
        ("floor_conflict_rows",),
        ("source", "status"),
    ),
    FloorQuery(
        "conflict_records",
        """SELECT conflict_type, resolution_strategy, CAST(is_resolved AS text) AS resolved,
            count(*) AS floor_conflict_records
           FROM common_syncconflict GROUP BY 1, 2, 3""",
        ("floor_conflict_records",),
        ("conflict_type", "resolution_strategy", "resolved"),
    ),
    FloorQuery(
        "pg_connections",
        """SELECT coalesce(state, 'unknown') AS state, application_name,
            count(*) AS floor_pg_connections
           FROM pg_stat_activity
           WHERE (backend_type = 'client backend'
                  OR (backend_type IS NULL AND usesysid IS NOT NULL AND datid IS NOT NULL))
             AND pid <> pg_backend_pid()
           GROUP BY 1, 2""",
        ("floor_pg_connections",),
        ("state", "application_name"),
    ),
    FloorQuery(
        "pg_usable",
        """SELECT CAST(current_setting('max_connections') AS int)
                - CAST(current_setting('superuser_reserved_connections') AS int)
                - coalesce(CAST(current_setting('reserved_connections', true) AS int), 0)
                AS floor_pg_connections_usable""",
        ("floor_pg_connections_usable",),
    ),
)


def run_floor(admin: psycopg.Connection[Any], dsn: str, args: argparse.Namespace) -> Side:
    side = Side("raw SQL floor")
    with psycopg.connect(dsn, autocommit=True) as floor:
        def floor_scrape() -> None:
            for q in FLOOR:
                floor.execute(q.sql).fetchall()

        floor_scrape()  # once untimed, so every side meets a warm cache
        serial_runs(side, admin, "floor", floor_scrape, args.floor_scrapes, (0, args.new_rows),
                    None)
    return side
