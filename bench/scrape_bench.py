"""This exporter, query-exporter and a raw-SQL floor, side by side on one PostgreSQL, in one run.

    .venv/bin/python bench/scrape_bench.py

For each size (default: 1M rows spread over 30 days, then 10M rows at 1M per 24 h) it loads the
FREESPORT tables into a dedicated embedded PostgreSQL (its own generator, in the DATA.md shapes:
1C-import rows without duration, sync-logger rows with durations and details, resolver
conflicts; ``--conflicts`` rows of common_syncconflict, 50,000 users) and measures three sides,
one after the other so none loads the machine while another is timed:

* the raw SQL floor: what an exporter that queries on scrape pays, the windows, totals,
  percentiles and connection counts of ``FLOOR`` as 6 statements on one psycopg connection;
* query-exporter (pinned ``PEER_VERSION``, in its own venv under ``--data-dir``, never in the
  project's), running the floor's SQL every 15 s in the background and serving the cached values
  (up to 15 s stale);
* this exporter with the synclog, business and postgres collectors (exact at scrape time).

For every side: the median (and p95) of ``--scrapes`` serial scrapes, spread over one 15 s
interval, with no new rows and with ``--new-rows`` rows written before every scrape; scrapes/s
of 10 concurrent scrapers for 10 s; database statements per scrape (pg_stat_statements ``calls``
of the side's own role, SETs and set_config included, and how many name the log table); process
CPU time per scrape; peak RSS (VmHWM). For this exporter also the start-up: from the port
accepting connections until every collector reports success, as a ratio of one floor scrape. A
spot check compares one value (the updated/success total) served by both exporters with SQL. It
ends with the targets of issue 16 as a pass/fail table computed from the same run, and exits 1
if any target failed.

The data directory is kept (``--data-dir``, default ``.bench/``) so a size is loaded only once
(the same rows every time: the generator is seeded); rows a run added are deleted by the next,
and when the data has aged (newest row older than ``STALE_AFTER_S``) the rows of its last
``RECENT`` are moved forward by that age, so every window holds what it held at load. Older rows
keep their time: a hole as long as the age opens before them, outside every window.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import importlib.metadata
import multiprocessing
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.demo.ports import free_port
from exporter.demo.postgres import EmbeddedPostgres

USERS = 50_000
ROLE_PASSWORD = "bench"
PEER_VERSION = "5.0.2"  # the query-exporter release the table was measured with
PEER_INTERVAL_S = 15
CONCURRENT_SCRAPERS = 10
CONCURRENT_SECONDS = 10.0
SERIAL_SPAN_S = float(PEER_INTERVAL_S)  # serial scrapes are spread over one peer interval
PEER_IDLE_S = 2.0 * PEER_INTERVAL_S  # query-exporter's own load is counted, unscraped, this long
STALE_AFTER_S = 120.0
RECENT = "25 hours"  # longer than the longest window (24h): the rows whose time matters
SEED = 0.16  # setseed() before loading, so every load draws the same rows
LOG_TABLE = "common_customersynclog"
SPOT = ("updated", "success")  # operation_type, status of the spot-checked total
# What Prometheus 2.x (Debian 12 ships 2.42) sends with every scrape: OpenMetrics preferred,
# gzip accepted. Each exporter answers in what it supports (query-exporter never gzips).
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
              "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "User-Agent": "scrape_bench",
}

LOG_INSERT = """
INSERT INTO common_customersynclog (onec_id, operation_type, status, error_message, details,
    created_at, session, correlation_id, customer_id, duration_ms, updated_at, user_agent)
SELECT '', k.op, k.st, CASE WHEN k.st IN ('failed', 'error') THEN 'boom' ELSE '' END, k.details,
       s.ts, CASE WHEN k.logger THEN '' ELSE (s.g / 4735)::text END, gen_random_uuid(),
       CASE WHEN k.has_customer THEN 1 + (s.g * 7919) % {users} END,
       CASE WHEN k.logger THEN (exp(random() * 9))::int END, s.ts, ''
FROM (SELECT g, {end_ts} - ({span_s} * ({n} - g)::float8 / {n}) * interval '1 second' AS ts,
             random() AS r, random() AS r2
      FROM generate_series({lo}::int8, {hi}) g) s,
