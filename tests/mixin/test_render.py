"""The ${...} placeholders of the rule templates: filled exactly, or refused with file:line."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixin.config import load
from mixin.render import PLACEHOLDER, TEMPLATES, TemplateError, fill, number, rule_files

VALUES = {"a.b": 0.1, "n": 86400.0, "s": 'job="x"'}


def test_fill_substitutes_names_and_the_filters() -> None:
    assert fill("x > ${a.b} and ${a.b|pct} % of {${s}} every ${n}s (${n|hours} h)", VALUES) == (
        'x > 0.1 and 10 % of {job="x"} every 86400s (24 h)')


def test_promql_and_go_templates_are_left_alone() -> None:
    text = 'rate(x{a="b"}[5m]) > 0 {{ $labels.shop }} {{ $value | humanize }} $1'
    assert fill(text, VALUES) == text


@pytest.mark.parametrize(("text", "message"), [
    ("ok\nexpr: x > ${a.c}", r"t.yml:2: unknown placeholder \$\{a.c\}"),
    ("${a.b|percent}", r"t.yml:1: \$\{a.b\|percent\}: unknown filter"),
    ("${s|pct}", r"t.yml:1: \$\{s\|pct\}: unknown filter"),
    ("${s|hours}", r"t.yml:1: \$\{s\|hours\}: unknown filter"),
])  # fmt: skip
def test_unknown_names_and_filters_fail_with_the_line(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        fill(text, VALUES, "t.yml")


@pytest.mark.parametrize(("value", "text"), [
    (0.1, "0.1"), (0.10, "0.1"), (0.95, "0.95"), (14.4, "14.4"), (86400.0, "86400"),
    (2, "2"), (1 - 0.99, "0.01"), (0.1 * 3, "0.3"), (-1.5, "-1.5"),
])  # fmt: skip
def test_number_prints_what_a_reader_wrote(value: float, text: str) -> None:
    assert number(value) == text


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False))
def test_number_keeps_the_value_to_ten_decimals(value: float) -> None:
    assert math.isclose(float(number(value)), round(value, 10), rel_tol=0, abs_tol=1e-12)


def test_every_template_placeholder_is_known() -> None:
    values = load().values()
    for template in sorted(TEMPLATES.glob("*.yml")):
        names = {m.group(1) for m in PLACEHOLDER.finditer(template.read_text())}
        assert names, template
        assert names <= set(values), (template.name, names - set(values))


def test_generated_files_have_no_placeholder_left_and_say_where_they_come_from() -> None:
    for name, text in rule_files(load()).items():
        assert "${" not in text, name
        assert text.startswith(f"# GENERATED from mixin/rules/{name} and mixin/config.yml")
        assert re.search(r"(?m)^groups:$", text)
