"""The Alertmanager side: config rendering, amtool checks, routing, and real deliveries.

Everything runs the real tools: alertmanager/render-config under /bin/sh, Debian's amtool 0.25,
and Debian's Alertmanager 0.25 delivering to local stand-ins for the webhook receiver and the
Telegram Bot API (exporter/demo/alertsink.py), which reject what Telegram would reject.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import parse_duration
from exporter.demo.alertsink import (
    TELEGRAM_MAX_CHARS,
    AlertSink,
    telegram_visible_text,
    utf16_length,
)
from tests.alert_receivers import (
    TEST_BOT_TOKEN,
    TEST_CHAT_ID,
    RunningAlertmanager,
    start_alertmanager,
)
from tests.conftest import require_binary

RUNBOOK = "https://github.com/freesport/customer-sync-exporter/blob/main/docs/runbook.md"
SECRETS = {
    "TELEGRAM_BOT_TOKEN": "987654:SECRET-token_value",
    "TELEGRAM_CHAT_ID": "-100777",
    "WEBHOOK_URL": "https://hooks.example/secret-path?key='k'",
}
# The documented worst case of the Telegram message, in runes of raw HTML (docs/runbook.md).
TELEGRAM_WORST_CASE_RUNES = 3570


# --- render-config ------------------------------------------------------------------------------


def render(
    repo_root: Path, out: Path, env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess[str]:
    """Run render-config with /bin/sh (dash on Debian) and only the given variables."""
    base = {"PATH": os.environ["PATH"], "ALERTMANAGER_CONFIG_OUT": str(out)}
    return subprocess.run(
        ["/bin/sh", str(repo_root / "alertmanager" / "render-config"), "--render-only", *extra],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def assert_no_secret(text: str) -> None:
    for value in SECRETS.values():
        assert value not in text
    assert "SECRET" not in text


def test_render_substitutes_every_placeholder_into_a_private_file(
    repo_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run" / "alertmanager.yml"
    result = render(repo_root, out, SECRETS)
    assert result.returncode == 0, result.stderr
    assert_no_secret(result.stdout + result.stderr)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.parent.stat().st_mode) == 0o700

    config = yaml.safe_load(out.read_text())
    page = {r["name"]: r for r in config["receivers"]}["page"]
    telegram = page["telegram_configs"][0]
    assert telegram["bot_token"] == SECRETS["TELEGRAM_BOT_TOKEN"]
    assert telegram["chat_id"] == -100777  # an integer, as Alertmanager requires
    assert telegram["parse_mode"] == "HTML"
    # the single quotes of the URL survive YAML quoting
    assert page["webhook_configs"][0]["url"] == SECRETS["WEBHOOK_URL"]
    assert config["global"]["telegram_api_url"] == "https://api.telegram.org"
    assert config["templates"] == [str(repo_root / "alertmanager" / "templates") + "/*.tmpl"]
    # comments keep their placeholders: the secrets appear exactly where they are used
    text = out.read_text()
    assert text.count(SECRETS["TELEGRAM_BOT_TOKEN"]) == 1
    assert text.count("hooks.example") == 2  # page and ticket receivers
    assert all("${" not in line for line in text.splitlines() if not line.lstrip().startswith("#"))


def test_render_reads_secret_files_and_strips_the_trailing_newline(
    repo_root: Path, tmp_path: Path
) -> None:
    files = {}
    for name, value in SECRETS.items():
        path = tmp_path / name.lower()
        path.write_text(value + "\n")
        files[f"{name}_FILE"] = str(path)
    out = tmp_path / "out" / "am.yml"
    result = render(repo_root, out, {**files, "TELEGRAM_API_URL": "http://127.0.0.1:8081/tg"})
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(out.read_text())
    telegram = config["receivers"][0]["telegram_configs"][0]
    assert telegram["bot_token"] == SECRETS["TELEGRAM_BOT_TOKEN"]
    assert telegram["chat_id"] == -100777
    assert config["receivers"][1]["webhook_configs"][0]["url"] == SECRETS["WEBHOOK_URL"]
    assert config["global"]["telegram_api_url"] == "http://127.0.0.1:8081/tg"


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_a_missing_secret_fails_loudly_naming_it(
    repo_root: Path, tmp_path: Path, missing: str
) -> None:
    out = tmp_path / "am.yml"
    env = {k: v for k, v in SECRETS.items() if k != missing}
    result = render(repo_root, out, env)
    assert result.returncode != 0
    assert f"missing {missing}: set {missing} or {missing}_FILE" in result.stderr
    assert_no_secret(result.stdout + result.stderr)
    assert not out.exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"TELEGRAM_CHAT_ID": "12ab"}, "TELEGRAM_CHAT_ID must be an integer"),
        ({"TELEGRAM_CHAT_ID": "1-2"}, "TELEGRAM_CHAT_ID must be an integer"),
        ({"TELEGRAM_CHAT_ID": "-"}, "TELEGRAM_CHAT_ID must be an integer"),
        ({"TELEGRAM_BOT_TOKEN": "SECRET-no-colon"}, "does not look like a bot token"),
        ({"TELEGRAM_BOT_TOKEN": "1:SECRET/'x"}, "characters a bot token cannot have"),
        ({"TELEGRAM_BOT_TOKEN": "1:SECRET\n2:x"}, "TELEGRAM_BOT_TOKEN must be a single line"),
        ({"WEBHOOK_URL": "ftp://SECRET"}, "WEBHOOK_URL must start with http:// or https://"),
        ({"TELEGRAM_API_URL": "api.telegram.org"}, "TELEGRAM_API_URL must start with http"),
        ({"WEBHOOK_URL_FILE": "/nonexistent/x"}, "both WEBHOOK_URL and WEBHOOK_URL_FILE"),
    ],
)
def test_invalid_values_fail_without_echoing_them(
    repo_root: Path, tmp_path: Path, override: dict[str, str], message: str
) -> None:
    out = tmp_path / "am.yml"
    result = render(repo_root, out, {**SECRETS, **override})
    assert result.returncode != 0
    assert message in result.stderr
    assert "SECRET" not in result.stdout + result.stderr
    assert not out.exists()


def test_an_unreadable_secret_file_is_named(repo_root: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in SECRETS.items() if k != "WEBHOOK_URL"}
    missing = tmp_path / "nope"
    result = render(repo_root, tmp_path / "am.yml", {**env, "WEBHOOK_URL_FILE": str(missing)})
    assert result.returncode != 0
    assert f"WEBHOOK_URL_FILE names a file that cannot be read: {missing}" in result.stderr


def test_render_refuses_to_write_into_the_repository(repo_root: Path) -> None:
    out = repo_root / "alertmanager" / f"rendered-{uuid.uuid4().hex}.yml"
    result = render(repo_root, out, SECRETS)
    assert result.returncode != 0
    assert "refusing to write the rendered config inside the repository" in result.stderr
    assert not out.exists()


def test_an_unknown_placeholder_in_the_template_is_an_error(
    repo_root: Path, tmp_path: Path
) -> None:
    template = tmp_path / "t.yml.tmpl"
    template.write_text("# ${ANYTHING} in a comment is kept\nglobal:\n  x: ${TYPO_TOKEN}\n")
    result = render(
        repo_root, tmp_path / "am.yml", {**SECRETS, "ALERTMANAGER_TEMPLATE": str(template)}
    )
    assert result.returncode != 0
    assert "unknown placeholder ${TYPO_TOKEN} on line 3" in result.stderr


# --- amtool ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo_root = Path(__file__).resolve().parents[2]
    out = tmp_path_factory.mktemp("amtool") / "alertmanager.yml"
    result = render(repo_root, out, SECRETS)
    assert result.returncode == 0, result.stderr
    return out


def test_amtool_check_config_accepts_the_rendered_file(rendered_config: Path) -> None:
    amtool = require_binary("amtool")
    result = subprocess.run(
        [amtool, "check-config", str(rendered_config)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # it also loaded and parsed our template file
    assert "1 templates" in result.stdout
    assert "3 receivers" in result.stdout and "5 inhibit rules" in result.stdout


def test_amtool_check_config_rejects_a_broken_template(tmp_path: Path) -> None:
    """The check above would catch a template syntax error: prove it on a broken copy."""
    amtool = require_binary("amtool")
    repo_root = Path(__file__).resolve().parents[2]
    broken = tmp_path / "templates"
    broken.mkdir()
    text = (repo_root / "alertmanager" / "templates" / "customer_sync.tmpl").read_text()
    (broken / "customer_sync.tmpl").write_text(text.replace("{{ end }}", "", 1))
    out = tmp_path / "out" / "am.yml"
    result = render(repo_root, out, {**SECRETS, "ALERTMANAGER_TEMPLATES_DIR": str(broken)})
    assert result.returncode == 0, result.stderr
    check = subprocess.run([amtool, "check-config", str(out)], capture_output=True, text=True)
    assert check.returncode != 0


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        ({"severity": "critical", "alertname": "CustomerSyncOneCDown"}, "page"),
        ({"severity": "critical", "alertname": "CustomerSyncExporterAbsent"}, "page"),
        ({"severity": "warning", "alertname": "CustomerSyncQueueBacklog"}, "ticket"),
        ({"severity": "info", "alertname": "Anything"}, "blackhole"),
        # a rule without a severity, or with an unknown one, still reaches someone
        ({"alertname": "NoSeverity"}, "ticket"),
        ({"severity": "page-me", "alertname": "Typo"}, "ticket"),
    ],
)
def test_routes_by_severity(rendered_config: Path, labels: dict[str, str], receiver: str) -> None:
    amtool = require_binary("amtool")
    args = [f"{k}={v}" for k, v in labels.items()]
    ok = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={rendered_config}",
         f"--verify.receivers={receiver}", *args],
        capture_output=True, text=True,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip() == receiver
    # and amtool really verifies: any other receiver is rejected
    other = "blackhole" if receiver != "blackhole" else "page"
    wrong = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={rendered_config}",
         f"--verify.receivers={other}", *args],
        capture_output=True, text=True,
    )  # fmt: skip
    assert wrong.returncode != 0


def test_every_alert_rule_severity_has_a_route(rendered_config: Path, repo_root: Path) -> None:
    """Each severity used by prometheus/rules reaches the receiver the runbook promises."""
    amtool = require_binary("amtool")
    expected = {"critical": "page", "warning": "ticket"}
    severities = {
        r["labels"]["severity"]
        for path in sorted((repo_root / "prometheus" / "rules").glob("*.yml"))
        for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"] if "alert" in r
    }
    assert severities == set(expected)
    for severity, receiver in expected.items():
        ok = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={rendered_config}",
             f"--verify.receivers={receiver}", f"severity={severity}"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert ok.returncode == 0, ok.stdout + ok.stderr


def test_every_group_interval_outlasts_the_cluster_peer_wait(rendered_config: Path) -> None:
    """In a cluster the second peer notifies a --cluster.peer-timeout (15 s, docs/runbook.md)
    after the first; if that wait reached a group's next flush, a peer could send a stale
    FIRING after the other's RESOLVED (alertmanager#2447). tests/e2e/test_ha.py keeps the
    same ratio with shorter values."""
    peer_timeout = 15.0
    config = yaml.safe_load(rendered_config.read_text())

    def routes(route: dict[str, Any], inherited: float) -> Iterator[float]:
        interval = parse_duration(route.get("group_interval", f"{inherited}s"))
        yield interval
        for child in route.get("routes", []):
            yield from routes(child, interval)

    intervals = list(routes(config["route"], 300.0))
    assert len(intervals) == 4
    assert min(intervals) >= 2 * peer_timeout, intervals


# --- real deliveries ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sink() -> Iterator[AlertSink]:
    server = AlertSink().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def alertmanager(
    sink: AlertSink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningAlertmanager]:
    require_binary("prometheus-alertmanager")
    repo_root = Path(__file__).resolve().parents[2]
    am = start_alertmanager(repo_root, tmp_path_factory.mktemp("am"), sink)
    yield am
    am.stop()


def alert(
    name: str, severity: str, instance: str, *, resolved: bool = False, **extra: Any
) -> dict[str, Any]:
    now = datetime.now(UTC)
    labels = {"alertname": name, "severity": severity, "instance": instance,
              "job": "customer_sync_exporter", **extra.pop("labels", {})}  # fmt: skip
    annotations = {
        "summary": f"{name} summary.",
        "description": f"{name} on {instance} is bad.",
        "runbook_url": f"{RUNBOOK}#{name.lower()}",
        **extra.pop("annotations", {}),
    }
    body: dict[str, Any] = {"labels": labels, "annotations": annotations,
                            "startsAt": (now - timedelta(minutes=5)).isoformat()}  # fmt: skip
    if resolved:
        body["endsAt"] = (now - timedelta(seconds=1)).isoformat()
    return body


def webhook_names(sink: AlertSink, instance: str) -> set[tuple[str, str, str]]:
    return {
        (a["labels"]["alertname"], a["labels"].get("severity", ""), a["status"])
        for a in sink.webhook_alerts()
        if a["labels"].get("instance") == instance
    }


def telegram_for(sink: AlertSink, instance: str) -> list[str]:
    return [m.text for m in sink.telegram if instance in m.text]


def test_critical_reaches_telegram_and_webhook_escaped(
    alertmanager: RunningAlertmanager, sink: AlertSink
) -> None:
    instance = f"crit-{uuid.uuid4().hex[:8]}:9188"
    hostile = "value <b>bold</b> & \"quoted\" 'single' a+b <script>"
    alertmanager.post_alerts(
        [alert("CustomerSyncOneCDown", "critical", instance,
               annotations={"description": hostile, "summary": "1C <down> & out."})]
    )  # fmt: skip
    sink.wait_for(lambda s: bool(telegram_for(s, instance)), 15, "a Telegram message")
    sink.wait_for(lambda s: bool(webhook_names(s, instance)), 15, "a webhook call")

    message = next(m for m in sink.telegram if instance in m.text)
    assert message.accepted, message.error
    assert message.token == TEST_BOT_TOKEN
    assert message.chat_id == TEST_CHAT_ID
    assert message.parse_mode == "HTML"
    visible = telegram_visible_text(message.text)
    # what the reader sees is the original text, not markup, not double-escaped entities
    assert hostile in visible
    assert "1C <down> & out." in visible
    assert "&amp;" not in visible and "&lt;" not in visible
    assert f"FIRING CustomerSyncOneCDown on {instance}" in visible
    assert f'<a href="{RUNBOOK}#customersynconecdown">Runbook</a>' in message.text

    call = next(c for c in sink.webhooks if any(a["labels"]["instance"] == instance
                                                for a in c.payload["alerts"]))  # fmt: skip
    assert call.path == "/webhook"
    assert call.payload["receiver"] == "page"
    assert call.payload["status"] == "firing"
    assert call.payload["groupLabels"] == {"alertname": "CustomerSyncOneCDown",
                                           "instance": instance}  # fmt: skip
    [sent] = call.payload["alerts"]
    assert sent["annotations"]["description"] == hostile  # JSON carries the raw text
    assert TEST_BOT_TOKEN not in alertmanager.log()


def test_warning_is_a_ticket_only_and_info_goes_nowhere(
    alertmanager: RunningAlertmanager, sink: AlertSink
) -> None:
    instance = f"warn-{uuid.uuid4().hex[:8]}:9188"
    alertmanager.post_alerts(
        [alert("CustomerSyncQueueBacklog", "warning", instance),
         alert("CustomerSyncDebugInfo", "info", instance)]
    )  # fmt: skip
    sink.wait_for(lambda s: bool(webhook_names(s, instance)), 15, "the warning's webhook call")
    # one more group interval: anything else routed would have arrived by now
    marker = f"marker-{uuid.uuid4().hex[:8]}:9188"
    alertmanager.post_alerts([alert("CustomerSyncRedisDown", "critical", marker)])
    sink.wait_for(lambda s: bool(webhook_names(s, marker)), 15, "the marker")
    assert webhook_names(sink, instance) == {("CustomerSyncQueueBacklog", "warning", "firing")}
    assert telegram_for(sink, instance) == []
    ticket = [c for c in sink.webhooks if c.payload["groupLabels"].get("instance") == instance]
    assert {c.payload["receiver"] for c in ticket} == {"ticket"}


def test_critical_inhibits_the_matching_warning_and_dependencies_their_collectors(
    alertmanager: RunningAlertmanager, sink: AlertSink
) -> None:
    instance = f"inh-{uuid.uuid4().hex[:8]}:9188"
    alertmanager.post_alerts(
        [
            alert("CustomerSyncErrorRatioHigh", "critical", instance),
            alert("CustomerSyncOneCDown", "critical", instance),
            alert("CustomerSyncLogDiskAlmostFull", "critical", instance, labels={"dir": "app"}),
        ]
    )
    sink.wait_for(lambda s: len(webhook_names(s, instance)) == 3, 15, "the critical alerts")
    alertmanager.post_alerts(
        [
            alert("CustomerSyncErrorRatioHigh", "warning", instance),  # inhibited
            alert("CustomerSyncCollectorFailing", "warning", instance,
                  labels={"collector": "onec"}),  # inhibited by CustomerSyncOneCDown
            alert("CustomerSyncCollectorFailing", "warning", instance,
                  labels={"collector": "redis"}),  # not inhibited
            alert("CustomerSyncLogDiskAlmostFull", "warning", instance,
                  labels={"dir": "app"}),  # inhibited
            alert("CustomerSyncLogDiskAlmostFull", "warning", instance,
                  labels={"dir": "celery"}),  # another folder: not inhibited
        ]
    )  # fmt: skip
    sink.wait_for(
        lambda s: any(a["labels"].get("collector") == "redis" for a in s.webhook_alerts())
        and any(a["labels"].get("dir") == "celery" for a in s.webhook_alerts()),
        15, "the warnings that are not inhibited",
    )  # fmt: skip
    # a later marker proves the inhibited ones had their chance to arrive
    marker = f"marker-{uuid.uuid4().hex[:8]}:9188"
    alertmanager.post_alerts([alert("CustomerSyncRedisDown", "critical", marker)])
    sink.wait_for(lambda s: bool(webhook_names(s, marker)), 15, "the marker")
    delivered = [
        (a["labels"]["alertname"], a["labels"]["severity"], a["labels"].get("collector"),
         a["labels"].get("dir"))
        for a in sink.webhook_alerts() if a["labels"]["instance"] == instance
    ]  # fmt: skip
    assert sorted(set(delivered), key=str) == sorted(
        {
            ("CustomerSyncErrorRatioHigh", "critical", None, None),
            ("CustomerSyncOneCDown", "critical", None, None),
            ("CustomerSyncLogDiskAlmostFull", "critical", None, "app"),
            ("CustomerSyncCollectorFailing", "warning", "redis", None),
            ("CustomerSyncLogDiskAlmostFull", "warning", None, "celery"),
        },
        key=str,
    )


def test_a_page_of_one_shop_does_not_inhibit_another_shops_ticket(
    alertmanager: RunningAlertmanager, sink: AlertSink
) -> None:
    """The SLO alerts are per shop and have no instance: `shop` in the inhibition's equal list
    is what keeps shop a's page from silencing shop b's ticket."""
    a, b = (f"{x}-{uuid.uuid4().hex[:6]}" for x in "ab")

    def slo(shop: str, severity: str) -> dict[str, Any]:
        body = alert("CustomerSyncErrorBudgetBurn", severity, "unused")
        del body["labels"]["instance"]
        body["labels"]["shop"] = shop
        return body

    alertmanager.post_alerts([slo(a, "critical")])
    sink.wait_for(lambda s: any(x["labels"].get("shop") == a for x in s.webhook_alerts()),
                  15, "shop a's page")
    alertmanager.post_alerts([slo(a, "warning"), slo(b, "warning")])
    sink.wait_for(lambda s: any(x["labels"].get("shop") == b for x in s.webhook_alerts()),
                  15, "shop b's ticket")
    marker = f"marker-{uuid.uuid4().hex[:8]}:9188"
    alertmanager.post_alerts([alert("CustomerSyncRedisDown", "critical", marker)])
    sink.wait_for(lambda s: bool(webhook_names(s, marker)), 15, "the marker")
    delivered = {(x["labels"]["shop"], x["labels"]["severity"]) for x in sink.webhook_alerts()
                 if x["labels"].get("shop") in {a, b}}
    assert delivered == {(a, "critical"), (b, "warning")}
    # grouped per shop: each notification is about one shop
    groups = [c.payload["groupLabels"] for c in sink.webhooks
              if c.payload["groupLabels"].get("shop") in {a, b}]
    assert groups and all(set(g) == {"alertname", "shop"} for g in groups), groups


def test_redis_down_inhibits_the_celery_collector_it_takes_down(
    alertmanager: RunningAlertmanager, sink: AlertSink
) -> None:
    """Redis is the Celery broker: while CustomerSyncRedisDown pages, the celery collector's
    failure adds nothing; another collector's failure on the same exporter still arrives."""
    instance = f"broker-{uuid.uuid4().hex[:8]}:9188"
    alertmanager.post_alerts([alert("CustomerSyncRedisDown", "critical", instance)])
    sink.wait_for(lambda s: bool(webhook_names(s, instance)), 15, "the Redis page")
    alertmanager.post_alerts(
        [alert("CustomerSyncCollectorFailing", "warning", instance,
               labels={"collector": "celery"}),  # inhibited
         alert("CustomerSyncCollectorFailing", "warning", instance,
               labels={"collector": "disk"})]  # not inhibited
    )  # fmt: skip
    sink.wait_for(lambda s: any(a["labels"].get("collector") == "disk"
                                for a in s.webhook_alerts()
                                if a["labels"].get("instance") == instance),
                  15, "the disk collector's ticket")  # fmt: skip
    marker = f"marker-{uuid.uuid4().hex[:8]}:9188"
    alertmanager.post_alerts([alert("CustomerSyncRedisDown", "critical", marker)])
    sink.wait_for(lambda s: bool(webhook_names(s, marker)), 15, "the marker")
    delivered = {(a["labels"]["alertname"], a["labels"].get("collector"))
                 for a in sink.webhook_alerts() if a["labels"].get("instance") == instance}
    assert delivered == {("CustomerSyncRedisDown", None),
                         ("CustomerSyncCollectorFailing", "disk")}


