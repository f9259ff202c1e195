"""What a soak measures after each scrape: the exporter's RSS, fds, database sessions, series.

Scrapes like Prometheus (one keep-alive connection), reads the process with psutil and its
PostgreSQL sessions from ``pg_stat_activity``, and runs retention on the same connection, so the
log table stays bounded as ``cleanup_sync_logs`` keeps it in production.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
import psycopg
import requests

from bench.soak.exporter_process import APP_NAME

DELETE_BATCH = 1000  # cleanup_sync_logs' SYNC_LOG_BATCH_SIZE
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


@dataclass
class Sample:
    t: float  # seconds since the exporter first answered
    rss: int
    fds: int
    db_conns: int
    series: int
    scrape_s: float
    ok: bool


def parse_samples(text: str) -> Iterator[tuple[str, str, float]]:
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            yield m.group(1), m.group(2) or "", float(m.group(3))


def series_count(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


class Probe:
    """Scrapes like Prometheus (one keep-alive connection) and reads the exporter's figures."""

    def __init__(self, port: int, pid: int, dsn: str) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.session = requests.Session()
        self.process = psutil.Process(pid)
        self.db = psycopg.connect(dsn, autocommit=True, application_name="customer-sync-soak")

    def scrape(self) -> tuple[bool, float, str]:
        started = time.perf_counter()
        try:
            r = self.session.get(self.url, timeout=30)
            ok, text = r.status_code == 200, r.text
        except requests.RequestException as exc:
            ok, text = False, f"{type(exc).__name__}: {exc}"
        return ok, time.perf_counter() - started, text

    def db_conns(self) -> int:
        (n,) = self.db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (APP_NAME,)
        ).fetchone()  # type: ignore[misc]
        return int(n)

    def log_rows(self) -> int:
        (n,) = self.db.execute("SELECT count(*) FROM common_customersynclog").fetchone()  # type: ignore[misc]
        return int(n)

    def sample(self, t: float) -> tuple[Sample, str]:
        ok, took, text = self.scrape()
        sample = Sample(
            t=t, rss=self.process.memory_info().rss, fds=self.process.num_fds(),
            db_conns=self.db_conns(), series=series_count(text) if ok else 0, scrape_s=took, ok=ok,
        )
        return sample, text

    def retention(self, keep_seconds: float) -> int:
        """``cleanup_sync_logs``: delete rows older than the retention, 1000 at a time."""
        deleted = 0
        while True:
            cur = self.db.execute(
                "DELETE FROM common_customersynclog WHERE id IN (SELECT id FROM"
                " common_customersynclog WHERE created_at < now() - make_interval(secs => %s)"
                " ORDER BY id LIMIT %s)", (keep_seconds, DELETE_BATCH),
            )
            deleted += cur.rowcount
            if cur.rowcount < DELETE_BATCH:
                return deleted

    def close(self) -> None:
        self.session.close()
        self.db.close()