LATERAL (SELECT
    CASE WHEN s.r < 0.30 THEN 'updated' WHEN s.r < 0.45 THEN 'created'
         WHEN s.r < 0.55 THEN 'skipped'
         WHEN s.r < 0.60 THEN 'error' WHEN s.r < 0.70 THEN 'customer_identification'
         WHEN s.r < 0.76 THEN 'conflict_resolution' WHEN s.r < 0.82 THEN 'import_from_1c'
         WHEN s.r < 0.88 THEN 'batch_operation' WHEN s.r < 0.94 THEN 'sync_changes'
         ELSE 'data_validation' END AS op,
    s.r >= 0.60 AS logger,
    s.r < 0.45 OR (s.r >= 0.60 AND s.r < 0.82) AS has_customer,
    CASE WHEN s.r < 0.55 THEN 'success' WHEN s.r < 0.60 THEN 'failed'
         WHEN s.r2 < 0.9 THEN 'success' WHEN s.r < 0.70 THEN 'skipped' ELSE 'error' END AS st,
    CASE WHEN s.r >= 0.60 AND s.r < 0.70 THEN jsonb_build_object(
             'search_method', (ARRAY['onec_id','onec_guid','tax_id','email'])[1 + (s.g % 4)],
             'found', s.r2 < 0.9)
         WHEN s.r >= 0.70 AND s.r < 0.76 THEN jsonb_build_object(
             'conflict_source', (ARRAY['portal_registration','data_import'])[1 + (s.g % 2)],
             'email_sent', s.r2 < 0.5, 'resolution_strategy', 'onec_wins')
         WHEN s.r < 0.45 THEN jsonb_build_object('role', 'unregistered', 'role_outcome',
             'roles_skipped_unlinked_record', 'role_preserved', true)
         WHEN s.r < 0.55 THEN '{{"reason": "not_buyer", "role": "Поставщик"}}'::jsonb
         ELSE '{{}}'::jsonb END AS details) k
"""

USERS_INSERT = """
INSERT INTO users (password, is_superuser, first_name, last_name, is_staff, is_active, date_joined,
    email, role, phone, company_name, tax_id, is_verified, created_at, updated_at, created_in_1c,
    needs_1c_export, sync_error_message, sync_status, verification_status, country,
    onec_price_type_id, responsible_manager_manual)
SELECT CASE WHEN g % 10 = 0 THEN 'x' ELSE '' END, false, '', '', false, g % 50 <> 0,
       now(), NULL, CASE WHEN g % 10 = 0 THEN 'retail' ELSE 'unregistered' END, '', '', '',
       false, now() - (g % 1000) * interval '1 hour', now(), g % 10 <> 0, g % 97 = 0, '',
       'synced', 'unverified', 'Россия', '', false
FROM generate_series(1, {users}) g
"""

CONFLICTS_INSERT = """
INSERT INTO common_syncconflict (conflict_type, resolution_strategy, is_resolved, resolved_at,
    created_at, customer_id, details, updated_at)
SELECT CASE WHEN g % 2 = 0 THEN 'portal_registration_blocked' ELSE 'customer_data' END,
       'onec_wins', true, now(), now() - g * interval '1 second', 1 + g % {users},
       '{{"resolved_by": "CustomerConflictResolver"}}', now()
