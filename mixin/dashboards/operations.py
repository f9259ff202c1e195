"""The "Sync operations" dashboard: throughput, errors, the SLO, durations, 1C imports."""

from __future__ import annotations

from typing import Any

from mixin.dashboards.panels import (
    CRIT,
    NEUTRAL,
    OK,
    RATE,
    WARN,
    Context,
    Panel,
    Q,
    Row,
    dashboard,
    pct,
)
from mixin.render import number


def now(ctx: Context) -> Row:
    t = ctx.t
    stale = 2 * t.customers_import_interval_seconds
    return Row("Now", [
        Panel("Operations per second", "stat",
              [Q("sum(rate(customer_sync_operations_total{$SEL}" + RATE + "))")],
              "ops", "Sync-log rows written per second, every operation type and status.",
              width=4, height=5, steps_base=NEUTRAL),
        Panel("Error ratio (1h)", "stat",
              [Q("max(instance:customer_sync_operations_errors:ratio_rate1h{$SEL})")],
              "percentunit", "Share of the last hour's operations with status failed or error "
              f"(the worst selected shop). Ticket above {pct(t.error_ratio_1h)}, page above "
              f"{pct(t.error_ratio_5m)} over 5 minutes.",
              width=4, height=5, steps=[(WARN, t.error_ratio_1h), (CRIT, t.error_ratio_5m)],
              alert="CustomerSyncErrorRatioHigh", min=0, max=1),
        Panel("Failed operations (exact, 1h)", "stat",
              [Q('sum(customer_sync_recent_operations{$SEL, window="1h", '
                 'status=~"failed|error"})')],
              "short", "Rows with status failed or error in the last hour, counted exactly by "
              f"the exporter. Ticket above {number(t.failed_operations_1h)} in a shop.",
              width=4, height=5, steps=[(CRIT, t.failed_operations_1h)],
              alert="CustomerSyncFailedOperationsHigh"),
        Panel("p95 duration (exact, 1h)", "stat",
              [Q('max(customer_sync_recent_duration_seconds{$SEL, window="1h", percentile="95", '
                 'operation_type!="batch_operation"})')],
              "s", "Slowest operation type's 95th percentile over the last hour (rows that "
              "record duration_ms; batch runs excluded). Ticket above "
              f"{number(t.duration_p95_seconds)} s.", width=4, height=5,
              steps=[(CRIT, t.duration_p95_seconds)], alert="CustomerSyncOperationsSlow"),
        Panel("Last 1C customer import finished", "stat",
              [Q("time() - max(customer_sync_last_import_finished_timestamp_seconds"
                 '{$SEL, import_type="customers", status="completed"})')],
              "s", "Time since the last completed import_customers_from_1c session. Page when "
              "it exceeds two scheduled runs (customer_sync:customers_import_interval:seconds).",
              width=4, height=5, steps=[(CRIT, stale)], alert="CustomerSyncImportStale"),
        Panel("Import sessions running", "stat",
              [Q('sum(customer_sync_import_sessions{$SEL, '
                 'status=~"pending|started|in_progress"})')],
              "short", "1C import sessions not finished yet, every import type.",
              width=4, height=5, steps_base=NEUTRAL),
    ])  # fmt: skip


