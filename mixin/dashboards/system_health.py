"""The "System health" dashboard: the exporters and everything the sync depends on."""

from __future__ import annotations

from typing import Any

from mixin.dashboards.panels import (
    CRIT,
    NEUTRAL,
    OK,
    OK_MAPPINGS,
    RATE,
    UP_MAPPINGS,
    WARN,
    Context,
    Panel,
    Q,
    Row,
    dashboard,
    pct,
)
from mixin.render import number


def _up(title: str, metric: str, description: str, alert: str) -> Panel:
    return Panel(title, "stat", [Q(f"min({metric}{{$SEL}})")], "bool_on_off", description,
                 width=4, height=4, mappings=UP_MAPPINGS, steps_base=CRIT, steps=[(OK, 1)],
                 alert=alert)


def up(ctx: Context) -> Row:
    days = ctx.t.onec_certificate_days
    return Row("Up", [
        _up("Exporter scraped", "up", "Prometheus can scrape the exporter (up).",
            "CustomerSyncExporterDown"),
        _up("PostgreSQL", "customer_sync_postgres_up",
            "The exporter reaches the FREESPORT database.", "CustomerSyncPostgresDown"),
        _up("Redis", "customer_sync_redis_up", "The exporter reaches Redis, the Celery broker.",
            "CustomerSyncRedisDown"),
        _up("1C HTTP service", "customer_sync_onec_up",
            "The 1C HTTP-service probe answers as expected.", "CustomerSyncOneCDown"),
        Panel("1C certificate expires in", "stat",
              [Q("min(customer_sync_onec_tls_cert_expiry_timestamp_seconds{$SEL}) - time()")],
              "s", f"Time left on the 1C HTTPS certificate. Ticket below {number(days)} days.",
              width=4, height=4, steps_base=CRIT, steps=[(OK, days * 86400)],
              alert="CustomerSyncOneCCertificateExpiring"),
        Panel("Exporter version", "stat",
              [Q("max by (version, python_version) (customer_sync_exporter_build_info{$SEL})",
                 "{{version}} (Python {{python_version}})", instant=True)],
              "none", "customer_sync_exporter_build_info.", width=4, height=4,
              steps_base=NEUTRAL),
    ])  # fmt: skip


def collectors(ctx: Context) -> Row:
    ratio = ctx.t.collector_success_ratio
    return Row("Collectors", [
        Panel("Collector success", "state-timeline",
              [Q("min by (collector) (customer_sync_exporter_collector_success{$SEL})",
                 "{{collector}}")],
              "bool_yes_no", "1 when the collector's last run succeeded. Ticket when a "
              f"collector succeeds in fewer than {pct(ratio)} of the scrapes of 10 minutes.",
              mappings=OK_MAPPINGS, steps_base=CRIT, steps=[(OK, ratio)],
              alert="CustomerSyncCollectorFailing"),
        Panel("Collector failures by reason", "timeseries",
              [Q("max by (collector, reason) (customer_sync_exporter_collector_failure{$SEL})",
                 "{{collector}}: {{reason}}")],
              "short", "1 for the reason of a collector's failing run (timeout, connect, auth, "
              "query, http, tls, io, ...), 0 otherwise.", alert="CustomerSyncCollectorFailing",
              min=0),
        Panel("Collector duration", "timeseries",
              [Q("max by (collector) (customer_sync_exporter_collector_duration_seconds{$SEL})",
                 "{{collector}}")],
              "s", "How long each collector's last run took.", min=0),
        Panel("Time since the collector last succeeded", "bargauge",
              [Q("time() - min by (collector) "
                 "(customer_sync_exporter_collector_last_success_timestamp_seconds{$SEL})",
                 "{{collector}}", instant=True)],
              "s", "A growing value means the collector's metrics are stale.",
              steps_base=NEUTRAL),
    ])  # fmt: skip


