"""Business outcomes of the sync (story 3.5.1), each taken from where DATA.md says it really lives.

* From the sync log, read once through the shared tail (O(new rows) per scrape): conflicts by
  ``details->>'conflict_source'`` (bug 1), identifications by ``search_method``/``found`` and the
  legacy ``identification_method`` (bug 2), admin notifications from ``email_sent`` and
  ``notification_failed`` rows (bug 4), distinct customers of success rows per window with NULL
  excluded (bug 6).
* From ``users``: customers by origin (``created_in_1c``) and role, registrations vs 1C imports
  per window (bug 5: not export_to_1c/import_from_1c log rows), the export queue.
* From ``common_syncconflict``: conflict records by type, strategy and resolution.
* From ``import_sessions``: sessions by type and status, and when each last finished.
Ratios (auto-resolution, identification success) are PromQL recording rules, not Python (bug 3).
"""

from __future__ import annotations

import itertools
import time
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from collectors.business_tables import TableReads
from collectors.labels import LabelSet
from collectors.logrows import Group, LogSubscriber
from collectors.synclog_source import SyncLogSource
from collectors.windows import STATUS_MASK, Row, WindowConsumer
from exporter.built import Built
from exporter.collector import Deadline
from exporter.config import BusinessConfig
from exporter.db import Database

CONFLICT_SOURCES = ("portal_registration", "data_import", "unknown")
IDENTIFICATION_METHODS = ("onec_id", "onec_guid", "tax_id", "email", "none")
ROLES = (
    "retail", "wholesale_level1", "wholesale_level2", "wholesale_level3", "wholesale_level4",
    "trainer", "federation_rep", "admin", "unregistered",
)  # fmt: skip
ORIGINS = ("1c_import", "portal")
CONFLICT_TYPES = ("portal_registration_blocked", "customer_data")
RESOLUTION_STRATEGIES = ("onec_wins", "portal_wins", "manual")
IMPORT_TYPES = ("catalog", "variants", "attributes", "images", "stocks", "prices", "customers")
IMPORT_STATUSES = ("pending", "started", "in_progress", "completed", "failed")
LABEL_CAP = 50
RECOUNT_MAX_AGE = 300.0
BOOLEANS = ("true", "false")


def zero_filled(counts: Mapping[tuple[Any, ...], int],
                *known: Iterable[Any]) -> list[tuple[tuple[Any, ...], int]]:
    """``counts`` with a zero for every combination of ``known`` label values it lacks, sorted:
    a series that is known exists from the first scrape on."""
    filled = dict.fromkeys(itertools.product(*known), 0)
    filled.update(counts)
    return sorted(filled.items())


class BusinessCounters(LogSubscriber):
    """Cumulative business numbers from sync-log rows."""

    def __init__(self, statuses: LabelSet, ops: LabelSet) -> None:
        self.statuses = statuses
        self.ops = ops
        self.version = 0  # changes whenever the numbers may have
        self.reset()

    def reset(self) -> None:
        self.version += 1
        self.conflicts: Counter[tuple[str, int]] = Counter()
        self.identifications: Counter[tuple[str, str]] = Counter()
        self.notifications: Counter[str] = Counter()
        self.methods = LabelSet(IDENTIFICATION_METHODS, LABEL_CAP)
        self.sources = LabelSet(CONFLICT_SOURCES, LABEL_CAP)

    def on_groups(self, groups: Sequence[Group]) -> None:
        if groups:
            self.version += 1
        op_name = self.ops.values
        success = self.statuses.code("success")
        for g in groups:
            op = op_name[g.op]
            if op == "conflict_resolution":
                source = self.sources.canonical(g.conflict_source or "unknown")
                self.conflicts[(source, g.status)] += g.rows
                if g.email_sent == "true":
                    self.notifications["sent"] += g.rows
            elif op == "notification_failed":
                self.notifications["failed"] += g.rows
            elif op == "customer_identification":
                method = self.methods.canonical(g.search_method or "none")
                found = "true" if g.found == "true" else "false"
                self.identifications[(method, found)] += g.rows
            elif op == "identify_customer":
                legacy = g.identification_method
                method_name = "none" if not legacy or legacy == "not_found" else legacy
                method = self.methods.canonical(method_name)
                found = "true" if g.status == success else "false"
                self.identifications[(method, found)] += g.rows


