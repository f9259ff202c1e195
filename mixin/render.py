"""Fill the ``${...}`` placeholders of the rule templates in mixin/rules/ from the config.

The templates are the rule files as they ship, comments included, with ``${dotted.name}`` where
a configured value goes (jsonnet mixins do the same with ``%(name)s``). ``${name|pct}`` prints
a ratio as a percentage (0.1 -> 10), ``${name|hours}`` seconds as hours (86400 -> 24). PromQL
and Go templates never write ``${``, so nothing else in a rule file can be mistaken for a
placeholder; an unknown name or filter is an error, never an empty string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from mixin.config import MixinConfig

TEMPLATES = Path(__file__).resolve().parent / "rules"
PLACEHOLDER = re.compile(r"\$\{([a-z_][a-z0-9_.]*)(?:\|([a-z]+))?\}")


class TemplateError(Exception):
    """A template names a value or a filter that does not exist."""


def number(value: float) -> str:
    """A number as PromQL and a reader want it: 86400 not 86400.0, 0.1 not 0.1000000001."""
    rounded = round(float(value), 10)
    if rounded == int(rounded):
        return str(int(rounded))
    return repr(rounded)


def _format(value: float | str, flt: str | None) -> str:
    if flt is None:
        return value if isinstance(value, str) else number(value)
    if flt == "pct" and not isinstance(value, str):
        return number(value * 100)
    if flt == "hours" and not isinstance(value, str):
        return number(value / 3600)
    raise TemplateError(f"unknown filter |{flt}")


def fill(text: str, values: Mapping[str, float | str], where: str = "template") -> str:
    def one(match: re.Match[str]) -> str:
        name, flt = match.group(1), match.group(2)
        line = text.count("\n", 0, match.start()) + 1
        if name not in values:
            raise TemplateError(f"{where}:{line}: unknown placeholder ${{{name}}}")
        try:
            return _format(values[name], flt)
        except TemplateError as exc:
            raise TemplateError(f"{where}:{line}: ${{{name}|{flt}}}: {exc}") from None

    return PLACEHOLDER.sub(one, text)


def header(template: Path) -> str:
    return (
        f"# GENERATED from mixin/rules/{template.name} and mixin/config.yml by\n"
        "# `.venv/bin/python -m mixin.build`: edit those, not this file (tests fail until the\n"
        "# checked-in copy is regenerated).\n#\n"
    )


def rule_files(config: MixinConfig, templates: Path = TEMPLATES) -> dict[str, str]:
    """``{file name: text}`` of every rule file, in the order of the template names."""
    values = config.values()
    return {
        t.name: header(t) + fill(t.read_text(encoding="utf-8"), values, f"mixin/rules/{t.name}")
        for t in sorted(templates.glob("*.yml"))
    }