def operations(ctx: Context) -> Row:
    t = ctx.t
    return Row("Operations", [
        Panel("Operations per second by type", "timeseries",
              [Q("sum by (operation_type) (rate(customer_sync_operations_total{$SEL}"
                 + RATE + "))", "{{operation_type}}")],
              "ops", "Throughput per operation type (created, updated, skipped and error come "
              "from the 1C import).", stack=True),
        Panel("Operations per second by status", "timeseries",
              [Q("sum by (status) (rate(customer_sync_operations_total{$SEL}" + RATE + "))",
                 "{{status}}")],
              "ops", "failed is written by the 1C import, error by the sync logger: both are "
              "failures.", stack=True),
        Panel("Error ratio", "timeseries", [
            Q("max by (shop) (instance:customer_sync_operations_errors:ratio_rate5m{$SEL})",
              "5m {{shop}}"),
            Q("max by (shop) (instance:customer_sync_operations_errors:ratio_rate1h{$SEL})",
              "1h {{shop}}")],
            "percentunit", "(failed + error) / all operations, per shop. The lines are the "
            f"alert thresholds: {pct(t.error_ratio_1h)} over 1h (ticket), "
            f"{pct(t.error_ratio_5m)} over 5m (page).",
            steps=[(WARN, t.error_ratio_1h), (CRIT, t.error_ratio_5m)],
            alert="CustomerSyncErrorRatioHigh", min=0),
        Panel("Error ratio by operation type (1h)", "timeseries",
              [Q("max by (operation_type) "
                 "(instance_operation_type:customer_sync_operations_errors:ratio_rate1h{$SEL})",
                 "{{operation_type}}")],
              "percentunit", "Which operation fails. operation_type=error is 100 % by "
              "definition (the 1C import logs failures under it).", min=0),
        Panel("Operations in the window by type and status", "bargauge",
              [Q('sum by (operation_type, status) '
                 '(customer_sync_recent_operations{$SEL, window="$window"})',
                 "{{operation_type}} / {{status}}", instant=True)],
              "short", "Exact counts over the selected sliding window, from the exporter's "
              "window gauges.", height=10, steps_base=NEUTRAL),
        Panel("Operations per day by type", "timeseries",
              [Q("sum by (operation_type) "
                 "(instance_operation_type:customer_sync_operations:increase1d{$SEL})",
                 "{{operation_type}}")],
              "short", "Operations of the last 24 hours (recording rule over the counter), "
              "the selected shops together.", height=10),
    ])  # fmt: skip


def slo(ctx: Context) -> Row:
    """The sync SLO (mixin/rules/customer_sync.slo.yml): SLI, budget left, burn rates."""
    s = ctx.config.slo
    budget = number(s.error_budget)
    b = s.burn_rates
    return Row(f"SLO: {pct(s.target)} of sync operations succeed over 30 days", [
        Panel("SLI (30 days)", "stat",
              [Q("1 - max(shop:customer_sync_operations_errors:ratio_rate30d{$SHOP})")],
              "percentunit", "Share of the last 30 days' sync operations that did not fail "
              "(status failed or error), for the worst selected shop. The target is "
              f"{pct(s.target)}.", width=6, height=5, steps_base=CRIT, steps=[(OK, s.target)],
              decimals=3),
        Panel("Error budget remaining (30 days)", "stat",
              [Q("min(shop:customer_sync_slo_error_budget_remaining:ratio_rate30d{$SHOP})")],
              "percentunit", "Share of the 30-day error budget "
              f"({pct(s.error_budget)} of operations) not spent yet, for the worst selected "
              "shop. Below 0 the SLO is missed.", width=6, height=5, steps_base=CRIT,
              steps=[(OK, 0)], max=1),
        Panel("Error budget remaining by shop", "timeseries",
              [Q("min by (shop) "
                 "(shop:customer_sync_slo_error_budget_remaining:ratio_rate30d{$SHOP})",
                 "{{shop}}")],
              "percentunit", "How the 30-day budget is spent over time (evaluated every "
              "5 minutes).", width=12, height=5, max=1),
        Panel("Burn rate, page windows", "timeseries", [
            Q(f"max by (shop) (shop:customer_sync_operations_errors:ratio_rate{w}{{$SHOP}})"
              f" / {budget}", f"{w} {{{{shop}}}}")
            for w in ("5m", "1h", "30m", "6h")],
            "short", f"Error ratio / budget ({budget}): 1 spends the budget in exactly 30 "
            f"days. Pages while 1h and 5m are above {number(b.page_1h_5m)}, or 6h and 30m "
            f"above {number(b.page_6h_30m)}.",
            steps=[(WARN, b.page_6h_30m), (CRIT, b.page_1h_5m)], min=0,
            alert="CustomerSyncErrorBudgetBurn"),
        Panel("Burn rate, ticket windows", "timeseries", [
            Q(f"max by (shop) (shop:customer_sync_operations_errors:ratio_rate{w}{{$SHOP}})"
              f" / {budget}", f"{w} {{{{shop}}}}")
            for w in ("2h", "1d", "6h", "3d")],
            "short", f"Tickets while 1d and 2h are above {number(b.ticket_1d_2h)}, or 3d and "
            f"6h above {number(b.ticket_3d_6h)}.",
            steps=[(WARN, b.ticket_3d_6h), (CRIT, b.ticket_1d_2h)], min=0,
            alert="CustomerSyncErrorBudgetBurn"),
    ])  # fmt: skip


