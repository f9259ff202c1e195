"""The bytes of an answer, framed by h11: the app's, an error the server gives on its own, and a
raw ``500`` for when framing itself failed. Pure: no sockets, no state but the h11 connection."""

from __future__ import annotations

from email.utils import formatdate

import h11

PHRASES = {400: "Bad Request", 431: "Request Header Fields Too Large",
           505: "HTTP Version Not Supported"}


def plain_headers(body: bytes, *, close: bool) -> list[tuple[str, str]]:
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
               ("Date", formatdate(usegmt=True))]
    if close:
        headers.append(("Connection", "close"))
    return headers


def error_answer(conn: h11.Connection, status: int) -> bytes:
    """``status`` (400, 431 or 505) with a plain-text body and ``Connection: close``; empty if
    h11 cannot send an answer in the state the connection is in."""
    phrase = PHRASES[status]
    body = f"{status} {phrase}\n".encode()
    try:
        data = conn.send(h11.Response(status_code=status, reason=phrase.encode(),
                                      headers=plain_headers(body, close=True))) or b""
        data += conn.send(h11.Data(data=body)) or b""
        return data + (conn.send(h11.EndOfMessage()) or b"")
    except h11.LocalProtocolError:
        return b""


def app_answer(conn: h11.Connection, status: str, headers: list[tuple[str, str]], body: bytes,
               *, head: bool, close: bool) -> bytes:
    """The WSGI app's answer as HTTP/1.1 bytes: its own ``Connection`` header replaced (keep-alive
    is the server's call), a ``Date`` added, no body for ``HEAD``."""
    code, _, phrase = status.partition(" ")
    headers = [(k, v) for k, v in headers if k.lower() != "connection"]
    headers.append(("Date", formatdate(usegmt=True)))
    if close:
        headers.append(("Connection", "close"))
    data = conn.send(h11.Response(status_code=int(code), reason=phrase.encode(),
                                  headers=headers)) or b""
    if body and not head:
        data += conn.send(h11.Data(data=body)) or b""
    return data + (conn.send(h11.EndOfMessage()) or b"")


def internal_error() -> bytes:
    """A ``500`` written by hand: used when the app or h11 failed, so h11 cannot be trusted."""
    body = b"500 Internal Server Error\n"
    raw = [b"HTTP/1.1 500 Internal Server Error\r\n"]
    raw += [f"{k}: {v}\r\n".encode() for k, v in plain_headers(body, close=True)]
    return b"".join([*raw, b"\r\n", body])
