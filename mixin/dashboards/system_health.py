"""The "System health" dashboard: the exporters and everything the sync depends on."""

from __future__ import annotations

from typing import Any

from mixin.dashboards.panels import (
    CRIT,
    NEUTRAL,
    OK,
    OK_MAPPINGS,
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
        "Redis, log folders, the 1C HTTP service, worker processes, firing alerts.",
        [up(ctx), collectors(ctx), postgres_redis(ctx), log_folders(ctx), onec_processes(ctx),
         alerts(ctx)])
