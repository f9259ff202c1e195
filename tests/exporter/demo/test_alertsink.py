"""The alert sink (``exporter/demo/alertsink.py``) as the demo uses it: Telegram's and a webhook
receiver's answers, and a line per notification in the record file. The Telegram checks and the
real Alertmanager deliveries are tested in ``tests/alertmanager/test_config.py``."""

from __future__ import annotations

from pathlib import Path

import requests

from exporter.demo.alertsink import AlertSink


def test_alert_sink_answers_like_telegram_and_a_webhook_receiver(tmp_path: Path) -> None:
    sink = AlertSink(tmp_path / "received.log").start()
    try:
        answer = requests.post(f"{sink.url}/bot123456:demo-token/sendMessage", timeout=5,
                               json={"chat_id": 1, "text": "🔥 CustomerSyncOneCDown\nfiring"})
        assert answer.status_code == 200
        body = answer.json()
        assert body["ok"] is True and body["result"]["chat"]["id"] == 1
        webhook = {"receiver": "page", "status": "firing", "alerts": [
            {"labels": {"alertname": "CustomerSyncOneCDown"}},
            {"labels": {"alertname": "CustomerSyncImportFailing"}}]}
        assert requests.post(f"{sink.url}/webhook", json=webhook, timeout=5).status_code == 200
    finally:
        sink.stop()
    lines = (tmp_path / "received.log").read_text(encoding="utf-8").splitlines()
    assert lines[0].endswith("telegram: 🔥 CustomerSyncOneCDown firing")
    assert lines[1].endswith("webhook page firing: CustomerSyncImportFailing, CustomerSyncOneCDown")


def test_what_telegram_would_refuse_is_refused_and_recorded_as_such(tmp_path: Path) -> None:
    sink = AlertSink(tmp_path / "received.log", keep=1).start()
    try:
        bad = requests.post(f"{sink.url}/bot1:t/sendMessage", timeout=5, json={
            "chat_id": 1, "parse_mode": "HTML", "text": "<b>CustomerSyncOneCDown</i>"})
        assert bad.status_code == 400 and "can't parse entities" in bad.json()["description"]
        assert requests.post(f"{sink.url}/bot1:t/getMe", timeout=5).status_code == 404
        assert requests.post(f"{sink.url}/webhook", data=b"{not json", timeout=5).status_code == 400
        good = requests.post(f"{sink.url}/bot1:t/sendMessage", timeout=5, json={
            "chat_id": 1, "parse_mode": "HTML", "text": "<b>CustomerSyncOneCDown</b> &amp; co"})
        assert good.status_code == 200
    finally:
        sink.stop()
    assert [m.accepted for m in sink.telegram] == [True]  # keep=1: only the newest is kept
    lines = (tmp_path / "received.log").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and "telegram rejected (Bad Request: can't parse entities" in lines[0]
    assert lines[1].endswith("telegram: <b>CustomerSyncOneCDown</b> &amp; co")