class DistinctCustomers(WindowConsumer):
    """Per window, how many success rows each customer has (so leaving rows can be undone).

    ``success`` is the status code of success rows."""

    def __init__(self, n_windows: int, success: int) -> None:
        self.success = success
        self.customers: list[Counter[int]] = [Counter() for _ in range(n_windows)]

    def reset(self) -> None:
        for customers in self.customers:
            customers.clear()

    def enter(self, windows: Sequence[int], rows: Sequence[Row]) -> None:
        synced = self._synced(rows)
        for window in windows:
            self.customers[window].update(synced)

    def leave(self, windows: Sequence[int], rows: Sequence[Row]) -> None:
        leaving = Counter(self._synced(rows))
        for window in windows:
            customers = self.customers[window]
            for customer, n in leaving.items():
                left = customers[customer] - n
                if left:
                    customers[customer] = left
                else:
                    del customers[customer]

    def _synced(self, rows: Sequence[Row]) -> list[int]:
        """The customer of each success row of ``rows`` that has one."""
        success = self.success
        return [customer for _, code, _, customer in rows
                if customer >= 0 and code & STATUS_MASK == success]


class BusinessCollector:
    """The ``business`` collector: what the sync achieved, from the sync log and three tables.

    The log's numbers come from the shared source (read once with the synclog collector, O(new
    rows) a scrape); the tables' (:mod:`collectors.business_tables`) from one SELECT that
    travels in the source's poll: ``users`` and ``common_syncconflict`` are recounted only when
    PostgreSQL's table statistics say they changed, ``import_sessions`` (small) every scrape.
    """

    name = "business"

    def __init__(self, db: Database, config: BusinessConfig, *, source: SyncLogSource,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """``source`` gives the log's rows, windows and time; the collector detaches from it on
        :meth:`close`. ``monotonic`` times the recounts that do not wait for statistics."""
        self.db = db
        self.source = source
        self.counters = BusinessCounters(source.statuses, source.ops)
        self.customers = DistinctCustomers(len(source.windows), source.statuses.code("success"))
        self.roles = LabelSet(ROLES, LABEL_CAP)
        self.tables = TableReads(config, longest_window_us=source.longest_window_us,
                                 max_age=RECOUNT_MAX_AGE, monotonic=monotonic)
        source.attach(self.counters, self.customers, self.tables)
        self._log_built, self._conflicts_built = Built(), Built()
        self._users_built, self._imports_built = Built(), Built()

    def collect(self, deadline: Deadline) -> list[Metric]:
        """The tables ride the log's poll. After a ride failed they are read alone, first, so a
        log that hangs cannot starve them, until a scrape where both went well."""
        alone = not self.tables.riding
        if alone:
            self.tables.read_alone(self.db, deadline, self.source.tail.clock_us)
        families = self.source.read(deadline, self._log_families,
                                    others=lambda: self._tables(deadline))
        if alone:
            self.tables.ride_again()
        return families

    def close(self) -> None:
        self.source.detach(self.counters, self.customers, self.tables)

    def _tables(self, deadline: Deadline) -> list[Metric]:
        """The tables' families, read in this scrape: by the poll, else now on their own."""
        t = self.tables
        if t.served_for != deadline:
            t.read_alone(self.db, deadline, self.source.tail.clock_us)
        with t.lock:
            created = self._created_counts(t.now_us)
            return [
                *self._conflicts_built.get(
                    t.conflict_rows, lambda: self._conflict_records(t.conflict_rows)),
                *self._users_built.get((t.user_rows, created),
                                       lambda: self._users(t.user_rows, created)),
                self._export_queue_age(t.now_us),
                *self._imports_built.get(t.import_rows, lambda: self._imports(t.import_rows)),
            ]

    def _log_families(self) -> list[Metric]:
        """Made again only when a row arrived or a window's customers changed."""
        synced = tuple(len(customers) for customers in self.customers.customers)
        return self._log_built.get((self.counters.version, synced), self._from_log)

    def _from_log(self) -> list[Metric]:
        c, statuses = self.counters, self.source.statuses
        conflicts = CounterMetricFamily(
            "customer_sync_conflicts",
            "conflict_resolution rows of the sync log by details.conflict_source (unknown when the "
            "key is absent) and row status.",
            labels=["source", "status"],
        )
        known_statuses = [statuses.code("success"), statuses.code("error")]
        for (source, status), n in zero_filled(c.conflicts, CONFLICT_SOURCES, known_statuses):
            conflicts.add_metric([source, statuses.values[status]], n)
        idents = CounterMetricFamily(
            "customer_sync_identifications",
            "Customer identifications: customer_identification rows by details.search_method "
            "(none when null) and details.found; legacy identify_customer rows by "
            "details.identification_method, found when status is success.",
            labels=["method", "found"],
        )
        methods = set(IDENTIFICATION_METHODS) | {m for m, _ in c.identifications}
        for key, n in zero_filled(c.identifications, methods, BOOLEANS):
            idents.add_metric(list(key), n)
        notes = CounterMetricFamily(
            "customer_sync_admin_notifications",
            "Conflict e-mails to the admin: sent = conflict_resolution rows with "
            "details.email_sent true (sync-logger rows); failed = notification_failed rows. "
            "Resolver rows carry no email_sent key: a successful resolver e-mail writes no row, "
            "so it is not counted.",
            labels=["result"],
        )
        for result in ("sent", "failed"):
            notes.add_metric([result], c.notifications.get(result, 0))
        synced = GaugeMetricFamily(
            "customer_sync_recent_customers_synced",
            "Distinct customer_id over sync-log rows with status success in (now - window, now]; "
            "rows without a customer are not counted.",
            labels=["window"],
        )
        for i, window in enumerate(self.source.windows):
            synced.add_metric([window.label], len(self.customers.customers[i]))
        return [conflicts, idents, notes, synced]

    def _conflict_records(self, rows: Sequence[Sequence[Any]]) -> list[Metric]:
        family = GaugeMetricFamily(
            "customer_sync_conflict_records",
            "Rows of common_syncconflict by conflict type, resolution strategy and is_resolved "
            "(auto-resolved = resolved with onec_wins). Cached: recounted when PostgreSQL's "
            f"table statistics show a change, and every {RECOUNT_MAX_AGE:g} s. The statistics "
            "lag writes: a backend publishes its counts at most once a second, one that goes "
            "idle right after a write 10 s later, and up to 60 s while they are contended "
            "(PostgreSQL 15+).",
            labels=["conflict_type", "resolution_strategy", "resolved"],
        )
        types, strategies = LabelSet(CONFLICT_TYPES, LABEL_CAP), LabelSet(RESOLUTION_STRATEGIES,
                                                                          LABEL_CAP)
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        for ctype, strategy, resolved, n in rows:
            counts[(types.canonical(ctype), strategies.canonical(strategy),
                    "true" if resolved else "false")] += n
        for key, n in zero_filled(counts, CONFLICT_TYPES, RESOLUTION_STRATEGIES, BOOLEANS):
            family.add_metric(list(key), n)
        return [family]

    def _created_counts(self, now_us: int) -> tuple[int, ...]:
        """Users created in each window by origin, in (origin, window) order."""
        counts = []
        for origin in ORIGINS:
            times = self.tables.created_us[origin == "1c_import"]
            for window in self.source.windows:
                since = now_us - int(window.seconds * 1_000_000)
                counts.append(bisect_right(times, now_us) - bisect_right(times, since))
        return tuple(counts)

    def _users(self, user_rows: Sequence[Sequence[Any]],
               created_counts: Sequence[int]) -> list[Metric]:
        customers = GaugeMetricFamily(
            "customer_sync_customers",
            "Users by origin (1c_import when created_in_1c, else portal registration) and role. "
            "Cached: re-read when PostgreSQL's table statistics for users change, and every "
            f"{RECOUNT_MAX_AGE:g} s; the statistics lag writes by up to 10 s, 60 s while "
            "contended (see customer_sync_conflict_records).",
            labels=["origin", "role"],
        )
        created = GaugeMetricFamily(
            "customer_sync_recent_customers_created",
            "Users whose created_at is in (now - window, now]: new portal registrations vs "
            "customers imported from 1C.",
            labels=["origin", "window"],
        )
        queue = GaugeMetricFamily(
            "customer_sync_export_queue_customers",
            "Active users waiting for export to 1C (needs_1c_export).",
        )
        by_role: dict[tuple[str, str], int] = defaultdict(int)
        waiting = 0
        for in_1c, role, n, export in user_rows:
            origin = "1c_import" if in_1c else "portal"
            by_role[(origin, self.roles.canonical(role))] += n
            waiting += export
        for key, n in zero_filled(by_role, ORIGINS, ROLES):
            customers.add_metric(list(key), n)
        labels = [(o, w.label) for o in ORIGINS for w in self.source.windows]
        for (origin, window), n in zip(labels, created_counts, strict=True):
            created.add_metric([origin, window], n)
        queue.add_metric([], waiting)
        return [customers, created, queue]

    def _export_queue_age(self, now_us: int) -> Metric:
        """How long the export backlog's oldest user has waited. users has no "flagged at"
        column: needs_1c_export defaults to false and is raised on an existing row, and Django's
        save() then moves updated_at (auto_now), so updated_at is the latest time the wait can
        have begun. created_at/date_joined would count a long-standing customer's whole life,
        and last_sync_at is NULL for a user never synced."""
        oldest = self.tables.export_oldest_us
        age = 0.0 if oldest is None else max(0.0, (now_us - oldest) / 1_000_000)
        return GaugeMetricFamily(
            "customer_sync_export_queue_oldest_age_seconds",
            "Seconds since updated_at of the oldest active user waiting for export to 1C "
            "(needs_1c_export); 0 when none waits. updated_at stands for 'since when': saving the "
            "flag sets it, so this is a lower bound (a later edit of that user restarts it).",
            value=age,
        )

    def _imports(self, rows: Sequence[Sequence[Any]]) -> list[Metric]:
        sessions = GaugeMetricFamily(
            "customer_sync_import_sessions",
            "Rows of import_sessions by import type and status (customers = the 1C customer "
            "import).",
            labels=["import_type", "status"],
        )
        finished = GaugeMetricFamily(
            "customer_sync_last_import_finished_timestamp_seconds",
            "Newest finished_at of import sessions of this type and status (Unix time); an "
            "infinite finished_at has no time and is left out.",
            labels=["import_type", "status"],
        )
        types, statuses = LabelSet(IMPORT_TYPES, LABEL_CAP), LabelSet(IMPORT_STATUSES, LABEL_CAP)
        counts: dict[tuple[str, str], int] = defaultdict(int)
        newest: dict[tuple[str, str], float] = {}
        for itype, status, n, last in rows:
            key = (types.canonical(itype), statuses.canonical(status))
            counts[key] += n
            if last is not None:
                newest[key] = max(newest.get(key, 0.0), last)
        for key, n in zero_filled(counts, IMPORT_TYPES, IMPORT_STATUSES):
            sessions.add_metric(list(key), n)
        for key, ts in sorted(newest.items()):
            finished.add_metric(list(key), ts)
        return [sessions, finished]