def postgres_redis(ctx: Context) -> Row:
    t = ctx.t
    return Row("PostgreSQL and Redis", [
        Panel("PostgreSQL connection usage", "timeseries",
              [Q("max by (shop) "
                 "(instance:customer_sync_postgres_connections:usage_ratio{$SEL})",
                 "{{shop}}")],
              "percentunit", "Client connections / connections ordinary roles may open, per "
              f"shop. Ticket above {pct(t.postgres_connections_warning)}, page above "
              f"{pct(t.postgres_connections_critical)}.",
              steps=[(WARN, t.postgres_connections_warning),
                     (CRIT, t.postgres_connections_critical)],
              alert="CustomerSyncPostgresConnectionsHigh", min=0, max=1),
        Panel("PostgreSQL connections by state", "timeseries", [
            Q("sum by (state) (customer_sync_postgres_connections{$SEL})", "{{state}}"),
            Q("max(customer_sync_postgres_connections_usable{$SEL})", "usable")],
            "short", "Connections by state, against what ordinary roles may open.", min=0),
        Panel("Redis memory", "timeseries", [
            Q("max by (shop) (customer_sync_redis_memory_used_bytes{$SEL})",
              "used {{shop}}")],
            "bytes", "Memory Redis uses (used_memory).", min=0),
        Panel("Redis queues", "timeseries",
              [Q("max by (shop, queue) (customer_sync_redis_queue_length{$SEL})",
                 "{{shop}} {{queue}}")],
              "short", "Celery messages waiting per shop and queue (priority sub-queues summed). "
              f"Ticket above {number(t.queue_items)}.", steps=[(CRIT, t.queue_items)],
              alert="CustomerSyncQueueBacklog",
              min=0),
    ])  # fmt: skip


def log_folders(ctx: Context) -> Row:
    t = ctx.t
    return Row("Log folders", [
        Panel("Log folder filesystem used", "timeseries",
              [Q("max by (shop, dir) (1 - customer_sync_log_dir_filesystem_free_bytes{$SEL} "
                 "/ customer_sync_log_dir_filesystem_size_bytes{$SEL})", "{{shop}} {{dir}}")],
              "percentunit", "Share of the filesystem holding each log folder that is used. "
              f"Ticket above {pct(t.log_disk_used_warning)}, page above "
              f"{pct(t.log_disk_used_critical)}.",
              steps=[(WARN, t.log_disk_used_warning), (CRIT, t.log_disk_used_critical)],
              alert="CustomerSyncLogDiskAlmostFull", min=0, max=1),
        Panel("Log folder size", "timeseries",
              [Q("max by (shop, dir) (customer_sync_log_dir_bytes{$SEL})", "{{shop}} {{dir}}")],
              "bytes", "Apparent size of the files in each configured log folder.", min=0),
        Panel("Log folder files", "timeseries",
              [Q("max by (shop, dir) (customer_sync_log_dir_files{$SEL})", "{{shop}} {{dir}}")],
              "short", "Files in each log folder.", min=0),
        Panel("Log folder free space", "timeseries",
              [Q("max by (shop, dir) (customer_sync_log_dir_filesystem_free_bytes{$SEL})",
                 "{{shop}} {{dir}}")],
              "bytes", "Bytes free on the filesystem of each log folder; a steady fall is what "
              "CustomerSyncLogDiskFillingUp predicts.", alert="CustomerSyncLogDiskFillingUp",
              min=0),
    ])  # fmt: skip


def onec_processes(ctx: Context) -> Row:
    return Row("1C and processes", [
        Panel("1C probe latency by phase", "timeseries",
              [Q("max by (phase) (customer_sync_onec_probe_duration_seconds{$SEL})",
                 "{{phase}}")],
              "s", "DNS, connect, TLS, processing and transfer time of the last 1C probe.",
              alert="CustomerSyncOneCDown", min=0),
        Panel("1C HTTP status", "timeseries",
              [Q("max by (shop) (customer_sync_onec_http_status_code{$SEL})",
                 "{{shop}}")],
              "none", "HTTP status code of the last 1C probe (0 when no answer came).",
              steps=[(WARN, 300), (CRIT, 400)], alert="CustomerSyncOneCDown"),
        Panel("Worker process memory", "timeseries", [
            Q("sum by (group) (customer_sync_process_resident_memory_bytes{$SEL})", "{{group}}"),
            Q("max by (shop) (process_resident_memory_bytes{$SEL})",
              "exporter {{shop}}")],
            "bytes", "Resident memory of the Celery workers and 1C import commands, per group, "
            "and of the exporter itself.", min=0),
        Panel("Worker processes", "timeseries",
              [Q("sum by (group) (customer_sync_processes{$SEL})", "{{group}}")],
              "short", "Processes matched per group.", min=0),
    ])  # fmt: skip


