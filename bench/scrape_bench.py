"""Scrape cost of the exporter against a raw-SQL floor, on the same PostgreSQL, in one run.

    .venv/bin/python bench/scrape_bench.py --rows 1000000,10000000

For each size it loads the FREESPORT tables (its own generator, in the DATA.md shapes: 1C-import
rows without duration, sync-logger rows with durations and details, resolver conflicts),
``--rows-per-day`` rows in every 24 h so the 24h window holds that many, plus ``--conflicts``
rows of common_syncconflict. Then it starts the exporter as a separate process (synclog and
business collectors, as in production) and prints, next to the floor (the same windows and
totals computed by SQL on one psycopg connection, the way query-exporter does it):

* start-up time to warm vs one full scan of the table,
* scrape median and p95 over ``--scrapes`` scrapes, with 0 and with ``--new-rows`` new rows
  written before every scrape,
* database execution time per scrape from pg_stat_statements (each side uses its own role),
* 10 concurrent scrapers for 10 s: scrapes/s and p95,
* peak RSS of the exporter process (VmHWM).

The data directory is kept (``--data-dir``, default ``.bench/``) so a size is loaded only once.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.demo.ports import free_port
from exporter.demo.postgres import EmbeddedPostgres

USERS = 50_000
ROLE_PASSWORD = "bench"

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

# What query-exporter-style monitoring runs on every scrape: windows, totals and percentiles.
FLOOR = [
    """SELECT operation_type, status, count(*),
        count(*) FILTER (WHERE created_at > now() - interval '5 minutes'),
        count(*) FILTER (WHERE created_at > now() - interval '1 hour'),
        count(*) FILTER (WHERE created_at > now() - interval '24 hours'),
        max(created_at)
       FROM common_customersynclog GROUP BY 1, 2""",
    """SELECT operation_type,
        percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration_ms)
            FILTER (WHERE created_at > now() - interval '5 minutes'),
        percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration_ms)
            FILTER (WHERE created_at > now() - interval '1 hour'),
        percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration_ms)
            FILTER (WHERE created_at > now() - interval '24 hours'),
        count(DISTINCT customer_id) FILTER (WHERE status = 'success'
            AND created_at > now() - interval '24 hours')
       FROM common_customersynclog WHERE duration_ms IS NOT NULL OR status = 'success'
       GROUP BY 1""",
    """SELECT coalesce(details->>'conflict_source', 'unknown'), status, count(*)
       FROM common_customersynclog WHERE operation_type = 'conflict_resolution' GROUP BY 1, 2""",
    """SELECT conflict_type, resolution_strategy, is_resolved, count(*)
       FROM common_syncconflict GROUP BY 1, 2, 3""",
]


def log(msg: str) -> None:
    print(msg, flush=True)


def load(dsn: str, rows: int, per_day: int, conflicts: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Rows a previous run added while measuring are removed, so every run starts equal.
        conn.execute("DELETE FROM common_customersynclog WHERE id > %s", (rows,))
        (have,) = conn.execute("SELECT count(*) FROM common_customersynclog").fetchone()  # type: ignore[misc]
        (in_window,) = conn.execute(
            "SELECT count(*) FROM common_customersynclog"
            " WHERE created_at > now() - interval '24 hours'").fetchone()  # type: ignore[misc]
        if have == rows and in_window <= per_day * 1.1:
            log(f"  {rows:,} rows already loaded")
            return
        conn.execute("TRUNCATE common_customersynclog, common_syncconflict, users"
                     " RESTART IDENTITY CASCADE")
        conn.execute(USERS_INSERT.format(users=USERS))
        span_s = rows / per_day * 86400
        step = 1_000_000
        started = time.monotonic()
        for lo in range(1, rows + 1, step):
            hi = min(rows, lo + step - 1)
            conn.execute(LOG_INSERT.format(users=USERS, end_ts="now()", span_s=span_s, lo=lo,
                                           hi=hi, n=rows))
            log(f"  loaded {hi:,} rows ({time.monotonic() - started:.0f}s)")
        conn.execute(CONFLICTS_INSERT.format(users=USERS, n=conflicts))
        conn.execute("VACUUM ANALYZE")


def new_rows(conn: psycopg.Connection[Any], n: int) -> None:
    if n:
        conn.execute(LOG_INSERT.format(users=USERS, end_ts="now()", span_s=0, lo=1, hi=n, n=n))


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def db_ms(conn: psycopg.Connection[Any], role: str) -> float:
    (ms,) = conn.execute(
        "SELECT coalesce(sum(total_exec_time), 0) FROM pg_stat_statements s"
        " JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = %s", (role,)
    ).fetchone()  # type: ignore[misc]
    return float(ms)


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, round(q * (len(values) - 1)))]


def start_exporter(dsn: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = workdir / "config.yaml"
    config.write_text(
        f"scrape_timeout: 30s\ndatabase:\n  dsn: {dsn}\n  required: true\n"
        "collectors:\n  postgres: {enabled: false}\n  redis: {enabled: false}\n"
        "  disk: {enabled: false}\n  onec: {enabled: false}\n  process: {enabled: false}\n"
    )
    exe = Path(sys.executable).parent / "customer-sync-exporter"
    proc = subprocess.Popen(
        [str(exe), "serve", "--config.file", str(config),
         "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warning"],
        stderr=open(workdir / "exporter.log", "ab"),  # noqa: SIM115
    )
    return proc, port


def scrape(session: requests.Session, port: int) -> str:
    r = session.get(f"http://127.0.0.1:{port}/metrics", timeout=60)
    r.raise_for_status()
    return r.text


def warm(session: requests.Session, port: int, proc: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    while True:
        try:
            text = scrape(session, port)
            if ('customer_sync_exporter_collector_success{collector="synclog"} 1.0' in text
                    and 'customer_sync_exporter_collector_success{collector="business"} 1.0'
                    in text):
                return time.monotonic() - started
        except requests.RequestException:
            pass
        if proc.poll() is not None:
            raise RuntimeError("exporter exited")
        time.sleep(0.05)


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def concurrent(port: int, seconds: float = 10.0, workers: int = 10) -> tuple[float, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def worker() -> None:
        s = requests.Session()
        while time.monotonic() < end:
            t = timed(lambda: scrape(s, port))
            with lock:
                latencies.append(t)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies) / seconds, pct(latencies, 0.95)


def run_size(pg: EmbeddedPostgres, rows: int, args: argparse.Namespace) -> dict[str, float]:
    name = f"bench_{rows}"
    dsn = pg.create_database(name)
    log(f"== {rows:,} rows ({args.rows_per_day:,} per 24 h), {args.conflicts:,} conflicts")
    load(dsn, rows, args.rows_per_day, args.conflicts)
    admin = psycopg.connect(dsn, autocommit=True)
    for role in ("exporter", "floor"):
        if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{ROLE_PASSWORD}'"
                          " IN ROLE pg_read_all_stats")
        admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    as_role = {r: f"postgresql://{r}:{ROLE_PASSWORD}@127.0.0.1:{pg.port}/{name}"
               for r in ("exporter", "floor")}
    out: dict[str, float] = {}
    floor = psycopg.connect(as_role["floor"], autocommit=True)
    # created_at has no index, so this reads every row: one full scan of the table.
    out["full_scan_s"] = min(
        timed(lambda: floor.execute(
            "SELECT count(*), max(created_at) FROM common_customersynclog").fetchone())
        for _ in range(2)
    )

    def floor_scrape() -> None:
        for q in FLOOR:
            floor.execute(q).fetchall()

    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_exporter(as_role["exporter"], Path(tmp))
        session = requests.Session()
        try:
            out["startup_s"] = warm(session, port, proc)
            for new in (0, args.new_rows):
                for side, role, fn in (
                    ("exporter", "exporter", lambda: scrape(session, port)),
                    ("floor", "floor", floor_scrape),
                ):
                    runs = args.scrapes if side == "exporter" else args.floor_scrapes
                    admin.execute("SELECT pg_stat_statements_reset()")
                    times = []
                    for _ in range(runs):
                        new_rows(admin, new)
                        times.append(timed(fn))
                    out[f"{side}_new{new}_median_s"] = statistics.median(times)
                    out[f"{side}_new{new}_p95_s"] = pct(times, 0.95)
                    out[f"{side}_new{new}_db_ms"] = db_ms(admin, role) / runs
            rate, p95 = concurrent(port)
            out["concurrent_scrapes_per_s"] = rate
            out["concurrent_p95_s"] = p95
            out["peak_rss_mib"] = peak_rss(proc.pid) / 2**20
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    floor.close()
    admin.close()
    report(rows, out, args)
    return out


def report(rows: int, o: dict[str, float], args: argparse.Namespace) -> None:
    log(f"-- results at {rows:,} rows")
    log(f"start-up to warm        {o['startup_s']:8.2f} s   one full scan "
        f"{o['full_scan_s']:.2f} s   ratio {o['startup_s'] / o['full_scan_s']:.2f}x")
    for new in (0, args.new_rows):
        e_med, f_med = o[f"exporter_new{new}_median_s"], o[f"floor_new{new}_median_s"]
        e_db, f_db = o[f"exporter_new{new}_db_ms"], o[f"floor_new{new}_db_ms"]
        log(f"{new:>5} new rows/scrape: exporter median {e_med * 1000:8.2f} ms "
            f"p95 {o[f'exporter_new{new}_p95_s'] * 1000:8.2f} ms | floor median "
            f"{f_med * 1000:9.1f} ms p95 {o[f'floor_new{new}_p95_s'] * 1000:9.1f} ms | "
            f"median ratio 1/{f_med / e_med:.0f}")
        log(f"{'':>5}  DB exec per scrape: exporter {e_db:8.3f} ms | floor {f_db:9.1f} ms | "
            f"ratio {100 * e_db / f_db:.3f} %")
    log(f"10 concurrent scrapers  {o['concurrent_scrapes_per_s']:8.1f} scrapes/s   "
        f"p95 {o['concurrent_p95_s'] * 1000:.1f} ms")
    log(f"exporter peak RSS       {o['peak_rss_mib']:8.1f} MiB")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="1000000,10000000",
                   help="comma-separated table sizes (default: 1M and 10M)")
    p.add_argument("--rows-per-day", type=int, default=1_000_000)
    p.add_argument("--conflicts", type=int, default=1_000_000)
    p.add_argument("--new-rows", type=int, default=1000)
    p.add_argument("--scrapes", type=int, default=20)
    p.add_argument("--floor-scrapes", type=int, default=20)
    p.add_argument("--data-dir", default=".bench")
    args = p.parse_args()
    data = Path(args.data_dir).resolve()
    pg = EmbeddedPostgres(data / "pg", port=free_port(),
                          settings={"shared_buffers": "1GB", "work_mem": "64MB",
                                    "max_parallel_workers_per_gather": "2"}).start()
    try:
        for rows in (int(r) for r in args.rows.split(",")):
            run_size(pg, rows, args)
    finally:
        pg.stop()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
