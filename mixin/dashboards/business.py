"""The "Business" dashboard: conflicts, identification, registrations, notifications, backlog."""

from __future__ import annotations

from typing import Any

from mixin.dashboards.panels import CRIT, NEUTRAL, WARN, Context, Panel, Q, Row, dashboard
from mixin.render import number


def now(ctx: Context) -> Row:
    queue = ctx.t.queue_items
    return Row("Now", [
        Panel("Conflicts auto-resolved", "stat",
              [Q("min(instance:customer_sync_conflicts_auto_resolved:ratio{$SEL})")],
              "percentunit", "Conflict records resolved automatically (onec_wins) / all "
              "conflict records (common_syncconflict), the lowest selected shop.",
              width=6, height=5, min=0, max=1, steps_base=NEUTRAL),
        Panel("Customers synced (distinct, window)", "stat",
              [Q('sum(customer_sync_recent_customers_synced{$SEL, window="$window"})')],
              "short", "Distinct customers with a successful sync operation in the selected "
              "window, the selected shops together.", width=6, height=5, steps_base=NEUTRAL),
        Panel("Export queue", "stat",
              [Q("max(customer_sync_export_queue_customers{$SEL})")],
              "short", "Active users flagged needs_1c_export, waiting to be sent to 1C (the "
              f"longest selected shop). Ticket above {number(queue)} (the alert shows it as "
              "queue 1c_export).", width=6, height=5, steps=[(CRIT, queue)],
              alert="CustomerSyncQueueBacklog"),
        Panel("Admin notifications failed (1h)", "stat",
              [Q('sum(increase(customer_sync_admin_notifications_total{$SEL, result="failed"}'
                 "[1h]))")],
              "short", "Conflict e-mails to the administrator that failed to send in the last "
              "hour. Any is a ticket.", width=6, height=5, steps_base=NEUTRAL,
              alert="CustomerSyncAdminNotificationsFailing", decimals=0),
    ])  # fmt: skip


def conflicts(ctx: Context) -> Row:
    return Row("Conflicts", [
        Panel("Conflicts per hour by source", "timeseries",
              [Q("sum by (source, status) (increase(customer_sync_conflicts_total{$SEL}[1h]))",
                 "{{source}} {{status}}")],
              "short", "conflict_resolution rows per conflict_source over the last hour "
              "(portal registration vs 1C data import).", stack=True),
        Panel("Auto-resolution ratio by conflict type", "timeseries",
              [Q("min by (conflict_type) "
                 "(instance_conflict_type:customer_sync_conflicts_auto_resolved:ratio{$SEL})",
                 "{{conflict_type}}")],
              "percentunit", "Share of conflict records resolved with onec_wins, per conflict "
              "type.", min=0, max=1),
        Panel("Conflict records by type, strategy and state", "bargauge",
              [Q("sum by (conflict_type, resolution_strategy, resolved) "
                 "(customer_sync_conflict_records{$SEL})",
                 "{{conflict_type}} / {{resolution_strategy}} / resolved={{resolved}}",
                 instant=True)],
              "short", "Rows of common_syncconflict.", width=24, height=7, steps_base=NEUTRAL),
    ])  # fmt: skip


def identification(ctx: Context) -> Row:
    return Row("Identification", [
        Panel("Identifications per hour by method", "timeseries",
              [Q("sum by (method, found) "
                 "(increase(customer_sync_identifications_total{$SEL}[1h]))",
                 "{{method}} found={{found}}")],
              "short", "Customer lookups over the last hour by search method (onec_id, "
              "onec_guid, tax_id, email; none = nothing matched).", stack=True),
        Panel("Identification success ratio by method (1d)", "timeseries",
              [Q("max by (method) "
                 "(instance_method:customer_sync_identifications_found:ratio_rate1d{$SEL})",
                 "{{method}}")],
              "percentunit", "Lookups that found a customer / all lookups, per method, over a "
              "day.", min=0, max=1),
    ])  # fmt: skip


def customers(ctx: Context) -> Row:
    queue, stale = ctx.t.queue_items, ctx.t.export_queue_oldest_age_seconds
    return Row("Customers", [
        Panel("Registrations vs 1C imports (window)", "timeseries",
              [Q('sum by (origin) (customer_sync_recent_customers_created{$SEL, '
                 'window="$window"})', "{{origin}}")],
              "short", "New users in the selected window: portal registrations "
              "(created_in_1c=false) vs records created by the 1C import."),
        Panel("Customers by origin and role", "timeseries",
              [Q("sum by (origin, role) (customer_sync_customers{$SEL})",
                 "{{origin}} {{role}}")],
              "short", "All users, by origin and role.", stack=True),
        Panel("Admin notifications per hour", "timeseries",
              [Q("sum by (result) (increase(customer_sync_admin_notifications_total{$SEL}[1h]))",
                 "{{result}}")],
              "short", "Conflict notification e-mails sent and failed over the last hour.",
              alert="CustomerSyncAdminNotificationsFailing"),
        Panel("Export queue and customers synced", "timeseries", [
            Q("max by (shop) (customer_sync_export_queue_customers{$SEL})",
              "export queue {{shop}}"),
            Q("sum by (window) (customer_sync_recent_customers_synced{$SEL})",
              "synced in {{window}}")],
            "short", "The 1C export backlog per shop against distinct customers synced per "
            f"window. The line is the backlog threshold ({number(queue)}).",
            steps=[(CRIT, queue)], alert="CustomerSyncQueueBacklog"),
        Panel("Export queue waiting time", "timeseries",
              [Q("max by (shop) (customer_sync_export_queue_oldest_age_seconds{$SEL})",
                 "{{shop}}")],
              "s", "How long the oldest active user flagged needs_1c_export has waited, since "
              "its updated_at (saving the flag sets it; a lower bound). 0 while nobody waits. "
              f"Ticket above {number(stale / 3600)} hours.", width=24, height=7,
              steps=[(WARN, stale)], alert="CustomerSyncExportQueueStale", min=0),
    ])  # fmt: skip


def build(ctx: Context) -> dict[str, Any]:
    return dashboard(
        ctx, "customer-sync-business", "Customer sync / Business",
        "Business outcomes of the customer sync: conflicts, identification, registrations, "
        "notifications, export backlog and its waiting time.",
        [now(ctx), conflicts(ctx), identification(ctx), customers(ctx)], window_var=True)
