"""The customer-sync monitoring mixin: alert and recording rules and Grafana dashboards,
generated from one config (the monitoring-mixin convention: ``_config`` -> rules + dashboards).

    mixin/config.yml        the one place: selector, thresholds, SLO target and burn rates
    mixin/rules/*.yml       rule templates; ${thresholds.NAME}, ${selector}, ${slo.target|pct}
    mixin/dashboards/*.py   one module per dashboard, one function per row
    mixin/build.py          writes prometheus/rules/*.yml and grafana/dashboards/*.json

    .venv/bin/python -m mixin.build            # regenerate
    .venv/bin/python -m mixin.build --check    # exit 1 if a checked-in file is stale

Adding alerts (customer_sync.celery.yml is such a group): put a new file in mixin/rules/ (every
*.yml there becomes prometheus/rules/<same name>, and prometheus.yml loads rules/*.yml), write its
numbers into config.yml and the ``Thresholds`` model in mixin/config.py, select with
``{${selector}}`` and keep ``by (job, shop, instance)``, start each description with
``Shop {{ $labels.shop }}:``. Then add promtool cases (a firing and a silent one per alert and
severity) in prometheus/tests/ and a runbook section named after the alert in docs/runbook.md;
tests/prometheus/test_rules.py fails until both exist.

Adding a dashboard row: write a function such as ``def celery(ctx: Context) -> Row`` in the
dashboard's module (queries use ``{$SEL}``; thresholds come from ``ctx.t``; ``alert=`` links the
runbook and must name an alert of the rule files) and add it to that module's ``build`` list.
tests/grafana/test_dashboards.py then sends every new query to a Prometheus fed by the demo.
"""
