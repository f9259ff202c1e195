"""Real local HTTP servers standing in for the two notification endpoints Alertmanager calls.

``AlertSink`` answers both on one port:

* ``POST /webhook...``: the story's WebhookAlerts receiver; the JSON payload is kept as sent.
* ``POST /bot<token>/sendMessage``: the Telegram Bot API (Alertmanager's ``api_url`` points
  here). It checks the message the way Telegram does before accepting it: only Telegram's HTML
  tags, every tag closed in order, only the entities Telegram decodes, at most 4096 characters
  after entity parsing. A message Telegram would reject gets Telegram's 400 answer, so a template
  that would fail in production fails here too.

Nothing here is a mock of our own code: Alertmanager really connects, and tests read what it sent.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

TELEGRAM_MAX_CHARS = 4096
# https://core.telegram.org/bots/api#html-style
TELEGRAM_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
     "span", "tg-spoiler", "tg-emoji", "blockquote"}
)  # fmt: skip
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^<>]*)?)>")
_ENTITY = re.compile(r"&(?:(lt|gt|amp|quot)|#(\d{1,7})|#x([0-9a-fA-F]{1,6}));")


class TelegramHTMLError(ValueError):
    """What Telegram would answer with ``can't parse entities``."""


def telegram_visible_text(message: str) -> str:
    """The text Telegram shows for an HTML message; raises where Telegram would reject it."""
    out: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(message):
        ch = message[i]
        if ch == "<":
            m = _TAG.match(message, i)
            if not m:
                raise TelegramHTMLError(f"Unsupported start tag at byte offset {i}")
            closing, name = m.group(1) == "/", m.group(2).lower()
            if name not in TELEGRAM_TAGS:
                raise TelegramHTMLError(f'Unsupported start tag "{name}" at byte offset {i}')
            if closing:
                if not stack or stack[-1] != name:
                    raise TelegramHTMLError(f'Unmatched end tag "{name}" at byte offset {i}')
                stack.pop()
            else:
                stack.append(name)
            i = m.end()
        elif ch == "&":
            m = _ENTITY.match(message, i)
            if m is None:
                out.append("&")  # Telegram leaves an unknown entity as literal text
                i += 1
                continue
            if m.group(1):
                out.append({"lt": "<", "gt": ">", "amp": "&", "quot": '"'}[m.group(1)])
            else:
                code = int(m.group(2)) if m.group(2) else int(m.group(3), 16)
                out.append(chr(code))
            i = m.end()
        elif ch == ">":
            out.append(">")
            i += 1
        else:
            out.append(ch)
            i += 1
    if stack:
        raise TelegramHTMLError(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(out)


def utf16_length(text: str) -> int:
    """Telegram measures text in UTF-16 code units: an emoji outside the BMP counts twice."""
    return len(text.encode("utf-16-le")) // 2


@dataclass
class TelegramMessage:
    token: str
    chat_id: int
    text: str
    parse_mode: str | None
    accepted: bool
    error: str = ""
    received_at: float = 0.0


@dataclass
class WebhookCall:
    path: str
    payload: dict[str, Any]
    received_at: float = 0.0


@dataclass
class AlertSink:
    """The two stand-ins on one ``127.0.0.1`` port; ``start()`` before use, ``stop()`` after."""

    webhooks: list[WebhookCall] = field(default_factory=list)
    telegram: list[TelegramMessage] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AlertSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.path.startswith("/bot"):
                    status, answer = sink._telegram(self.path, self.headers, body)
                else:
                    status, answer = sink._webhook(self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _webhook(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        payload = json.loads(body)
        with self._cond:
            self.webhooks.append(WebhookCall(path, payload, time.time()))
            self._cond.notify_all()
        return 200, {"ok": True}

    def _telegram(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        m = re.fullmatch(r"/bot([^/]+)/(\w+)", path)
        if m is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        token, method = m.groups()
        if method != "sendMessage":
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        params = _params(headers.get("Content-Type", ""), body)
        text = str(params.get("text", ""))
        parse_mode = params.get("parse_mode")
        chat_id = int(params.get("chat_id", 0))
        error = ""
        try:
            visible = telegram_visible_text(text) if parse_mode == "HTML" else text
            if utf16_length(visible) > TELEGRAM_MAX_CHARS:
                error = "Bad Request: message is too long"
        except TelegramHTMLError as exc:
            error = f"Bad Request: can't parse entities: {exc}"
        msg = TelegramMessage(token, chat_id, text, parse_mode, not error, error, time.time())
        with self._cond:
            self.telegram.append(msg)
            self._cond.notify_all()
        if error:
            return 400, {"ok": False, "error_code": 400, "description": error}
        result = {"message_id": len(self.telegram), "date": int(time.time()),
                  "chat": {"id": chat_id, "type": "group"}, "text": text}  # fmt: skip
        return 200, {"ok": True, "result": result}

    def wait_for(
        self, predicate: Callable[[AlertSink], bool], timeout: float, what: str = "condition"
    ) -> None:
        """Block until ``predicate(self)`` holds; fail with what was received so far."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {what}; "
                        f"webhooks={[_summary(w.payload) for w in self.webhooks]} "
                        f"telegram={[t.text[:200] for t in self.telegram]}"
                    )
                self._cond.wait(min(left, 0.2))

    def webhook_alerts(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every alert of every webhook call, optionally only those with ``status``."""
        with self._cond:
            calls = list(self.webhooks)
        return [
            a for c in calls for a in c.payload.get("alerts", [])
            if status is None or a.get("status") == status
        ]  # fmt: skip


def _params(content_type: str, body: bytes) -> dict[str, Any]:
    if content_type.startswith("application/json"):
        data = json.loads(body or b"{}")
        return dict(data)
    return {k: v[0] for k, v in parse_qs(body.decode()).items()}


def _summary(payload: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (a["labels"].get("alertname", "")[:40], a["status"]) for a in payload.get("alerts", [])
    ][:5]


# --- the real Alertmanager, started through alertmanager/render-config -------------------------

TEST_BOT_TOKEN = "123456:TEST-token_for-the_stand-in"
TEST_CHAT_ID = -1001234567890


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningAlertmanager:
    """An Alertmanager process and where it logs; ``stop()`` ends it."""

    process: subprocess.Popen[bytes]
    url: str
    config_path: Path
    log_path: Path

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Push alerts the way Prometheus does (API v2)."""
        body = json.dumps(alerts).encode()
        req = urllib.request.Request(
            f"{self.url}/api/v2/alerts", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200, resp.status

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def short_timer_template(
    repo_root: Path, workdir: Path, group_wait: str, group_interval: str
) -> Path:
    """The repository's config template with only the route timers shortened for tests."""
    text = (repo_root / "alertmanager" / "alertmanager.yml.tmpl").read_text()
    for old, new, count in (
        (r"(?m)^(\s+group_wait:) 30s$", rf"\1 {group_wait}", 1),
        (r"(?m)^(\s+group_interval:) (5m|1m)$", rf"\1 {group_interval}", 2),
    ):
        text, n = re.subn(old, new, text)
        assert n == count, f"alertmanager.yml.tmpl: expected {count} x {old!r}, found {n}"
    path = workdir / "alertmanager.yml.tmpl"
    path.write_text(text)
    return path


def start_alertmanager(
    repo_root: Path,
    workdir: Path,
    sink: AlertSink,
    *,
    group_wait: str = "1s",
    group_interval: str = "2s",
    url_path: str = "",
    cluster: Sequence[str] = ("--cluster.listen-address=",),
) -> RunningAlertmanager:
    """Render the config with render-config (as in production) and let it exec Alertmanager.

    ``cluster`` are its ``--cluster.*`` flags; the default runs it alone (no gossip port).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    out = workdir / "rendered" / "alertmanager.yml"
    env = {
        **os.environ,
        "TELEGRAM_BOT_TOKEN": TEST_BOT_TOKEN,
        "TELEGRAM_CHAT_ID": str(TEST_CHAT_ID),
        "WEBHOOK_URL": f"{sink.url}/webhook",
        "TELEGRAM_API_URL": sink.url,
        "ALERTMANAGER_TEMPLATE": str(
            short_timer_template(repo_root, workdir, group_wait, group_interval)
        ),
        "ALERTMANAGER_CONFIG_OUT": str(out),
    }
    log_path = workdir / "alertmanager.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(repo_root / "alertmanager" / "render-config"),
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.external-url=http://127.0.0.1:{port}{url_path}",
                *cluster,
                f"--storage.path={workdir / 'data'}",
                "--log.level=debug",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    am = RunningAlertmanager(process, f"http://127.0.0.1:{port}{url_path}", out, log_path)
    deadline = time.monotonic() + 15
    while True:
        if process.poll() is not None:
            raise AssertionError(f"alertmanager exited with {process.returncode}:\n{am.log()}")
        try:
            with urllib.request.urlopen(f"{am.url}/-/ready", timeout=1) as resp:
                if resp.status == 200:
                    return am
        except OSError:
            pass
        if time.monotonic() > deadline:
            am.stop()
            raise AssertionError(f"alertmanager not ready after 15s:\n{am.log()}")
        time.sleep(0.1)
