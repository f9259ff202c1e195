"""One way to put a failure into words, shared by every dependency's collector.

Each dependency keeps its own ``classify(exc) -> Reason`` (the libraries fail differently); the
text that goes with the reason is built from these helpers, so every message has the same
shape (``Type: first line``) and bound, and what might quote a secret is scrubbed the same way
the log masker does.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable

MASK = "***"
MAX_DESCRIPTION = 300  # characters: a message is one log line and one ``check`` line
_MAX_CHAIN = 10


def chain(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps, outermost first: urllib3's ``MaxRetryError.reason``,
    requests' first argument, else ``__cause__`` or ``__context__`` (cycles and depth bounded).

    Libraries such as requests wrap the error that says what happened in layers that only say
    where; the last element is the one that says what.
    """
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in out and len(out) < _MAX_CHAIN:
        out.append(current)
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
        elif current.args and isinstance(current.args[0], BaseException):
            current = current.args[0]
        else:
            current = current.__cause__ or current.__context__
    return out


def describe(exc: BaseException) -> str:
    """``Type: first line of the message``, at most :data:`MAX_DESCRIPTION` characters.

    The caller decides which exception of a :func:`chain` to describe and whether its text can
    quote a secret (then it is :func:`scrub`-bed with the secrets it knows).
    """
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        text = f"certificate verify failed: {exc.verify_message}"  # without OpenSSL's codes
    else:
        lines = str(exc).strip().splitlines()
        text = lines[0] if lines else ""
    name = type(exc).__name__
    return (f"{name}: {text}" if text else name)[:MAX_DESCRIPTION]


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by :data:`MASK`, the longest
    secret first (so a URL is masked whole before the password inside it)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text
