"""Pydantic's validation errors as the config's messages: "did you mean", and no secret echoed.

The walk follows the model named ``root`` (the :class:`~exporter.config.schema.Config`) along an
error's location to learn whether the key is a secret and what its neighbours are called.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any, get_args

from pydantic import BaseModel, SecretStr, ValidationError

from exporter.config.types import KeyedValueError
from exporter.yaml_located import Loc, format_loc

# Errors whose message does not say what was given; the input is appended (never for URLs: a
# URL may carry credentials).
_TYPE_ERRORS = {"int_type", "int_parsing", "bool_type", "bool_parsing", "string_type", "float_type",
                "float_parsing", "int_from_float", "list_type", "literal_error",
                "string_pattern_mismatch", "greater_than", "greater_than_equal", "less_than",
                "less_than_equal", "too_short"}
_MAPPING_ERRORS = {"model_type", "dict_type", "model_attributes_type"}


def _types(annotation: Any) -> Iterator[Any]:
    yield annotation
    for arg in get_args(annotation):
        yield from _types(arg)


def _walk_fields(root: type[BaseModel], loc: Loc) -> Iterator[tuple[str, Any, list[type]]]:
    """For each key of ``loc``: the model holding it and the classes in the key's type."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        annotation = None if field is None else field.annotation
        types = [t for t in _types(annotation) if isinstance(t, type)] if field else []
        yield part, model, types
        model = next((t for t in types if issubclass(t, BaseModel)), None)


def _is_secret(root: type[BaseModel], loc: Loc) -> bool:
    """Whether ``loc`` is (inside) a secret field, whose input must never be echoed."""
    return any(issubclass(t, SecretStr) for _, _, types in _walk_fields(root, loc) for t in types)


def _unknown_key(root: type[BaseModel], loc: Loc) -> str:
    *_, (key, model, _) = _walk_fields(root, loc)
    close = difflib.get_close_matches(key, getattr(model, "model_fields", {}), n=1, cutoff=0.7)
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


def message(root: type[BaseModel], err: Any) -> str:
    """What one pydantic error says, in the config's words."""
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return _unknown_key(root, tuple(err["loc"]))
    if kind == "missing":
        return "required key is missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    value = err.get("input")
    if kind in _MAPPING_ERRORS:
        msg = "must be a mapping of keys"
    if kind in _TYPE_ERRORS | _MAPPING_ERRORS:
        # Only scalars of non-secret keys are quoted: a list or mapping may hold a secret, and so
        # may a scalar where a section belongs (``database: postgresql://u:PASSWORD@h/db``).
        hidden = _is_secret(root, tuple(err["loc"])) or kind in _MAPPING_ERRORS
        shown = "" if hidden or isinstance(value, list | dict) else f" {value!r}"
        msg += f" (got {type(value).__name__}{shown})"
    return str(msg)


def error_loc(err: Any) -> Loc:
    """The error's location, pinned further down by a :class:`KeyedValueError`."""
    error = (err.get("ctx") or {}).get("error")
    extra = error.loc if isinstance(error, KeyedValueError) else ()
    return (*err["loc"], *extra)


def error_lines(root: type[BaseModel], exc: ValidationError, where: Any) -> list[str]:
    """``exc`` as ``where(loc): key: message`` lines; ``where`` gives the ``file:line`` part."""
    return [f"{where(error_loc(e))}: {format_loc(error_loc(e))}: {message(root, e)}"
            for e in exc.errors()]