IMPORT_TASK = "apps.integrations.tasks.run_selective_import_task"
EVENTS_MAPPINGS = [{"type": "value", "options": {
    "0": {"text": "off", "color": WARN, "index": 0},
    "1": {"text": "on", "color": OK, "index": 1},
}}]  # fmt: skip
NONE_UP_MAPPINGS = [{"type": "value", "options": {"0": {"color": CRIT, "index": 0}}}]


def _hours(seconds: float) -> str:
    return f"{number(seconds / 3600)} h"


def celery_workers(ctx: Context) -> Row:
    """The celery collector's workers, from their heartbeats and inspect stats."""
    return Row("Celery workers", [
        Panel("Celery workers up / known", "stat", [
            Q("sum(customer_sync_celery_worker_up{$SEL})", "up"),
            Q("sum(customer_sync_celery_workers{$SEL})", "known")],
            "short", "Workers whose heartbeats arrive, and workers heard from within "
            "forget_worker_after (15 m), the selected exporters together. Red at 0; no worker "
            "up for 2 minutes pages.", width=4, height=6, mappings=NONE_UP_MAPPINGS,
            alert="CustomerSyncCeleryNoWorkerUp", decimals=0),
        Panel("Worker up", "state-timeline",
              [Q("max by (shop, worker) (customer_sync_celery_worker_up{$SEL})",
                 "{{shop}} {{worker}}")],
              "bool_on_off", "Per worker hostname: up while its newest heartbeat is younger "
              "than twice its heartbeat interval (4 s at Celery's default), down at once after "
              "worker-offline.", width=10, height=6, mappings=UP_MAPPINGS, steps_base=CRIT,
              alert="CustomerSyncCeleryNoWorkerUp"),
        Panel("Task events", "state-timeline",
              [Q("min by (shop, worker) (customer_sync_celery_worker_task_events_enabled{$SEL})",
                 "{{shop}} {{worker}}")],
              "bool_on_off", "Whether each worker sends task events (the exporter turns them "
              "on with enable_events unless told not to). Off: its tasks are not counted; a "
              "ticket after 10 minutes. Absent until known.", width=10, height=6,
              mappings=EVENTS_MAPPINGS, steps_base=WARN,
              alert="CustomerSyncCeleryWorkerTaskEventsOff"),
        Panel("Active tasks and pool size", "timeseries", [
            Q("sum by (shop, worker) (customer_sync_celery_worker_active_tasks{$SEL})",
              "active {{shop}} {{worker}}"),
            Q("max by (shop, worker) (customer_sync_celery_worker_pool_processes{$SEL})",
              "pool {{shop}} {{worker}}")],
            "short", "Tasks executing at each worker's newest heartbeat, against its pool "
            "processes (inspect stats). Active at the pool size for long: the worker is "
            "saturated; a long import shows here before its run time does.", width=8, min=0),
        Panel("Default queue and tasks processed", "timeseries", [
            Q('max by (shop) (customer_sync_redis_queue_length{$SEL, queue="celery"})',
              "waiting {{shop}}"),
            Q("sum by (shop) (rate(customer_sync_celery_worker_tasks_processed_total{$SEL}"
              + RATE + "))", "processed/s {{shop}}")],
            "short", "Messages waiting in the celery queue, and tasks the workers start per "
            "second (their heartbeats' processed, task events on or off). Waiting above 0 for "
            "5 minutes with nothing processed or running pages. A worker prefetches, so an "
            "idle shop's queue reads 0.", width=8,
            alert="CustomerSyncCeleryQueueNotConsumed", min=0),
        Panel("Worker peak memory", "timeseries",
              [Q("max by (shop, worker) "
                 "(customer_sync_celery_worker_peak_resident_memory_bytes{$SEL})",
                 "{{shop}} {{worker}}")],
              "bytes", "Peak resident memory of each worker's main process (getrusage maxrss, "
              "from inspect stats), workers on other hosts included; pool processes are not.",
              width=8, min=0),
    ])  # fmt: skip