FROM generate_series(1, {n}) g
"""


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


def log(msg: str = "") -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# Data


def load(dsn: str, rows: int, days: float, conflicts: int) -> None:
    """Load ``rows`` log rows evenly over ``days`` ending now, unless that is already there."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Rows a previous run added while measuring are removed, so every run starts equal, and
        # the ids go on from the last loaded one: a hole in the ids looks like transactions in
        # flight to the exporter, which would watch it while it is being measured.
        deleted = conn.execute("DELETE FROM common_customersynclog WHERE id > %s", (rows,))
        if deleted.rowcount:
            conn.execute("VACUUM ANALYZE common_customersynclog")
        conn.execute("SELECT setval(pg_get_serial_sequence('common_customersynclog', 'id'),"
                     " greatest(1, (SELECT max(id) FROM common_customersynclog)))")
        # What was loaded is written on the table once loading completed.
        loaded = f"scrape_bench rows={rows} days={days:g} conflicts={conflicts} users={USERS}"
        (comment,) = conn.execute(
            "SELECT obj_description('common_customersynclog'::regclass, 'pg_class')"
        ).fetchone()  # type: ignore[misc]
        (have,) = conn.execute(
            "SELECT count(*) FROM common_customersynclog").fetchone()  # type: ignore[misc]
        if comment == loaded and have == rows:
            log(f"  {rows:,} rows over {days:g} days already loaded")
        else:
            conn.execute("TRUNCATE common_customersynclog, common_syncconflict, users"
                         " RESTART IDENTITY CASCADE")
            conn.execute("SELECT setseed(%s)", (SEED,))
            conn.execute(USERS_INSERT.format(users=USERS))
            step = 1_000_000
            started = time.monotonic()
            for lo in range(1, rows + 1, step):
                hi = min(rows, lo + step - 1)
                conn.execute(LOG_INSERT.format(
                    users=USERS, end_ts="now()", span_s=days * 86400.0, lo=lo, hi=hi, n=rows))
                log(f"  loaded {hi:,} rows ({time.monotonic() - started:.0f}s)")
            conn.execute(CONFLICTS_INSERT.format(users=USERS, n=conflicts))
            conn.execute("VACUUM ANALYZE")
            conn.execute(sql.SQL("COMMENT ON TABLE common_customersynclog IS {}").format(
                sql.Literal(loaded)))
        catch_up_clock(conn)


def catch_up_clock(conn: psycopg.Connection[Any]) -> None:
    """Move the rows of the last RECENT forward by the data's age: the windows see the load.

    Only those rows: shifting all 10M rewrote the table and its ten indexes (12 minutes, twice
    as long as loading); older rows are outside every window, only their hole shows in a plot.
    """
    (age,) = conn.execute(
        "SELECT extract(epoch FROM now() - max(created_at)) FROM common_customersynclog"
    ).fetchone()  # type: ignore[misc]
    if float(age) <= STALE_AFTER_S:
        return
    started = time.monotonic()
    gap = f"{float(age):.6f} seconds"
    moved = conn.execute(
        "UPDATE common_customersynclog SET created_at = created_at + %(gap)s::interval,"
        " updated_at = updated_at + %(gap)s::interval WHERE created_at >"
        " (SELECT max(created_at) FROM common_customersynclog) - %(recent)s::interval",
        {"gap": gap, "recent": RECENT}).rowcount
    conn.execute("UPDATE users SET created_at = created_at + %s::interval", (gap,))
    conn.execute("VACUUM ANALYZE common_customersynclog, users")
    log(f"  moved the {moved:,} rows of the last {RECENT} {float(age) / 60:,.1f} min forward "
        f"({time.monotonic() - started:.0f}s)")


def new_rows(conn: psycopg.Connection[Any], n: int) -> None:
    if n:
        conn.execute(LOG_INSERT.format(
            users=USERS, end_ts="now()", span_s=0, lo=1, hi=n, n=n))


def ensure_roles(admin: psycopg.Connection[Any], roles: Sequence[str]) -> None:
    """One login role per side, so pg_stat_statements tells their statements apart."""
    for role in roles:
        if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{ROLE_PASSWORD}'"
                          " IN ROLE pg_read_all_stats")
        admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")


def spot_truth(admin: psycopg.Connection[Any]) -> int:
    (n,) = admin.execute(
        "SELECT count(*) FROM common_customersynclog WHERE operation_type = %s AND status = %s",
        SPOT).fetchone()  # type: ignore[misc]
    return int(n)


# ---------------------------------------------------------------------------------------------
# Measuring


@dataclass(frozen=True)
class Statements:
    """pg_stat_statements totals of one role at one moment."""

    calls: int
    on_log: int
    exec_ms: float

    def minus(self, before: Statements) -> Statements:
        return Statements(self.calls - before.calls, self.on_log - before.on_log,
                          self.exec_ms - before.exec_ms)


def statements(admin: psycopg.Connection[Any], role: str) -> Statements:
    calls, on_log, ms = admin.execute(
        "SELECT coalesce(sum(calls), 0), coalesce(sum(calls) FILTER (WHERE query ILIKE %s), 0),"
        " coalesce(sum(total_exec_time), 0)"
        " FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = %s",
        (f"%{LOG_TABLE}%", role),
    ).fetchone()  # type: ignore[misc]
    return Statements(int(calls), int(on_log), float(ms))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def pct(values: Sequence[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, round(q * (len(values) - 1)))]


