"""Alerts proven end to end: fault -> exporter -> Prometheus -> Alertmanager -> webhook + Telegram.

Everything is real and on 127.0.0.1: the exporter (``exporter.service.Exporter``) on a real
PostgreSQL with the FREESPORT schema and the 1C stand-in (``exporter/demo/onec.py``); Debian's
Prometheus 2.42 loading the rule files of ``prometheus/rules``; Debian's Alertmanager 0.25 started
through ``alertmanager/render-config`` with the repository's config template; and local HTTP
servers standing in for the webhook receiver and the Telegram Bot API (``exporter/demo/alertsink.py``).

What is shortened, so the test takes about a minute instead of hours, and nothing else:
- Prometheus scrapes every 2 s (timeout 2 s) and evaluates every 1 s (production: 15 s / 15 s);
- every ``for:`` and ``keep_firing_for:`` of the rules is divided by 60 (2m -> 2s, 10m -> 10s);
  expressions, thresholds and rate windows are the production ones;
- Alertmanager's group_wait is 1 s and group_interval 2 s (production: 30 s, 1 m / 5 m).

Faults: the 1C stand-in goes down (listener closed) and comes back; a burst of 60 failed rows is
written to ``common_customersynclog`` and then diluted by a successful import of 1000 rows. The
measured fault-to-delivery times are checked against the same worst-case sum the runbook uses for
production intervals (scrape interval + scrape timeout + evaluation interval + ``for:`` +
group_wait + 2 s for the HTTP calls), and printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from exporter.config import Config, parse_duration
from exporter.demo.alertsink import AlertSink, telegram_visible_text
from exporter.demo.onec import Mode, OneCStandIn
from exporter.service import Exporter
from tests.alert_receivers import (
    TEST_BOT_TOKEN,
    TEST_CHAT_ID,
    RunningAlertmanager,
    start_alertmanager,
)
from tests.conftest import require_binary
from tests.e2e.topology import (
    TIME_SCALE,
    Prometheus,
    insert_rows,
    scaled,
    scaled_rules,
    start_prometheus,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SCRAPE_INTERVAL = 2.0
SCRAPE_TIMEOUT = 2.0
EVAL_INTERVAL = 1.0
GROUP_WAIT = 1.0
SEND_MARGIN = 2.0  # Prometheus -> Alertmanager -> HTTP receivers
RUNBOOK = "https://github.com/freesport/customer-sync-exporter/blob/main/docs/runbook.md"
SHOP = "freesport"


# --- the stack --------------------------------------------------------------------------------


def start_single_prometheus(
    workdir: Path, rule_files: list[Path], exporter_port: int, am_url: str
) -> Prometheus:
    """One Prometheus for one shop, as prometheus/prometheus.yml, at the test's intervals."""
    am_host = urllib.parse.urlparse(am_url).netloc
    config = {
        "global": {
            "scrape_interval": f"{SCRAPE_INTERVAL:g}s",
            "scrape_timeout": f"{SCRAPE_TIMEOUT:g}s",
            "evaluation_interval": f"{EVAL_INTERVAL:g}s",
        },
        "rule_files": [str(f) for f in rule_files],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am_host]}]}]},
        "scrape_configs": [
            {
                "job_name": "customer_sync_exporter",
                "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"],
                                    "labels": {"shop": SHOP}}],
            }
        ],
    }
    return start_prometheus("single", workdir, config)


@dataclass
class Stack:
    dsn: str
    onec: OneCStandIn
    exporter: Exporter
    prometheus: Prometheus
    alertmanager: RunningAlertmanager
    sink: AlertSink
    fors: dict[str, float]

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.exporter.port}"

    def budget(self, alertname: str) -> float:
        """Worst case fault -> delivery with the test's intervals (the runbook's sum)."""
        return (
            SCRAPE_INTERVAL + SCRAPE_TIMEOUT + EVAL_INTERVAL + self.fors[alertname] / TIME_SCALE
            + GROUP_WAIT + SEND_MARGIN
        )  # fmt: skip

    def debug(self) -> str:
        try:
            alerts = self.prometheus.query("ALERTS")
        except OSError as exc:
            alerts = [{"error": str(exc)}]
        return f"Prometheus ALERTS: {alerts}\nAlertmanager log tail:\n{self.alertmanager.log()[-3000:]}"


