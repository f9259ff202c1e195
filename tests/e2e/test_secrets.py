"""No secret ever leaves the exporter: a distinct marker in every secret field, looked for
everywhere the exporter (or the alerting pipeline) writes text.

Secret fields: the DSN password and ``database.password_file``, the Redis URL password and
``redis.password_file``, the 1C ``password``/``password_file`` and ``token``/``token_file``, the
Telegram bot token and the webhook URL (rendered into Alertmanager's config by
alertmanager/render-config). Places looked at: every log line (JSON and console), every page
(``/metrics``, ``/``, ``/health/live``, ``/health/ready``, a 404), ``check`` and ``check-config``
output, and the error messages in all of them, while the secrets are right, wrong, and while every
server is down. The fault catalogue (test_faults.py) runs with markers too and checks every scrape
body and its whole log.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from exporter.demo.onec import Mode
from tests.e2e.faults_stack import (
    EXE,
    ExporterProcess,
    Markers,
    Probe,
    Stack,
    build_stack,
    close_stack,
    leaks,
)
from tests.synclog_rows import LogRow, insert_rows, ts

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

# Replacement values a rotation elsewhere would set: the exporter's markers become wrong.
ROTATED = ("rotated-pg-0001", "rotated-redis-0002", "rotated-onec-0003")
RELOAD_MARKERS = ("reloadPg-SECRET-5e1d", "reloadRedis-SECRET-6f2a", "reloadOnec-SECRET-7a3b")
TELEGRAM_TOKEN = "123456:tgTok-SECRET-8c4d"
WEBHOOK_URL_SECRET = "whUrl-SECRET-9d5e"
BROKEN = {name: f"{name}-SECRET-{i:04x}" for i, name in enumerate(
    ("section", "redissection", "pwlist", "tokmap", "typo", "kvdsn", "urlport", "yaml",
     "redisscheme", "both", "envtype"), start=0xa10)}
MARKERS = Markers(
    pg_password="pgPw-SECRET-1a2b", redis_password="redisPw-SECRET-2b3c",
    onec_password="onecPw-SECRET-3c4d", onec_token="onecTok-SECRET-4d5e",
    onec_password_file="onecPwFile-SECRET-5e6f", onec_token_file="onecTokFile-SECRET-6f70",
    pg_password_file="pgPwFile-SECRET-7081", redis_password_file="redisPwFile-SECRET-8192",
    extra=(*RELOAD_MARKERS, TELEGRAM_TOKEN, WEBHOOK_URL_SECRET, *BROKEN.values()),
)
CONSOLE_LINE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z \[(info|warning|error|debug)\s*\] \S")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = build_stack("secrets", MARKERS)
    try:
        s.pg.start()
        s.pg.create_database()
        with s.connect() as conn:
            insert_rows(conn, [LogRow("created", "success", ts(time.time() - 5))] * 3)
        yield s
    finally:
        close_stack(s)


def superuser(s: Stack) -> psycopg.Connection[object]:
    """Over the Unix socket with local trust: works whatever the password is right now."""
    return psycopg.connect(host=str(s.pg.data_dir), port=s.pg.port, user="postgres",
                           dbname="postgres", autocommit=True)


@contextlib.contextmanager
def wrong_passwords(s: Stack) -> Iterator[None]:
    """Every password rotated elsewhere: what the exporter holds is now wrong."""
    with superuser(s) as conn:
        conn.execute(f"ALTER ROLE postgres PASSWORD '{ROTATED[0]}'")
        # Logged-in sessions survive a password change; drop the exporter's so it logs in again.
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE application_name = 'customer-sync-exporter'")
    client = redis.Redis(port=s.redis.port, password=MARKERS.redis_password)
    client.config_set("requirepass", ROTATED[1])
    client.close()
    s.restart_onec(password=ROTATED[2])
    try:
        yield
    finally:
        with superuser(s) as conn:
            conn.execute(f"ALTER ROLE postgres PASSWORD '{MARKERS.pg_password}'")
        client = redis.Redis(port=s.redis.port, password=ROTATED[1])
        client.config_set("requirepass", MARKERS.redis_password)
        client.close()
        s.restart_onec()


@contextlib.contextmanager
def servers_down(s: Stack) -> Iterator[None]:
    s.pg.stop()
    s.redis.kill()
    s.set_onec_mode(Mode.DOWN)
    try:
        yield
    finally:
        s.pg.start()
        s.restart_redis()
        s.set_onec_mode(Mode.OK)


def failing_with(reason: str, *collectors: str) -> Callable[[Probe], bool]:
    def check(p: Probe) -> bool:
        return all(p.reasons(c) == [reason] for c in collectors)

    return check


class Leak(AssertionError):
    """A secret marker was found: the one failure the Alertmanager case expects for now."""


def assert_clean(text: str, where: str) -> None:
    found = leaks(text, MARKERS)
    if found:
        raise Leak(f"{where} shows {found}")


# --- serve ---------------------------------------------------------------------------------------


def test_serve_json_with_right_wrong_and_unreachable_secrets_and_a_bad_reload(
    stack: Stack,
) -> None:
    s = stack
    exporter = ExporterProcess(s.config, s.base / "serve-json.log", "json").start()
    seen: dict[str, str] = {}
    try:
        s.wait_healthy(exporter=exporter)
        seen.update({f"healthy {k}": v for k, v in exporter.pages().items()})
        with wrong_passwords(s):
            s.wait_until(failing_with("auth", "postgres", "synclog", "redis", "onec"),
                         "auth failures everywhere", exporter=exporter)
            seen.update({f"wrong {k}": v for k, v in exporter.pages().items()})
        s.wait_healthy(exporter=exporter)
        with servers_down(s):
            s.wait_until(failing_with("connect", "postgres", "redis", "onec"),
                         "every server down", exporter=exporter)
            seen.update({f"down {k}": v for k, v in exporter.pages().items()})
        s.wait_healthy(exporter=exporter)
        # A reload of a broken file that carries new secrets (SIGHUP): they are not known to the
        # masker yet, so only the error messages themselves can keep them out of the log.
        original = s.config.read_text()
        broken = (
            original.replace(f"database:\n  dsn: '{s.dsn()}'\n  connect_timeout: 2s\n",
                             f"database: 'postgresql://postgres:{RELOAD_MARKERS[0]}"
                             f"@127.0.0.1:{s.pg.port}/freesport'\n")
            .replace(f"    url: '{s.redis.url()}'\n",
                     f"    url: 'http://:{RELOAD_MARKERS[1]}@127.0.0.1:{s.redis.port}/0'\n")
            .replace(f"    password: '{MARKERS.onec_password}'\n",
                     f"    password: ['{RELOAD_MARKERS[2]}']\n")
        )
        assert all(m in broken for m in RELOAD_MARKERS)
        s.config.write_text(broken)
        assert exporter.proc is not None
        exporter.proc.send_signal(signal.SIGHUP)
        s.wait_until(lambda p: p.value(
            "customer_sync_exporter_config_last_reload_successful") == 0, "reload rejected",
            exporter=exporter)
        seen.update({f"bad reload {k}": v for k, v in exporter.pages().items()})
        s.config.write_text(original)
        s.wait_until(lambda p: p.value(
            "customer_sync_exporter_config_last_reload_successful") == 1, "reload accepted", 8,
            exporter=exporter)
    finally:
        code = exporter.stop()
    assert code == 0
    events = exporter.events()  # every line is JSON
    for where, text in seen.items():
        assert_clean(text, where)
    assert_clean(exporter.log(), "the JSON log")
    # Not vacuous: the log did report each failure, and the rejected reload, without the secret.
    reported = {(e.get("collector"), e.get("reason")) for e in events}
    assert {("postgres", "auth"), ("redis", "auth"), ("onec", "auth"), ("postgres", "connect"),
            ("redis", "connect"), ("onec", "connect")} <= reported
    rejected = [str(e.get("error")) for e in events
                if str(e.get("event")).startswith("config reload rejected")]
    assert any(": database: must be a mapping of keys" in r for r in rejected), rejected
    assert any("collectors.onec.password" in r for r in rejected), rejected


def secret_file(s: Stack, name: str, value: str) -> Path:
    path = s.base / "secrets" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(value + "\n")
    return path


def file_config(s: Stack) -> Path:
    """The *_file variants, each holding a marker the servers do not accept."""
    path = s.base / "config-files.yaml"
    path.write_text(f"""\