def cpu_seconds(pid: int) -> float:
    """CPU time of a whole process, every thread whether running or ended, to the nanosecond.

    It is the kernel's process CPU clock, the one clock_getcpuclockid(3) names; psutil and
    /proc/<pid>/stat round to 10 ms ticks, too coarse for 20 scrapes of a few ms each.
    """
    return time.clock_gettime(((~pid) << 3) | 2)  # MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Serial:
    """``runs`` scrapes one after the other, ``new`` rows written before each."""

    new: int
    times: list[float]
    stmts: Statements
    cpu_s: float | None

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def p95(self) -> float:
        return pct(self.times, 0.95)

    def per_scrape(self, value: float) -> float:
        return value / len(self.times)


@dataclass(frozen=True)
class Background:
    """What query-exporter costs between scrapes: its rounds of the floor's statements."""

    stmts: Statements
    cpu_s: float
    seconds: float
    executions: float  # floor statements it ran (its queries_total), so partial rounds count

    @property
    def rounds(self) -> float:
        return self.executions / len(FLOOR)

    def per_round(self, value: float) -> float | None:
        return value / self.rounds if self.rounds else None


@dataclass
class Side:
    name: str
    serial: dict[int, Serial] = field(default_factory=dict)
    rate: float | None = None  # scrapes/s of the concurrent scrapers
    rate_p95: float | None = None
    errors: int = 0  # failed scrapes among the concurrent ones
    rss: int | None = None
    rss_ready: int | None = None  # VmHWM once ready, before the measured scrapes
    startup_s: float | None = None
    background: Background | None = None  # query-exporter's own querying, unscraped
    spot: float | None = None  # the SPOT total it served on a quiet table
    truth: int | None = None  # the same total by SQL, read while that table was quiet

    def quiet(self) -> Serial:
        return self.serial[0]


def serial_runs(side: Side, admin: psycopg.Connection[Any], role: str, fn: Callable[[], object],
                runs: int, new_counts: Sequence[int], pid: int | None) -> None:
    """Scrapes spread evenly over one query-exporter interval (back to back if they take longer).

    Prometheus's scrapes fall at any moment of the peer's rounds, and at 10M a round keeps the
    2 cores busy for most of its 15 s: back to back, 20 scrapes (0.1 s) fell either inside or
    between its heavy statements, and its median came out 2.9 ms in one run and 10.4 ms in the
    next. Spread over the interval, every side is sampled across a whole round.
    """
    spacing = SERIAL_SPAN_S / runs
    for new in new_counts:
        before = statements(admin, role)
        cpu0 = cpu_seconds(pid) if pid else 0.0
        times: list[float] = []
        start = time.monotonic()
        for i in range(runs):
            time.sleep(max(0.0, start + i * spacing - time.monotonic()))
            new_rows(admin, new)
            times.append(timed(fn))
        cpu = cpu_seconds(pid) - cpu0 if pid else None
        side.serial[new] = Serial(new, times, statements(admin, role).minus(before), cpu)


class ScrapeError(Exception):
    pass


SCRAPE_ERRORS = (OSError, http.client.HTTPException, ScrapeError)


class Scraper:
    """One scraper's connection, kept alive where the server allows it, reopened where not.

    http.client rather than requests: the client's own cost is in every figure, for both
    exporters alike, so it should be small.
    """

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self) -> bytes:
        """One scrape as Prometheus asks for it; the body as sent (gzipped when so encoded)."""
        try:
            self.conn.request("GET", "/metrics", headers=PROMETHEUS_HEADERS)
            response = self.conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            raise
        if response.status != 200:
            raise ScrapeError(f"HTTP {response.status}")
        return body

    def text(self) -> str:
        body = self.get()
        return (gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body).decode()


def _scrape_until(port: int, ready: Any, go: Any, end: Any, results: Any) -> None:
    """One concurrent scraper (its own process): scrape from ``go`` until ``end``."""
    scraper = Scraper(port)
    ready.release()
    go.wait()
    latencies: list[float] = []
    errors = 0
    while (start := time.monotonic()) < end.value:
        try:
            scraper.get()
        except SCRAPE_ERRORS:
            errors += 1
            continue
        if (done := time.monotonic()) <= end.value:  # only scrapes finished in the window
            latencies.append(done - start)
    results.put((latencies, errors))