@pytest.fixture
def stack(db_dsn: str, repo_root: Path, tmp_path: Path) -> Iterator[Stack]:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    # Demo-like history: a completed 1C import run, read by the exporter at start-up.
    insert_rows(db_dsn, 500, "updated", "success")
    insert_rows(db_dsn, 40, "skipped", "success")
    onec = OneCStandIn().start()
    config = Config.model_validate(
        {
            "scrape_timeout": "10s",
            "database": {"dsn": db_dsn},
            "collectors": {
                "synclog": {"enabled": True},
                "business": {"enabled": False},
                "postgres": {"enabled": False},
                "redis": {"enabled": False},
                "disk": {"enabled": False},
                "process": {"enabled": False},
                "onec": {"enabled": True, "url": onec.url, "json_field": "status",
                         "json_value": "ok"},
            },
        }
    )  # fmt: skip
    exporter = Exporter(config, "127.0.0.1:0").start()
    sink = AlertSink().start()
    am = start_alertmanager(
        repo_root, tmp_path / "am", sink, group_wait=f"{GROUP_WAIT:g}s", group_interval="2s"
    )
    rules, fors = scaled_rules(tmp_path / "rules")
    prometheus = start_single_prometheus(tmp_path / "prometheus", rules, exporter.port, am.url)
    s = Stack(db_dsn, onec, exporter, prometheus, am, sink, fors)
    try:
        # healthy first: the target is up and the exporter's series are in Prometheus
        wait_until(
            lambda: bool(prometheus.query('customer_sync_onec_up == 1'))
            and bool(prometheus.query("customer_sync_operations_total")),
            30, "the first scrapes", s,
        )  # fmt: skip
        yield s
    finally:
        prometheus.stop()
        am.stop()
        sink.stop()
        exporter.stop()
        onec.stop()


