"""Loading the config file: the located YAML, validated into :class:`Config` in one step.

Every problem is listed at once, each as ``file:line: dotted.key: message``
(``config.yaml:12: collectors.redis.queues[2]: duplicate queue 'celery'``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from exporter.config.errors import error_lines
from exporter.config.schema import Config
from exporter.yaml_located import ConfigError, LocatedYaml, load_located_yaml, parse_located_yaml


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, locate and validate ``path``; ``${VAR}`` comes from ``environ`` (default: the
    process environment). Raises :class:`ConfigError` listing every problem."""
    return _validate(load_located_yaml(path, expand_env=True, environ=environ))


def parse_config(text: str, filename: str, environ: Mapping[str, str]) -> Config:
    """:func:`load_config` for text already read (``filename`` names it in errors)."""
    return _validate(parse_located_yaml(text, filename, environ=environ).checked())


def _validate(doc: LocatedYaml) -> Config:
    try:
        return Config.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(
            error_lines(Config, exc, lambda loc: f"{doc.filename}:{doc.line_of(loc)}")
        ) from None
