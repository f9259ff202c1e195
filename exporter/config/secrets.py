"""Every secret value of a config, so the log masker can hide it wherever it turns up."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

from pydantic import AnyUrl, BaseModel, SecretStr

from exporter.config.schema import Config


def iter_secrets(config: Config) -> Iterator[str]:
    """Every secret value in ``config``: secret strings, URL passwords (as written and decoded)
    and the password inside a DSN."""

    def walk(obj: Any) -> Iterator[str]:
        if isinstance(obj, SecretStr):
            value = obj.get_secret_value()
            if value:
                yield value
                yield from _dsn_passwords(value)
        elif isinstance(obj, AnyUrl) and obj.password:  # kept percent-encoded by pydantic
            yield obj.password
            yield urllib.parse.unquote(obj.password)
        elif isinstance(obj, BaseModel):
            for name in type(obj).model_fields:
                yield from walk(getattr(obj, name))
        elif isinstance(obj, list | tuple):
            for item in obj:
                yield from walk(item)

    yield from walk(config)


def _dsn_passwords(value: str) -> Iterator[str]:
    """The password inside a URL (as written and percent-decoded) or a key=value DSN."""
    match = re.match(r"^[a-z]+://[^:/@]*:([^@]+)@", value)
    if match:
        yield match.group(1)
        yield urllib.parse.unquote(match.group(1))
    elif "password" in value:
        from psycopg.conninfo import conninfo_to_dict

        try:
            password = conninfo_to_dict(value).get("password")
        except Exception:
            return
        if isinstance(password, str) and password:
            yield password