def durations(ctx: Context) -> Row:
    slow = ctx.t.duration_p95_seconds
    return Row("Durations", [
        Panel("Duration percentiles from the histogram", "timeseries", [
            Q(f"histogram_quantile({q}, sum by (le) (rate("
              'customer_sync_operation_duration_seconds_bucket{$SEL, '
              'operation_type!="batch_operation"}' + RATE + ")))", f"p{round(q * 100)}")
            for q in (0.5, 0.95, 0.99)],
            "s", "Estimated from histogram buckets, every operation type except whole batch "
            "runs. Only rows that record duration_ms count (the production 1C import does not).",
            steps=[(CRIT, slow)], alert="CustomerSyncOperationsSlow", min=0),
        Panel("p95 / p99 by operation type (histogram, 5m)", "timeseries", [
            Q(f"max by (operation_type) (instance_operation_type:"
              f"customer_sync_operation_duration_seconds:{p}_rate5m{{$SEL}})",
              f"{p} {{{{operation_type}}}}")
            for p in ("p95", "p99")],
            "s", "Recording rules over the histogram, per operation type.",
            steps=[(CRIT, slow)], alert="CustomerSyncOperationsSlow", min=0),
        Panel("Exact percentiles over the window", "timeseries",
              [Q("max by (operation_type, percentile) "
                 '(customer_sync_recent_duration_seconds{$SEL, window="$window"})',
                 "p{{percentile}} {{operation_type}}")],
              "s", "percentile_cont over every row of the selected window, computed by the "
              "exporter (the alert uses the 1h window, p95).", steps=[(CRIT, slow)],
              alert="CustomerSyncOperationsSlow", min=0),
        Panel("Average duration over the window", "timeseries",
              [Q("max by (operation_type) "
                 '(customer_sync_recent_duration_avg_seconds{$SEL, window="$window"})',
                 "{{operation_type}}")],
              "s", "Mean duration of the rows in the selected window.", min=0),
    ])  # fmt: skip


def imports(ctx: Context) -> Row:
    stale = 2 * ctx.t.customers_import_interval_seconds
    return Row("1C imports", [
        Panel("Time since the last successful 1C import row", "bargauge",
              [Q("time() - max by (shop, operation_type) "
                 "(customer_sync_last_operation_timestamp_seconds"
                 '{$SEL, operation_type=~"created|updated|skipped|import_from_1c", '
                 'status="success"})', "{{shop}} {{operation_type}}", instant=True)],
              "s", "Age of the newest successful sync-log row the 1C import writes, per shop "
              "and operation type: the fallback CustomerSyncImportStale uses without import "
              "sessions.", height=9, steps=[(CRIT, stale)], alert="CustomerSyncImportStale"),
        Panel("Last finished import by type", "bargauge",
              [Q("time() - max by (shop, import_type) "
                 '(customer_sync_last_import_finished_timestamp_seconds{$SEL, '
                 'status="completed"})', "{{shop}} {{import_type}}", instant=True)],
              "s", "Age of the newest completed import session per shop and import type "
              "(import_sessions).", height=9, steps=[(CRIT, stale)],
              alert="CustomerSyncImportStale"),
        Panel("Import sessions by status", "timeseries",
              [Q("sum by (import_type, status) (customer_sync_import_sessions{$SEL})",
                 "{{import_type}} {{status}}")],
              "short", "Rows of import_sessions per type and status.", width=24, height=9),
    ])  # fmt: skip


def build(ctx: Context) -> dict[str, Any]:
    return dashboard(
        ctx, "customer-sync-operations", "Customer sync / Sync operations",
        "Sync-log operations between the FREESPORT shops and 1C: throughput, errors, the SLO, "
        "durations, imports.",
        [now(ctx), operations(ctx), slo(ctx), durations(ctx), imports(ctx)], window_var=True)