scrape_timeout: 10s
database:
  dsn: 'postgresql://postgres@127.0.0.1:{s.pg.port}/freesport'
  password_file: '{secret_file(s, "pg", MARKERS.pg_password_file)}'
  connect_timeout: 2s
collectors:
  redis:
    url: 'redis://127.0.0.1:{s.redis.port}/0'
    password_file: '{secret_file(s, "redis", MARKERS.redis_password_file)}'
  disk:
    dirs: [{{name: app, path: '{s.dirs["app"]}'}}]
  onec:
    url: '{s.onec.url}'
    token_file: '{secret_file(s, "onec-token", MARKERS.onec_token_file)}'
    password_file: '{secret_file(s, "onec-password", MARKERS.onec_password_file)}'
    ca_file: '{s.base / "tls" / "ca.crt"}'
""")
    return path


def test_serve_console_with_secret_files_wrong_and_unreachable(stack: Stack) -> None:
    s = stack
    exporter = ExporterProcess(file_config(s), s.base / "serve-console.log", "console").start()
    seen: dict[str, str] = {}
    try:
        s.wait_until(failing_with("auth", "postgres", "synclog", "redis", "onec"),
                     "every file secret is refused", exporter=exporter)
        seen.update({f"wrong {k}": v for k, v in exporter.pages().items()})
        with servers_down(s):
            s.wait_until(failing_with("connect", "postgres", "redis", "onec"),
                         "every server down", exporter=exporter)
            seen.update({f"down {k}": v for k, v in exporter.pages().items()})
    finally:
        code = exporter.stop()
    assert code == 0
    for where, text in seen.items():
        assert_clean(text, where)
    lines = [line for line in exporter.log().splitlines() if line.strip()]
    # One event per line, except a library message's own continuation lines (indented).
    odd = [line for line in lines if not CONSOLE_LINE.match(line) and not line[0].isspace()]
    assert not odd, odd[:3]
    assert_clean(exporter.log(), "the console log")
    assert any("collector failed" in line and "reason=auth" in line for line in lines)


# --- check and check-config ----------------------------------------------------------------------


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def test_check_prints_reasons_but_no_secret(stack: Stack) -> None:
    s = stack
    good = run("check", "--config.file", str(s.config))
    assert good.returncode == 0, good.stdout + good.stderr
    bad = run("check", "--config.file", str(file_config(s)), "--log.format", "console")
    assert bad.returncode == 1
    rows = {line.split()[0]: line for line in bad.stdout.splitlines()[1:]}
    for name in ("postgres", "redis", "onec"):
        assert " auth: " in rows[name], rows[name]
    for result in (good, bad):
        assert_clean(result.stdout + result.stderr, "check")


def broken_configs(s: Stack) -> dict[str, str]:
    """Configs that fail to load, each with a secret where a mistake puts it."""
    b, dsn = BROKEN, f"127.0.0.1:{s.pg.port}/freesport"
    base = "collectors:\n  synclog: {enabled: false}\n  business: {enabled: false}\n" \
           "  postgres: {enabled: false}\n"
    onec = "  onec:\n    url: https://127.0.0.1:1/x\n"
    return {
        "section": f"database: postgresql://postgres:{b['section']}@{dsn}\n",
        "redissection": f"{base}  onec: {{enabled: false}}\n"
                        f"  redis: 'redis://:{b['redissection']}@127.0.0.1:6379/0'\n",
        "pwlist": f"{base}{onec}    username: u\n    password: ['{b['pwlist']}']\n",
        "tokmap": f"{base}{onec}    token: {{value: '{b['tokmap']}'}}\n",
        "typo": f"{base}{onec}    username: u\n    pasword: '{b['typo']}'\n",
        "kvdsn": f"database:\n  dsn: \"host=h password='{b['kvdsn']}\"\n",
        "urlport": f"{base}  onec:\n    url: 'https://u:{b['urlport']}@127.0.0.1:port/x'\n",
        "yaml": f"{base}{onec}    password: \"{b['yaml']}\n    token: x\n",
        "redisscheme": f"{base}  onec: {{enabled: false}}\n"
                       f"  redis:\n    url: 'http://:{b['redisscheme']}@127.0.0.1:6379/0'\n",
        "both": f"{base}{onec}    password: '{b['both']}'\n    password_file: /nonexistent\n",
        "envtype": f"{base}{onec}    password: ${{ONEC_PW}}\n    token: [${{ONEC_PW}}]\n",
    }


def test_check_config_and_serve_on_broken_configs_never_echo_a_secret(
    stack: Stack, tmp_path: Path
) -> None:
    paths = []
    for name, text in broken_configs(stack).items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        paths.append(path)
    result = run("check-config", *map(str, paths), ONEC_PW=BROKEN["envtype"])
    assert result.returncode == 1
    assert result.stdout == ""
    # Every file is reported (the secret is not what makes it fail silently).
    for path in paths:
        assert f"{path}:" in result.stderr, path.name
    assert_clean(result.stderr, "check-config")
    serve = run("serve", "--config.file", str(paths[0]), "--web.listen-address", "127.0.0.1:0")
    assert serve.returncode == 1
    assert f"{paths[0]}:1: database: must be a mapping of keys (got str)" in serve.stderr
    assert_clean(serve.stdout + serve.stderr, "serve with a broken config")
    good = run("check-config", str(stack.config))
    assert good.returncode == 0
    assert_clean(good.stdout + good.stderr, "check-config on a good file")


# --- the alerting side -----------------------------------------------------------------------


def alerting_env(work: Path, sink_port: int) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
        "TELEGRAM_CHAT_ID": "-100777",
        "WEBHOOK_URL": f"http://127.0.0.1:{sink_port}/hook/{WEBHOOK_URL_SECRET}",
        "TELEGRAM_API_URL": f"http://127.0.0.1:{sink_port}",
        "ALERTMANAGER_CONFIG_OUT": str(work / "rendered" / "alertmanager.yml"),
    }


def test_render_config_output_and_errors_never_show_the_token_or_webhook(
    repo_root: Path, tmp_path: Path
) -> None:
    script = repo_root / "alertmanager" / "render-config"
    env = alerting_env(tmp_path, 9)
    ok = subprocess.run(["/bin/sh", str(script), "--render-only"], env=env, capture_output=True,
                        text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    rendered = Path(env["ALERTMANAGER_CONFIG_OUT"])
    assert TELEGRAM_TOKEN in rendered.read_text()  # it is in the file, mode 0600, nowhere else
    assert rendered.stat().st_mode & 0o777 == 0o600
    outputs = [ok.stdout + ok.stderr]
    for override in ({"TELEGRAM_CHAT_ID": "chat"}, {"TELEGRAM_API_URL": "ftp://x"},
                     {"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN + "/x"},
                     {"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN.replace(":", "")},
                     {"WEBHOOK_URL": "ftp://" + WEBHOOK_URL_SECRET},
                     {"WEBHOOK_URL_FILE": str(tmp_path / "missing")},
                     {"TELEGRAM_BOT_TOKEN_FILE": str(tmp_path / "missing")}):
        failed = subprocess.run(["/bin/sh", str(script), "--render-only"],
                                env={**env, **override}, capture_output=True, text=True,
                                timeout=30)
        assert failed.returncode != 0, override
        outputs.append(failed.stdout + failed.stderr)
    for text in outputs:
        assert_clean(text, "render-config")


def test_alertmanager_delivery_failures_never_log_the_token_or_webhook(
    repo_root: Path, tmp_path: Path
) -> None:
    """Alertmanager started the production way (render-config execs it), both receivers
    unreachable, one critical alert: its log says delivery failed, without the secrets."""
    import json
    import urllib.request

    from exporter.demo.ports import free_port
    from tests.alert_receivers import short_timer_template
    from tests.conftest import require_binary

    require_binary("prometheus-alertmanager")
    port, closed = free_port(), free_port()
    env = {**os.environ, **alerting_env(tmp_path, closed), "ALERTMANAGER_TEMPLATE": str(
        short_timer_template(repo_root, tmp_path, "1s", "2s"))}
    log_path = tmp_path / "alertmanager.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(repo_root / "alertmanager" / "render-config"),
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
             f"--storage.path={tmp_path / 'data'}", "--log.level=debug"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 15
        while True:
            try:
                alert = [{"labels": {"alertname": "CustomerSyncOneCDown", "severity": "critical",
                                     "instance": "secrets-test"}}]
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/v2/alerts", json.dumps(alert).encode(),
                    {"Content-Type": "application/json"})
                urllib.request.urlopen(request, timeout=2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < end, log_path.read_text()
                time.sleep(0.1)
        while log_path.read_text().count("Notify attempt failed") < 2:  # both receivers
            assert time.monotonic() < end + 15, log_path.read_text()
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(10)
    text = log_path.read_text()
    assert "integration=telegram" in text and "integration=webhook" in text
    assert_clean(text, "Alertmanager's log")
