"""A real local HTTP server standing in for the two notification endpoints Alertmanager calls.

``AlertSink`` answers both on one ``127.0.0.1`` port; the demo delivers its alerts here (neither
endpoint is reachable from a demo machine) and the tests read what Alertmanager sent:

* ``POST /webhook...``: the story's WebhookAlerts receiver; the JSON payload is kept as sent.
* ``POST /bot<token>/sendMessage``: the Telegram Bot API (Alertmanager's ``api_url`` points
  here). It checks the message the way Telegram does before accepting it: only Telegram's HTML
  tags, every tag closed in order, only the entities Telegram decodes, at most 4096 characters
  after entity parsing. A message Telegram would reject gets Telegram's 400 answer, so a template
  that would fail in production fails here too.

With ``record`` set, each notification also becomes a line in that file and in the log.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import structlog

log = structlog.get_logger(__name__)

TELEGRAM_MAX_CHARS = 4096
# https://core.telegram.org/bots/api#html-style
TELEGRAM_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
     "span", "tg-spoiler", "tg-emoji", "blockquote"}
)  # fmt: skip
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^<>]*)?)>")
_ENTITY = re.compile(r"&(?:(lt|gt|amp|quot)|#(\d{1,7})|#x([0-9a-fA-F]{1,6}));")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_NOT_FOUND = {"ok": False, "error_code": 404, "description": "Not Found"}


class TelegramHTMLError(ValueError):
    """What Telegram would answer with ``can't parse entities``."""


def _tag(message: str, i: int, stack: list[str]) -> int:
    """Check the tag at ``message[i]`` against the open ones; the index after it."""
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
    return m.end()


def _entity(message: str, i: int) -> tuple[str, int]:
    """The text of the entity at ``message[i]`` and the index after it."""
    m = _ENTITY.match(message, i)
    if m is None:
        return "&", i + 1  # Telegram leaves an unknown entity as literal text
    if m.group(1):
        return _NAMED[m.group(1)], m.end()
    code = int(m.group(2)) if m.group(2) else int(m.group(3), 16)
    return chr(code), m.end()


def telegram_visible_text(message: str) -> str:
    """The text Telegram shows for an HTML message; raises where Telegram would reject it."""
    out: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(message):
        ch = message[i]
        if ch == "<":
            i = _tag(message, i, stack)
        elif ch == "&":
            text, i = _entity(message, i)
            out.append(text)
        else:
            out.append(ch)
            i += 1
    if stack:
        raise TelegramHTMLError(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(out)


def utf16_length(text: str) -> int:
    """Telegram measures text in UTF-16 code units: an emoji outside the BMP counts twice."""
    return len(text.encode("utf-16-le")) // 2


def telegram_error(text: str, parse_mode: str | None) -> str:
    """Telegram's ``description`` for a message it would refuse; '' when it would send it."""
    try:
        visible = telegram_visible_text(text) if parse_mode == "HTML" else text
    except TelegramHTMLError as exc:
        return f"Bad Request: can't parse entities: {exc}"
    if utf16_length(visible) > TELEGRAM_MAX_CHARS:
        return "Bad Request: message is too long"
    return ""


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


def _params(content_type: str, body: bytes) -> dict[str, Any]:
    if content_type.startswith("application/json"):
        return dict(json.loads(body or b"{}"))
    return {k: v[0] for k, v in parse_qs(body.decode()).items()}


def _summary(payload: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (a["labels"].get("alertname", "")[:40], a["status"]) for a in payload.get("alerts", [])
    ][:5]


class AlertSink:
    """The two stand-ins on one port: bound at construction (``url`` is known before
    ``start()``), served by ``start()``, closed by ``stop()``. ``keep`` bounds how many calls of
    each kind are remembered (a long demo); ``None`` keeps them all (tests)."""

    def __init__(self, record: Path | None = None, *, keep: int | None = None) -> None:
        self.record = record
        self.keep = keep
        self.webhooks: list[WebhookCall] = []
        self.telegram: list[TelegramMessage] = []
        self.count = 0
        self._cond = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AlertSink:
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="alert-sink", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server.server_close()

    def answer(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        """The HTTP status and JSON answer for one POST."""
        if path.startswith("/bot"):
            return self._telegram(path, headers, body)
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, {"ok": False, "description": "the body is not JSON"}
        with self._cond:
            self._remember(self.webhooks, WebhookCall(path, payload, time.time()))
            self._cond.notify_all()
        names = sorted({a.get("labels", {}).get("alertname", "?")
                        for a in payload.get("alerts", [])})
        self._note(f"webhook {payload.get('receiver', '?')} {payload.get('status', '?')}: "
                   + ", ".join(names))
        return 200, {"ok": True}

    def _telegram(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        m = re.fullmatch(r"/bot([^/]+)/(\w+)", path)
        if m is None or m.group(2) != "sendMessage":
            return 404, _NOT_FOUND
        params = _params(headers.get("Content-Type", ""), body)
        text, parse_mode = str(params.get("text", "")), params.get("parse_mode")
        chat_id = int(params.get("chat_id", 0))
        error = telegram_error(text, parse_mode)
        msg = TelegramMessage(m.group(1), chat_id, text, parse_mode, not error, error, time.time())
        with self._cond:
            self._remember(self.telegram, msg)
            n = self.count
            self._cond.notify_all()
        shown = " ".join(text.split())[:300]
        self._note(f"telegram rejected ({error}): {shown}" if error else f"telegram: {shown}")
        if error:
            return 400, {"ok": False, "error_code": 400, "description": error}
        result = {"message_id": n, "date": int(time.time()),
                  "chat": {"id": chat_id, "type": "group"}, "text": text}  # fmt: skip
        return 200, {"ok": True, "result": result}

    def _remember(self, calls: list[Any], call: Any) -> None:
        """Keep ``call`` (and at most ``keep`` of its kind); call with the condition held."""
        calls.append(call)
        if self.keep is not None and len(calls) > self.keep:
            del calls[0]
        self.count += 1

    def _note(self, line: str) -> None:
        if self.record is None:
            return
        log.info("alert notification", notification=line)
        with self._cond, self.record.open("a", encoding="utf-8") as out:
            out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

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


def _handler(sink: AlertSink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep the output clean
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, answer = sink.answer(self.path, self.headers, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