def concurrent(port: int) -> tuple[float, float, int]:
    """Scrapes/s, p95 and errors of CONCURRENT_SCRAPERS scrapers for CONCURRENT_SECONDS.

    Each scraper is a process: threads of one Python process share its GIL, which capped both
    exporters at the same ~480 scrapes/s and measured the client, not the server.
    """
    ctx = multiprocessing.get_context("spawn")  # this process holds threads and connections
    ready, go, end, results = ctx.Semaphore(0), ctx.Event(), ctx.Value("d", 0.0), ctx.Queue()
    procs = [ctx.Process(target=_scrape_until, args=(port, ready, go, end, results))
             for _ in range(CONCURRENT_SCRAPERS)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            if not ready.acquire(timeout=120):
                raise RuntimeError("a scraper process did not start within 120 s")
        end.value = time.monotonic() + CONCURRENT_SECONDS
        go.set()
        out = [results.get(timeout=CONCURRENT_SECONDS + 120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    latencies = [t for ts, _ in out for t in ts]
    return (len(latencies) / CONCURRENT_SECONDS, pct(latencies, 0.95),
            sum(e for _, e in out))


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> float:
    """Block until the port accepts a connection; return that moment (monotonic)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return time.monotonic()
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen within 120 s")
        time.sleep(0.02)


def wait_until(scraper: Scraper, proc: subprocess.Popen[bytes], what: str,
               ready: Callable[[str], bool], timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = scraper.text()
            if ready(text):
                return text
        except SCRAPE_ERRORS:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout:.0f} s")
        time.sleep(0.05)


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------------------------
# The three sides


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


def peer_venv(data: Path) -> tuple[Path, str]:
    """query-exporter in its own venv (never the project's), installed once; its versions."""
    venv = data / "qe-venv"
    exe = venv / "bin" / "query-exporter"
    psycopg_version = importlib.metadata.version("psycopg")  # the same driver on both sides
    wanted = [f"query-exporter=={PEER_VERSION}", f"psycopg[binary]=={psycopg_version}"]

    def versions() -> str:
        out = subprocess.run(
            [str(venv / "bin" / "python"), "-c",
             "import importlib.metadata as m; print(*(m.version(d) for d in"
             " ('query-exporter', 'SQLAlchemy', 'psycopg', 'prometheus-client')))"],
            capture_output=True, text=True, check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    have = versions() if exe.exists() else ""
    if have.split(" ")[:1] != [PEER_VERSION] or have.split(" ")[2:3] != [psycopg_version]:
        log(f"  installing {' '.join(wanted)} into {venv}")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *wanted],
                       check=True)
        have = versions()
    qe, sqlalchemy, driver, client = have.split(" ")
    return exe, (f"query-exporter {qe} (SQLAlchemy {sqlalchemy}, psycopg {driver},"
                 f" prometheus_client {client})")


def peer_config(dsn: str) -> dict[str, Any]:
    """query-exporter's configuration: the floor's statements, each every PEER_INTERVAL_S."""
    metrics: dict[str, Any] = {}
    for q in FLOOR:
        for m in q.metrics:
            metrics[m] = {"type": "gauge", "description": f"{q.name}: {m}"}
            if q.labels:
                metrics[m]["labels"] = list(q.labels)
    return {
        "databases": {"bench": {"dsn": dsn}},
        "metrics": metrics,
        "queries": {q.name: {"interval": PEER_INTERVAL_S, "databases": ["bench"],
                             "metrics": list(q.metrics), "sql": q.sql} for q in FLOOR},
    }


class _BlockDumper(yaml.SafeDumper):
    """Writes the SQL as YAML literal blocks, so the configuration reads like the floor."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def peer_ready(text: str) -> bool:
    """Every floor statement has succeeded at least once."""
    done = {s.labels.get("query") for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "queries_total" and s.labels.get("status") == "success" and s.value}
    return done >= {q.name for q in FLOOR}


def peer_executions(text: str) -> float:
    """How many floor statements query-exporter has run, by its own queries_total."""
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "queries_total")


def run_peer(admin: psycopg.Connection[Any], dsn: str, exe: Path, config: Path,
             args: argparse.Namespace, workdir: Path) -> Side:
    side = Side("query-exporter")
    side.truth = spot_truth(admin)  # no rows are written from here until its serial runs
    config.write_text(yaml.dump(peer_config(dsn), Dumper=_BlockDumper, sort_keys=False,
                                width=100, allow_unicode=True))
    port = free_port()
    proc = subprocess.Popen(
        [str(exe), "--config", str(config), "-H", "127.0.0.1", "-p", str(port), "-L", "warning"],
        stderr=open(workdir / "query-exporter.log", "ab"),  # noqa: SIM115
    )
    scraper = Scraper(port)
    try:
        wait_listening(port, proc, "query-exporter")
        text = wait_until(scraper, proc, "query-exporter", peer_ready)
        side.spot = sample(text, "floor_rows", operation_type=SPOT[0], status=SPOT[1])
        side.rss_ready = peak_rss(proc.pid)
        serial_runs(side, admin, "qe", scraper.get, args.scrapes,
                    (0, args.new_rows), proc.pid)
        side.rate, side.rate_p95, side.errors = concurrent(port)
        side.rss = peak_rss(proc.pid)
        # Its statements during the serial runs were background ones, none caused by a scrape;
        # what the background costs is measured apart, with nobody scraping.
        for s in side.serial.values():
            s.stmts = Statements(0, 0, 0.0)
        started, stmts0, cpu0 = time.monotonic(), statements(admin, "qe"), cpu_seconds(proc.pid)
        done0 = peer_executions(scraper.text())
        time.sleep(PEER_IDLE_S)
        done1 = peer_executions(scraper.text())
        side.background = Background(statements(admin, "qe").minus(stmts0),
                                     cpu_seconds(proc.pid) - cpu0, time.monotonic() - started,
                                     done1 - done0)
    finally:
        stop(proc)
    return side


def ours_ready(text: str) -> bool:
    return all(f'customer_sync_exporter_collector_success{{collector="{c}"}} 1.0' in text
               for c in ("synclog", "business", "postgres"))


def run_ours(admin: psycopg.Connection[Any], dsn: str, args: argparse.Namespace,
             workdir: Path) -> Side:
    side = Side("this exporter")
    port = free_port()
    config = workdir / "config.yaml"
    config.write_text(
        f"scrape_timeout: 30s\ndatabase:\n  dsn: {dsn}\n  required: true\n"
        "collectors:\n  synclog: {enabled: true}\n  business: {enabled: true}\n"
        "  postgres: {enabled: true, application_names: [customer-sync-exporter]}\n"
        "  redis: {enabled: false}\n  disk: {enabled: false}\n  onec: {enabled: false}\n"
        "  process: {enabled: false}\n"
    )
    exe = Path(sys.executable).parent / "customer-sync-exporter"
    proc = subprocess.Popen(
        [str(exe), "serve", "--config.file", str(config),
         "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warning"],
        stderr=open(workdir / "exporter.log", "ab"),  # noqa: SIM115
    )
    scraper = Scraper(port)
    try:
        listening = wait_listening(port, proc, "this exporter")
        text = wait_until(scraper, proc, "this exporter", ours_ready)
        side.startup_s = time.monotonic() - listening
        side.rss_ready = peak_rss(proc.pid)
        side.truth = spot_truth(admin)
        side.spot = sample(text, "customer_sync_operations_total", operation_type=SPOT[0],
                           status=SPOT[1])
        serial_runs(side, admin, "exporter", scraper.get, args.scrapes,
                    (0, args.new_rows), proc.pid)
        side.rate, side.rate_p95, side.errors = concurrent(port)
        side.rss = peak_rss(proc.pid)
    finally:
        stop(proc)
    return side


# ---------------------------------------------------------------------------------------------
# Report


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


# ---------------------------------------------------------------------------------------------


def machine(pg: EmbeddedPostgres) -> str:
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal:"))
    os_name = next((line.split("=", 1)[1].strip('"') for line in
                    Path("/etc/os-release").read_text().splitlines()
                    if line.startswith("PRETTY_NAME=")), platform.system())
    with psycopg.connect(pg.dsn("postgres")) as conn:
        (version,) = conn.execute("SHOW server_version").fetchone()  # type: ignore[misc]
    return (f"{time.strftime('%Y-%m-%d %H:%M %Z')}; {os.cpu_count()} cores, "
            f"{mem / 2**20:.0f} GiB, {os_name}, embedded PostgreSQL {version}, "
            f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f}")


def run_size(pg: EmbeddedPostgres, rows: int, days: float, args: argparse.Namespace,
             peer: tuple[Path, str], data: Path) -> Result:
    name = f"bench_{rows}"
    dsn = pg.create_database(name)
    log(f"== {rows:,} rows over {days:g} days ({rows / days:,.0f} per 24 h), "
        f"{args.conflicts:,} conflicts, {USERS:,} users")
    load(dsn, rows, days, args.conflicts)
    load_start = os.getloadavg()[0]
    with psycopg.connect(dsn, autocommit=True) as admin:
        ensure_roles(admin, ("floor", "qe", "exporter"))
        url = {r: f"postgresql://{r}:{ROLE_PASSWORD}@127.0.0.1:{pg.port}/{name}"
               for r in ("floor", "exporter")}
        qe_dsn = (f"postgresql+psycopg://qe:{ROLE_PASSWORD}@127.0.0.1:{pg.port}/{name}"
                  "?application_name=query-exporter")
        log("  floor ...")
        floor = run_floor(admin, url["floor"], args)
        with tempfile.TemporaryDirectory() as tmp:
            log("  query-exporter ...")
            peer_side = run_peer(admin, qe_dsn, peer[0], data / f"query-exporter-{rows}.yaml",
                                 args, Path(tmp))
            log("  this exporter ...")
            ours = run_ours(admin, url["exporter"], args, Path(tmp))
    res = Result(rows, days, floor, peer_side, ours, data / f"query-exporter-{rows}.yaml",
                 load_start, os.getloadavg()[0])
    report(res, args, peer[1])
    return res


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--rows", default="1000000,10000000",
                   help="comma-separated table sizes (default: 1M and 10M)")
    p.add_argument("--days", default="30,10",
                   help="days each size's rows span, comma-separated like --rows, or one value"
                        " for all (default: 1M over 30 days, 10M at 1M per 24 h)")
    p.add_argument("--conflicts", type=int, default=1_000_000)
    p.add_argument("--new-rows", type=int, default=1000)
    p.add_argument("--scrapes", type=int, default=20, help="serial scrapes per exporter run")
    p.add_argument("--floor-scrapes", type=int, default=20, help="serial floor scrapes per run")
    p.add_argument("--data-dir", default=".bench")
    args = p.parse_args(argv)
    try:
        args.sizes = [int(r) for r in args.rows.split(",")]
        days = [float(d) for d in args.days.split(",")]
    except ValueError as exc:
        p.error(f"--rows/--days: {exc}")
    if len(days) == 1:
        days *= len(args.sizes)
    if len(days) != len(args.sizes):
        p.error(f"--days has {len(days)} values for {len(args.sizes)} sizes in --rows")
    if min(args.sizes) < 1 or min(days) <= 0:
        p.error("--rows and --days must be positive")
    if args.new_rows < 1 or args.scrapes < 1 or args.floor_scrapes < 1:
        p.error("--new-rows, --scrapes and --floor-scrapes must be at least 1")
    args.spans = days
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data = Path(args.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    peer = peer_venv(data)
    pg = EmbeddedPostgres(data / "pg", port=free_port(),
                          settings={"shared_buffers": "1GB", "work_mem": "64MB",
                                    "max_parallel_workers_per_gather": "2"}).start()
    try:
        log(f"# {machine(pg)}")
        log(f"# {peer[1]}; collectors synclog + business + postgres; {args.scrapes} serial "
            f"scrapes ({args.floor_scrapes} for the floor), then {CONCURRENT_SCRAPERS} scrapers "
            f"for {CONCURRENT_SECONDS:g} s")
        results = [run_size(pg, rows, days, args, peer, data)
                   for rows, days in zip(args.sizes, args.spans, strict=True)]
    finally:
        pg.stop()
    return 0 if print_targets(results, args) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
