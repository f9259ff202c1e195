"""constraints.txt pins what pyproject.toml asks for, and nothing else.

The file is generated (its header has the command) and used by scripts/venv.sh and the
Dockerfile. The test venv is installed through it, so after `ensure_venv test` the installed
distributions must be exactly the pins that apply here: a dependency added to pyproject.toml
without regenerating shows up installed but unpinned, a removed one leaves a pin nothing
installs, and a pin outside a declared range is named with the range it breaks.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
# Installed by `python3 -m venv` / the venv's own pip, not by the project.
BOOTSTRAP = {"pip", "setuptools", "wheel"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, tuple[Version, Requirement]]:
    out: dict[str, tuple[Version, Requirement]] = {}
    for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier  # exactly one ==
        assert spec.operator == "==", line
        out[normalize(req.name)] = (Version(spec.version), req)
    return out


def applicable_pins() -> dict[str, Version]:
    return {name: version for name, (version, req) in pins().items()
            if req.marker is None or req.marker.evaluate()}


def installed() -> dict[str, Version]:
    out = {}
    for dist in importlib.metadata.distributions():
        name = normalize(dist.metadata["Name"])
        if name not in BOOTSTRAP and name != normalize(PROJECT["name"]):
            out[name] = Version(dist.version)
    return out


def test_installed_venv_is_exactly_the_pins() -> None:
    have, want = installed(), applicable_pins()
    unpinned = {n: str(v) for n, v in have.items() if n not in want}
    missing = sorted(set(want) - set(have))
    other = {n: f"{have[n]} installed, {want[n]} pinned" for n in set(have) & set(want)
             if have[n] != want[n]}
    hint = "regenerate constraints.txt (command in its header), then `ensure_venv test`"
    assert not unpinned, f"installed but not pinned: {unpinned}; {hint}"
    assert not missing, f"pinned but not installed (stale pins?): {missing}; {hint}"
    assert not other, f"{other}; {hint}"


def test_every_declared_requirement_accepts_its_pin() -> None:
    declared = [*PROJECT["dependencies"],
                *(r for extra in PROJECT["optional-dependencies"].values() for r in extra)]
    pinned = pins()
    for text in declared:
        req = Requirement(text)
        name = normalize(req.name)
        if name == normalize(PROJECT["name"]):
            continue
        assert name in pinned, f"{text} has no pin in constraints.txt"
        version = pinned[name][0]
        assert req.specifier.contains(version, prereleases=True), f"{text} refuses pin {version}"