def test_resolved_alerts_are_sent_as_resolved(
    alertmanager: RunningAlertmanager, sink: AlertSink
) -> None:
    instance = f"res-{uuid.uuid4().hex[:8]}:9188"
    alertmanager.post_alerts([alert("CustomerSyncRedisDown", "critical", instance)])
    sink.wait_for(lambda s: bool(telegram_for(s, instance)), 15, "the firing message")
    alertmanager.post_alerts([alert("CustomerSyncRedisDown", "critical", instance, resolved=True)])
    sink.wait_for(
        lambda s: ("CustomerSyncRedisDown", "critical", "resolved") in webhook_names(s, instance)
        and any("RESOLVED" in t for t in telegram_for(s, instance)),
        15, "the resolved notifications",
    )  # fmt: skip
    text = next(t for t in telegram_for(sink, instance) if "RESOLVED" in t)
    assert "1 resolved" in telegram_visible_text(text)


# --- the Telegram size limit ----------------------------------------------------------------


def worst(limit: int, special: str, filler: str = "ж") -> str:
    """A value that escapes to the most runes its cut allows (limit/10 escapable characters)."""
    n_special = limit // 10
    return special * n_special + filler * (limit - n_special) + "tail that is cut" * 50


@pytest.mark.parametrize(
    ("special", "status"), [('"', "firing"), ("<", "resolved"), ("&", "firing")]
)
def test_worst_case_message_stays_under_telegram_limit_and_is_never_cut(
    sink: AlertSink, tmp_path: Path, repo_root: Path, special: str, status: str
) -> None:
    """Every printed value at its limit and as expensive to escape as the cut allows.

    Alertmanager 0.25 would cut a message over 4096 runes (and log "Truncated message"), which
    can split a tag; the stand-in rejects anything Telegram would. The message must arrive whole.
    """
    require_binary("prometheus-alertmanager")
    # the longest http:// external URL that is still linked: 199 characters (200 for https)
    prefix = "http://127.0.0.1:65535"
    am = start_alertmanager(repo_root, tmp_path, sink, url_path="/" + "p" * (198 - len(prefix)))
    try:
        name, instance = worst(64, special), worst(64, special, "ю")
        url = "https://" + "r" * 192

        def batch(resolved_from: int) -> list[dict[str, Any]]:
            now = datetime.now(UTC)
            out = []
            for i in range(60):
                out.append(
                    {
                        # only critical alerts are routed to Telegram, so the severity printed
                        # there is always "critical"
                        "labels": {"alertname": name, "instance": instance,
                                   "severity": "critical", "item": str(i)},
                        "annotations": {"summary": worst(120, special),
                                        "description": worst(300, special, "🔥"),
                                        "runbook_url": url},
                        "startsAt": (now - timedelta(minutes=5)).isoformat(),
                    }
                )  # fmt: skip
                if i >= resolved_from:
                    out[-1]["endsAt"] = (now - timedelta(seconds=1)).isoformat()
            return out

        # Alertmanager sends a resolved message only for alerts it sent as firing before.
        am.post_alerts(batch(resolved_from=60))
        sink.wait_for(
            lambda s: any(_from(m.text, am) and "60 firing" in m.text for m in s.telegram),
            20,
            "the firing message",
        )
        am.post_alerts(batch(resolved_from=40 if status == "firing" else 0))
        # Wait for the message with the final counts (a flush may come between the two posts).
        counts = "40 firing, 20 resolved" if status == "firing" else "60 resolved"
        sink.wait_for(
            lambda s: any(_from(m.text, am) and counts in m.text for m in s.telegram),
            20,
            "the worst-case message",
        )
    finally:
        am.stop()
    messages = [m for m in sink.telegram if _from(m.text, am)]
    assert all(m.accepted for m in messages), [m.error for m in messages]
    message = next(m for m in messages if counts in m.text)
    assert message.accepted, message.error
    runes = len(message.text)
    assert runes <= TELEGRAM_WORST_CASE_RUNES <= TELEGRAM_MAX_CHARS, runes
    assert utf16_length(telegram_visible_text(message.text)) <= TELEGRAM_MAX_CHARS
    assert "Truncated message" not in am.log()
    visible = telegram_visible_text(message.text)
    if status == "firing":
        assert "40 firing, 20 resolved" in visible
        assert "… first 3 of 40 firing alerts shown" in visible
    else:
        assert "60 resolved" in visible
        assert "… first 3 of 60 resolved alerts shown" in visible
    assert visible.count("Runbook") == 3
    assert message.text.endswith('">Alertmanager</a>')


def _from(text: str, am: RunningAlertmanager) -> bool:
    """The message links to this Alertmanager (each test run has its own external URL)."""
    return f'<a href="{am.url}">Alertmanager</a>' in text


def test_template_file_has_no_manual_escaping(repo_root: Path) -> None:
    """html/template escapes for us in HTML mode; a manual escape would show '&amp;lt;'."""
    text = (repo_root / "alertmanager" / "templates" / "customer_sync.tmpl").read_text()
    assert not re.search(r"\|\s*(html|safeHtml)\b", text)
