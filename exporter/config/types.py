"""The config's value types: durations, secrets read from files, table names, regexes, windows.

Each is an ``Annotated`` pydantic type whose validator says in one sentence what was expected, so
the located error line (``file:line: key: message``) needs nothing more.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: Any) -> float:
    """Prometheus-style duration (``500ms``, ``15s``, ``1h30m``) or plain seconds, to seconds."""
    if isinstance(value, bool):
        raise ValueError(
            f"a duration must be a string like '15s' or a number of seconds (got bool {value!r})"
        )
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("-"):
            raise ValueError(f"a duration cannot be negative (got {value!r})")
        if not text or _DURATION_PART.sub("", text):
            raise ValueError(f"invalid duration {value!r}: use e.g. '500ms', '15s', '5m', '1h30m'")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    else:
        raise ValueError(
            "a duration must be a string like '15s' or a number of seconds "
            f"(got {type(value).__name__})"
        )
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative (got {value!r})")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


MAX_SECRET_BYTES = 64 * 1024


def _read_secret_file(value: Any) -> Any:
    if isinstance(value, SecretStr):  # already read: a re-validation (Config.with_collectors)
        return value
    if not isinstance(value, str | os.PathLike):
        raise ValueError("must be a file path")
    path = Path(value)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read secret file {str(path)!r}: {exc.strerror}") from None
    if len(data) > MAX_SECRET_BYTES:
        raise ValueError(f"secret file {str(path)!r} is larger than {MAX_SECRET_BYTES // 1024} "
                         "KiB; it should hold one password or token")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"secret file {str(path)!r} is not UTF-8 text") from None


SecretFromFile = Annotated[SecretStr, BeforeValidator(_read_secret_file)]
"""A ``*_file`` key: the path is read at load and only its content (stripped) is kept."""

_IDENT = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$")


def _table_name(value: str) -> str:
    if not _IDENT.match(value):
        raise ValueError(f"invalid table name {value!r}: use 'table' or 'schema.table'")
    return value


TableName = Annotated[str, AfterValidator(_table_name)]


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(_regex)]


@dataclass(frozen=True)
class Window:
    """A sliding window: its label as written (``5m``) and its length in seconds."""

    label: str
    seconds: float


def _window(value: Any) -> Window:
    if isinstance(value, Window):
        return value
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("a window must be longer than 0s")
    label = value.strip() if isinstance(value, str) else f"{value:g}s"
    return Window(label, seconds)


WindowSpec = Annotated[
    Window, BeforeValidator(_window), PlainSerializer(lambda w: w.label, return_type=str)
]


class KeyedValueError(ValueError):
    """A validation error about something below the value being validated: ``loc`` is appended
    to the error's location, so the message names (and points at the line of) the real culprit."""

    def __init__(self, message: str, loc: tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.loc = loc


def unique(what: str, key: Callable[[Any], Any] = lambda v: v) -> AfterValidator:
    """A list validator: ``key`` of each item appears once; a repeat is named at its index."""

    def check(values: list[Any]) -> list[Any]:
        seen: set[Any] = set()
        for i, v in enumerate(values):
            k = key(v)
            if k in seen:
                raise KeyedValueError(f"duplicate {what} {k!r}", (i,))
            seen.add(k)
        return values

    return AfterValidator(check)


class Model(BaseModel):
    """Every section: an unknown key is an error, and a loaded config never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
