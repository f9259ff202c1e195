"""PostgreSQL connection budget: who holds connections, in which state, and how many are left.

The server-wide view matters because ``max_connections`` is shared by every database on the
server: the shop, Celery and this exporter all draw from it. Only client backends count (not
autovacuum, walsender, ...), and the backend running our own query is left out so the exporter
does not see itself as load.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.built import Built
from exporter.collector import CollectorError, Deadline, Reason, dependency_up
from exporter.config import PostgresConfig
from exporter.db import Database

# Every value pg_stat_activity.state can take for a client backend ("starting", a backend still
# authenticating, exists since PostgreSQL 18; before, such a backend is not listed yet). "unknown"
# is a NULL state: another role's session while ours lacks pg_read_all_stats, or (before 18) a
# backend in the moment between logging in and its first idle.
STATES = (
    "starting",
    "active",
    "idle",
    "idle in transaction",
    "idle in transaction (aborted)",
    "fastpath function call",
    "disabled",
    "unknown",
)
OTHER_APPLICATION = "(other)"

# Without pg_read_all_stats, another role's session hides its backend_type too (PostgreSQL 15
# and 18 alike), so filtering on backend_type alone would make it vanish from the budget. What
# stays visible tells it apart from server processes: a role (autovacuum, checkpointer... have
# none) and a database (the logical replication launcher has none). A hidden parallel worker or
# logical walsender of that role would count too; grant pg_read_all_stats for exact numbers.
# One statement (issue 16): the budget's settings on every row, beside each group of client
# backends (a row of settings alone when the exporter is the server's only client).
_CONNECTIONS_SQL = """
SELECT s.max_connections, s.superuser_reserved, s.reserved, a.state, a.application_name, a.n
FROM (SELECT current_setting('max_connections')::int AS max_connections,
             current_setting('superuser_reserved_connections')::int AS superuser_reserved,
             coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved) AS s
LEFT JOIN LATERAL (
    SELECT coalesce(state, 'unknown') AS state, application_name, count(*) AS n
    FROM pg_stat_activity
    WHERE (backend_type = 'client backend'
           OR (backend_type IS NULL AND usesysid IS NOT NULL AND datid IS NOT NULL))
      AND pid <> pg_backend_pid()
    GROUP BY 1, 2
) AS a ON true
"""


class PostgresCollector:
    """Connections by state and application, the usable budget, and our own pool's health."""

    name = "postgres"

    def __init__(self, db: Database, config: PostgresConfig) -> None:
        self.db = db
        self.config = config
        self._pool_built, self._rows_built = Built(), Built()

    def collect(self, deadline: Deadline) -> list[Metric]:
        # Read before we take a connection ourselves, so "in use" shows the other collectors.
        stats = self.db.pool.get_stats()  # also counts what moves at every checkout
        used = tuple(stats.get(k, 0) for k in _POOL_STATS)
        pool = self._pool_built.get(used, lambda: self._pool_families(*used))
        try:
            with self.db.connection(deadline) as conn:
                rows = conn.execute(_CONNECTIONS_SQL).fetchall()
        except CollectorError as exc:
            # A server that answered with an SQL error is up; anything else means unreachable.
            up = dependency_up("postgres", _UP_HELP, exc.reason is Reason.QUERY)
            raise CollectorError(exc.reason, exc.message, [up, *pool]) from None
        return [
            dependency_up("postgres", _UP_HELP, True),
            *self._rows_built.get(rows, lambda: [
                *self._activity_families([row[3:] for row in rows if row[5] is not None]),
                self._usable(rows[0][:3]),
            ]),
            *pool,
        ]

    def _activity_families(self, rows: list[Any]) -> list[Metric]:
        by_state: Counter[str] = Counter()
        by_app: Counter[str] = Counter()
        allowed = set(self.config.application_names)
        for state, app, n in rows:
            by_state[state] += n
            by_app[app if app in allowed else OTHER_APPLICATION] += n
        states = GaugeMetricFamily(
            "customer_sync_postgres_connections",
            "Client connections to the whole PostgreSQL server by pg_stat_activity state, "
            "excluding the exporter's own querying backend; 'unknown' = no state: another "
            "role's session while the exporter's role lacks pg_read_all_stats, or (before "
            "PostgreSQL 18) a backend that has just logged in.",
            labels=["state"],
        )
        for state in (*STATES, *sorted(set(by_state) - set(STATES))):
            states.add_metric([state], by_state[state])
        apps = GaugeMetricFamily(
            "customer_sync_postgres_application_connections",
            "Client connections by application_name for the configured allow-list; every other "
            f"application is summed under {OTHER_APPLICATION!r}.",
            labels=["application_name"],
        )
        for app in (*self.config.application_names, OTHER_APPLICATION):
            apps.add_metric([app], by_app[app])
        return [states, apps]

    @staticmethod
    def _usable(settings: Any) -> Metric:
        max_conn, superuser_reserved, reserved = settings
        return GaugeMetricFamily(
            "customer_sync_postgres_connections_usable",
            "Connections ordinary roles can open: max_connections - "
            "superuser_reserved_connections - reserved_connections (PostgreSQL 16+).",
            value=max_conn - superuser_reserved - reserved,
        )

    @staticmethod
    def _pool_families(size: int, available: int, most: int, waiting: int,
                       errors: int) -> list[Metric]:
        conns = GaugeMetricFamily(
            "customer_sync_exporter_db_pool_connections",
            "Connections in the exporter's own PostgreSQL pool: 'available' idle in the pool, "
            "'in_use' lent to a collector or being opened.",
            labels=["state"],
        )
        conns.add_metric(["available"], available)
        conns.add_metric(["in_use"], max(0, size - available))
        return [
            conns,
            GaugeMetricFamily(
                "customer_sync_exporter_db_pool_max_connections",
                "The most connections the exporter's pool may open (database.pool_max_size).",
                value=most,
            ),
            GaugeMetricFamily(
                "customer_sync_exporter_db_pool_waiting_requests",
                "Collectors waiting for a connection from the exporter's pool right now.",
                value=waiting,
            ),
            CounterMetricFamily(
                "customer_sync_exporter_db_pool_connection_errors_total",
                "Failed attempts of the exporter's pool to open a connection since start.",
                value=errors,
            ),
        ]


# The pool's stats the families show, in _pool_families's order.
_POOL_STATS = ("pool_size", "pool_available", "pool_max", "requests_waiting", "connections_errors")
_UP_HELP = "1 if PostgreSQL answered the exporter's query in this scrape, else 0."