def celery_tasks(ctx: Context) -> Row:
    """The celery collector's tasks, from task events: the 1C import and beat's schedule."""
    t = ctx.t
    imp = f'task="{IMPORT_TASK}"'
    periods = sorted({t.celery_cleanup_stale_import_sessions_period_seconds,
                      t.celery_clear_abandoned_carts_period_seconds,
                      t.celery_monitor_pending_verification_period_seconds})
    limits = " and ".join(_hours(2 * p) for p in periods)
    return Row("Celery tasks", [
        Panel("Task throughput by state", "timeseries",
              [Q("sum by (state) (rate(customer_sync_celery_tasks_total{$SEL}" + RATE + "))",
                 "{{state}}")],
              "ops", "Task events per second by state, every task: received, started, "
              "succeeded, failed, retried, rejected, revoked (one per attempt).", min=0),
        Panel("Queue wait p95 by task", "timeseries",
              [Q("histogram_quantile(0.95, sum by (shop, task, le) (rate("
                 "customer_sync_celery_task_queue_wait_seconds_bucket{$SEL}" + RATE + ")))",
                 "{{shop}} {{task}}")],
              "s", "From task-received (a worker took the message) to task-started (a pool "
              "process began it): how long tasks wait for a free process. Time in the broker "
              "queue before that is not included.", min=0),
        Panel("1C import task failure ratio (6h)", "timeseries",
              [Q(f"sum by (shop) (increase(customer_sync_celery_tasks_total{{$SEL, {imp}, "
                 'state="failed"}[6h])) / sum by (shop) (increase(customer_sync_celery_tasks_'
                 f'total{{$SEL, {imp}, state=~"succeeded|failed"}}[6h]))', "{{shop}}")],
              "percentunit", "Runs of run_selective_import_task that failed for good / runs "
              "that ended, over the last 6 hours (a retry is neither). Ticket above "
              f"{pct(t.celery_import_failure_ratio)}. Empty (NaN) while no run ended.",
              width=8, steps=[(WARN, t.celery_import_failure_ratio)],
              alert="CustomerSyncCeleryImportTaskFailing", min=0, max=1),
        Panel("1C import task run time (6h)", "timeseries", [
            Q(f"histogram_quantile({q}, sum by (shop, le) (increase("
              f"customer_sync_celery_task_runtime_seconds_bucket{{$SEL, {imp}}}[6h])))",
              f"p{round(q * 100)} {{{{shop}}}}")
            for q in (0.5, 0.95)],
            "s", "Run time of the import task's runs that ended in the last 6 hours, from the "
            "histogram (buckets up to 1 h). Ticket when p95 is above "
            f"{number(t.celery_import_runtime_p95_seconds)} s. A hung import never ends: see "
            "active tasks.", width=8, steps=[(WARN, t.celery_import_runtime_p95_seconds)],
            alert="CustomerSyncCeleryImportTaskSlow", min=0),
        Panel("Scheduled tasks: time since received and succeeded", "bargauge", [
            Q("time() - max by (shop, task) (customer_sync_celery_task_last_received_"
              "timestamp_seconds{$SEL}) and on (task) "
              "customer_sync:celery_task_schedule_period:seconds",
              "received {{shop}} {{task}}", instant=True),
            Q("time() - max by (shop, task) (customer_sync_celery_task_last_succeeded_"
              "timestamp_seconds{$SEL}) and on (task) "
              "customer_sync:celery_task_schedule_period:seconds",
              "succeeded {{shop}} {{task}}", instant=True)],
            "s", "The tasks beat schedules (customer_sync:celery_task_schedule_period:seconds): "
            "time since a worker last received each, and since it last succeeded. A ticket "
            f"when one is not received for two periods ({limits}). A task appears with its "
            "first run after the exporter started.", width=8, steps_base=NEUTRAL,
            alert="CustomerSyncCeleryScheduledTaskMissed"),
    ])  # fmt: skip


def alerts(ctx: Context) -> Row:
    return Row("Alerts", [
        Panel("Firing alerts", "table",
              [Q('sum by (alertname, severity, shop, instance) (ALERTS{alertstate="firing", '
                 'alertname=~"CustomerSync.*"})', instant=True)],
              "short", "Customer-sync alerts firing now, every shop (an alert about all of them, "
              "such as CustomerSyncExporterAbsent, has no shop); each has a runbook section.",
              width=24, height=8, steps_base=NEUTRAL),
    ])  # fmt: skip


def build(ctx: Context) -> dict[str, Any]:
    return dashboard(
        ctx, "customer-sync-system-health", "Customer sync / System health",
        "Is everything the sync depends on up: the exporters and their collectors, PostgreSQL, "
        "Redis, log folders, the 1C HTTP service, worker processes, Celery, firing alerts.",
        [up(ctx), collectors(ctx), postgres_redis(ctx), log_folders(ctx), onec_processes(ctx),
         celery_workers(ctx), celery_tasks(ctx), alerts(ctx)])
