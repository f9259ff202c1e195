"""The house rules of issue 13, counted: no product module over 400 lines, no function over 60.

Counted with the AST over ``exporter/``, ``collectors/``, ``mixin/`` and ``bench/``. Dashboard
panel lists would be excepted (declarative); the mixin's dashboards are one function per row, so
none needs to be. The other entries of
``KNOWN`` belong to work in flight elsewhere: each is reported (a warning, not a failure) until
it lands, and a stale entry is reported too, so the list only shrinks.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("exporter", "collectors", "mixin", "bench")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

PANEL_LISTS: set[str] = set()  # declarative dashboard panel lists: excepted by the issue
KNOWN: set[str] = set()  # over the limits while being split elsewhere (none left: issue 13)


def _sizes() -> dict[str, int]:
    """Lines per module and per function (``path:qualified.name``, def line to last line)."""
    sizes: dict[str, int] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            text = path.read_text(encoding="utf-8")
            sizes[rel] = len(text.splitlines())
            _functions(ast.parse(text), rel, "", sizes)
    return sizes


def _functions(node: ast.AST, rel: str, prefix: str, sizes: dict[str, int]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = f"{prefix}{child.name}"
            if not isinstance(child, ast.ClassDef):
                assert child.end_lineno is not None
                sizes[f"{rel}:{name}"] = child.end_lineno - child.lineno + 1
            _functions(child, rel, f"{name}.", sizes)


def _over(key: str, lines: int) -> bool:
    limit = MAX_FUNCTION_LINES if ":" in key else MAX_MODULE_LINES
    return lines > limit


def test_no_module_over_400_lines_and_no_function_over_60() -> None:
    sizes = _sizes()
    over = {k: n for k, n in sizes.items() if _over(k, n) and k not in PANEL_LISTS}
    for key in sorted(over.keys() & KNOWN):
        warnings.warn(f"{key}: {over[key]} lines (known, in flight)", stacklevel=1)
    for key in sorted(KNOWN - over.keys()):
        warnings.warn(f"{key} is within the limits now: drop it from KNOWN", stacklevel=1)
    assert {k: n for k, n in over.items() if k not in KNOWN} == {}


@pytest.mark.parametrize("source, expected", [
    ("def f():\n    pass\n", {"m.py": 2, "m.py:f": 2}),
    ("class C:\n    def g(self):\n        def h():\n            return 1\n        return h\n",
     {"m.py": 5, "m.py:C.g": 4, "m.py:C.g.h": 2}),
])
def test_the_count_is_def_line_to_last_line(source: str, expected: dict[str, int]) -> None:
    sizes = {"m.py": len(source.splitlines())}
    _functions(ast.parse(source), "m.py", "", sizes)
    assert sizes == expected
