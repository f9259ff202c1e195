"""Soak: the demo traffic at 20x speed against the exporter running as its own process.

    .venv/bin/python bench/soak.py                      # 30 minutes, report every minute
    .venv/bin/python bench/soak.py --duration 60s --report-every 10s --windows 3s,6s,12s

Why: exporters are known to creep to gigabytes over weeks (query-exporter#187, celery-exporter
#263, postgres_exporter#363). This runs the whole demo stack (real PostgreSQL, Redis with a
real Celery worker and beat, the 1C stand-in with its outage cycle, import processes, a log folder)
with the traffic model's clock at ``--speed`` times real time, starts
``customer-sync-exporter serve`` as a separate process (so its RSS is its own) and scrapes it
every ``--scrape-interval``. Every ``--report-every`` it prints one ``[soak] elapsed=...`` line:
the exporter's RSS, open file descriptors and PostgreSQL connections, the series in the scrape,
the rows in the log table and the scrape p95 over the interval.

Windows: the exporter's sliding windows are configured short (``5m`` and ``1h`` divided by the
speed, the ``24h`` one shortened to at most a fifth of the run), so they fill during warm-up and
then slide: rows enter and leave every window thousands of times per run. Retention deletes log
rows older than ``--retention`` (default twice the longest window) every report interval, in
batches of 1000 like ``cleanup_sync_logs``, so the table stays bounded as in production.

Verdict (exit 1 on any failure, 0 otherwise, 2 for bad arguments):

* warm-up ends at ``--warmup`` (default: the longer of 20 % of the run and the longest window,
  i.e. the time the longest window needs to fill); it must end within the first third;
* RSS: the median of the per-scrape RSS samples in the last report interval may exceed the
  median in the report interval that ends warm-up by at most ``--rss-slack`` (3 %);
* fds, DB connections, series: the maximum over the last third of the run may exceed the maximum
  over the middle third by at most a small slack (2 fds, 1 connection, 2 % of the series);
* DB connections never exceed the pool size plus the start-up pass's own connection;
* no scrape fails, and the exporter exits 0 on SIGTERM at the end;
* ground truth after the traffic stops: every window's ``customer_sync_recent_operations`` sum
  equals ``count(*)`` of the rows in that window by SQL (bounded by the database clock read just
  before and after the scrape), and ``customer_sync_operations_total`` sums to every row the
  traffic wrote, deleted ones included (no row lost or counted twice over the whole run).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.soak.run import main

if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main())
