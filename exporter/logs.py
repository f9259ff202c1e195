"""Structured logs (JSON, logfmt or console) with every configured secret masked wherever it
appears.

The masker is an object the caller makes and passes on: to :func:`setup_logging`, which puts it
in every log line's processors, and to whoever knows the secrets (the daemon, rebuilding its
list from the configs still in use on every reload; ``check``, which prints rather than logs).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

from exporter.errors import MASK, scrub

__all__ = ["FORMATS", "LEVELS", "MASK", "SecretMasker", "setup_logging"]


class SecretMasker:
    """A structlog processor replacing known secret strings in every value of an event."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        """Mask exactly these from now on (the list is replaced at once: a line being masked
        meanwhile uses the old one or the new one)."""
        # Longest first, so a DSN is masked whole before the password inside it.
        self.secrets = sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        return scrub(text, self.secrets)

    def __call__(
        self, _: Any, __: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event.items():
            if isinstance(value, str):
                event[key] = self.mask(value)
            elif value is not None and not isinstance(value, int | float | bool):
                event[key] = self.mask(str(value))
        return event


# The Go exporters' spelling (promslog: debug, info, warn, error) and Python's ``warning``.
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "warning": logging.WARNING, "error": logging.ERROR}
FORMATS = ("json", "logfmt", "console")


def _renderer(fmt: str) -> Any:
    if fmt == "json":
        return structlog.processors.JSONRenderer()
    if fmt == "logfmt":  # one line per event (newlines escaped), the JSON lines' keys first
        return structlog.processors.LogfmtRenderer(
            key_order=["timestamp", "level", "event"], drop_missing=True, bool_as_flag=False)
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=False)
    raise ValueError(f"unknown log format {fmt!r}: one of {', '.join(FORMATS)}")


def setup_logging(level: str = "info", fmt: str = "json",
                  masker: SecretMasker | None = None) -> SecretMasker:
    """Log at ``level`` and above in ``fmt`` to stderr, through ``masker`` (a new, empty one
    if none is given), which is returned for the caller to fill."""
    masker = masker if masker is not None else SecretMasker()
    threshold = LEVELS[level.lower()]
    renderer = _renderer(fmt)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        masker,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries (psycopg_pool, urllib3) log through the standard library: same format, same mask.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(threshold, logging.INFO))
    return masker