def wait_until(predicate: Any, timeout: float, what: str, stack: Stack | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{stack.debug() if stack else ''}")
        time.sleep(0.1)


def delivered(
    sink: AlertSink, alertname: str, instance: str, status: str, severity: str = "critical"
) -> tuple[float, float] | None:
    """(webhook time, telegram time) of the first delivery of this alert in this status."""
    hook = next(
        (c.received_at for c in sink.webhooks for a in c.payload["alerts"]
         if a["labels"].get("alertname") == alertname and a["labels"].get("instance") == instance
         and a["labels"].get("severity") == severity and a["status"] == status),
        None,
    )  # fmt: skip
    marker = "FIRING" if status == "firing" else "RESOLVED"
    tg = next(
        (m.received_at for m in sink.telegram
         if f"{marker} {alertname} on {instance}" in telegram_visible_text(m.text)),
        None,
    )  # fmt: skip
    if hook is None or tg is None:
        return None
    return hook, tg


def wait_delivered(
    stack: Stack, alertname: str, status: str, since: float, timeout: float
) -> tuple[float, float]:
    result: list[tuple[float, float]] = []

    def done() -> bool:
        got = delivered(stack.sink, alertname, stack.instance, status)
        if got is not None:
            result.append(got)
        return got is not None

    wait_until(done, timeout, f"{alertname} {status} at both receivers", stack)
    hook, tg = result[0]
    assert hook >= since and tg >= since
    return hook - since, tg - since


# --- the test ---------------------------------------------------------------------------------


def test_faults_reach_webhook_and_telegram_and_resolve(stack: Stack) -> None:
    sink, instance = stack.sink, stack.instance
    # nothing is alerting on the healthy stack
    time.sleep(stack.budget("CustomerSyncOneCDown"))
    assert sink.webhooks == [] and sink.telegram == [], stack.debug()
    timings: dict[str, float] = {}

    # ---- fault 1: the 1C HTTP service goes away -----------------------------------------
    fault = time.time()
    stack.onec.set_mode(Mode.DOWN)
    hook, tg = wait_delivered(stack, "CustomerSyncOneCDown", "firing", fault, 60)
    timings["1C down -> webhook"], timings["1C down -> Telegram"] = hook, tg
    budget = stack.budget("CustomerSyncOneCDown")
    assert max(hook, tg) <= budget, (hook, tg, budget)

    alert = next(
        a for c in sink.webhooks for a in c.payload["alerts"]
        if a["labels"]["alertname"] == "CustomerSyncOneCDown"
    )  # fmt: skip
    assert alert["labels"] == {
        "alertname": "CustomerSyncOneCDown", "severity": "critical",
        "instance": instance, "job": "customer_sync_exporter", "shop": SHOP,
    }  # fmt: skip
    assert alert["annotations"] == {
        "summary": "The 1C HTTP service does not answer as expected.",
        "description": (
            f"Shop {SHOP}: the 1C probe of {instance} has failed for 2 minutes "
            "(customer_sync_onec_up = 0, "
            "last HTTP status 0; 0 means no HTTP answer at all). Customer exchange with 1C is "
            "impossible while it lasts."
        ),
        "runbook_url": f"{RUNBOOK}#customersynconecdown",
    }
    message = next(m for m in sink.telegram if "CustomerSyncOneCDown" in m.text)
    assert message.accepted, message.error
    assert (message.token, message.chat_id, message.parse_mode) == (
        TEST_BOT_TOKEN, TEST_CHAT_ID, "HTML",
    )  # fmt: skip
    visible = telegram_visible_text(message.text)
    assert f"FIRING CustomerSyncOneCDown on {instance}" in visible
    assert "[critical]" in visible
    assert alert["annotations"]["description"] in visible
    assert f'<a href="{RUNBOOK}#customersynconecdown">Runbook</a>' in message.text

    back = time.time()
    stack.onec.set_mode(Mode.OK)
    hook, tg = wait_delivered(stack, "CustomerSyncOneCDown", "resolved", back, 60)
    timings["1C back -> resolved at webhook"], timings["1C back -> resolved in Telegram"] = hook, tg

    # ---- fault 2: a burst of failed sync rows -------------------------------------------
    fault = time.time()
    insert_rows(stack.dsn, 60, "error", "failed", "Невалидный формат email: <x@y>")
    hook, tg = wait_delivered(stack, "CustomerSyncErrorRatioHigh", "firing", fault, 60)
    timings["failed burst -> webhook"], timings["failed burst -> Telegram"] = hook, tg
    assert max(hook, tg) <= stack.budget("CustomerSyncErrorRatioHigh"), (hook, tg)
    ratio = next(
        a for c in sink.webhooks for a in c.payload["alerts"]
        if a["labels"]["alertname"] == "CustomerSyncErrorRatioHigh"
        and a["labels"]["severity"] == "critical"
    )  # fmt: skip
    # The 540 older rows were read at start-up, before the first sample: every row counted in
    # the last 5 minutes is one of the 60 failures.
    assert ratio["annotations"]["description"] == (
        f"Shop {SHOP}: 100% of the customer sync operations recorded by {instance} in the "
        "last 5 minutes "
        "have status failed or error (critical threshold 20 %)."
    )
    # More than 50 failures in the hour: a ticket (webhook only), with the exact count.
    with psycopg.connect(stack.dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM common_customersynclog WHERE status IN ('failed', 'error') "
            "AND created_at > now() - interval '1 hour'"
        ).fetchone()
    assert row is not None
    truth = row[0]
    assert truth == 60

    def ticket() -> dict[str, Any] | None:
        return next(
            (a for c in sink.webhooks for a in c.payload["alerts"]
             if a["labels"]["alertname"] == "CustomerSyncFailedOperationsHigh"),
            None,
        )  # fmt: skip

    wait_until(lambda: ticket() is not None, 30, "the failed-operations ticket", stack)
    failed_ops = ticket()
    assert failed_ops is not None and failed_ops["labels"]["severity"] == "warning"
    assert failed_ops["annotations"]["description"] == (
        f"Shop {SHOP}: {truth} customer sync operations recorded by {instance} failed in the "
        "last hour "
        "(threshold 50)."
    )
    assert not any("CustomerSyncFailedOperationsHigh" in m.text for m in sink.telegram)
    assert all(m.accepted for m in sink.telegram), [m.error for m in sink.telegram]

    # the fault ends: the next import succeeds (1000 rows), the 5m ratio drops to 60/1060
    healed = time.time()
    insert_rows(stack.dsn, 1000, "updated", "success")
    hook, tg = wait_delivered(stack, "CustomerSyncErrorRatioHigh", "resolved", healed, 60)
    timings["import ok -> resolved at webhook"] = hook
    timings["import ok -> resolved in Telegram"] = tg
    keep = parse_duration(scaled("10m"))  # keep_firing_for of the critical level
    assert min(hook, tg) >= keep, "keep_firing_for held the alert for its scaled 10 minutes"

    report = "\n".join(f"  {k}: {v:.1f} s" for k, v in timings.items())
    print(f"\nmeasured (scrape {SCRAPE_INTERVAL:g}s, eval {EVAL_INTERVAL:g}s, for/60, "
          f"group_wait {GROUP_WAIT:g}s):\n{report}")  # fmt: skip
