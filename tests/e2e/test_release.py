"""A release as a packager makes it: ``python -m build`` on the tracked files, ``twine check``, then
the wheel installed into a clean venv (at the pinned versions) runs from a folder outside the
repository: ``--version``, ``check-config config.example.yaml`` and, with the ``demo`` extra,
``customer-sync-exporter demo`` until it serves the sync-log metrics.

Build isolation fetches setuptools from PyPI and the venv installs the dependencies from PyPI
(pip's cache makes later runs quick). About a minute.
"""

from __future__ import annotations

import email
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from packaging.version import Version
from prometheus_client.parser import text_string_to_metric_families

from exporter.demo.postgres import free_port
from tests.conftest import server_dir
from tests.test_constraints import normalize, pins

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def run(*args: str | Path, cwd: Path | None = None, timeout: float = 600,
        env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=None if env is None else os.environ | env)
    assert proc.returncode == 0, (f"{' '.join(map(str, args[:4]))} exited {proc.returncode}:\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    """Outside pytest's tmp_path: the demo's PostgreSQL runs as an unprivileged user when root,
    and must reach the venv's binaries (see tests/conftest.py:server_dir)."""
    folder = server_dir("release")
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def dist(work: Path) -> Path:
    """Wheel and sdist built from a copy of the tracked files, as from a fresh clone."""
    source = work / "source"
    tracked = run("git", "-C", REPO, "ls-files", "-z").split("\0")
    for name in filter(None, tracked):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    out = work / "dist"
    run(sys.executable, "-m", "build", "--outdir", out, source)
    return out


def only(folder: Path, pattern: str) -> Path:
    (path,) = folder.glob(pattern)
    return path


def test_wheel_holds_the_packages_licence_and_demo_data_only(dist: Path) -> None:
    wheel = only(dist, "*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    info = next(t for t in tops if t.endswith(".dist-info"))
    assert tops == {"exporter", "collectors", info}, tops
    assert "exporter/demo/schema.sql" in names  # what `customer-sync-exporter demo` reads
    assert {"exporter/py.typed", "collectors/py.typed", f"{info}/licenses/LICENSE"} <= set(names)
    metadata = email.message_from_bytes(zipfile.ZipFile(wheel).read(f"{info}/METADATA"))
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["Version"] == importlib.metadata.version("customer-sync-exporter")
    print(f"\n{wheel.name}: {wheel.stat().st_size} bytes, {len(names)} files")


def test_sdist_has_no_tests_or_benchmarks(dist: Path) -> None:
    with tarfile.open(only(dist, "*.tar.gz")) as sdist:
        names = [n.split("/", 1)[1] for n in sdist.getnames() if "/" in n]
    tops = {n.split("/", 1)[0] for n in names}
    assert not tops & {"tests", "bench", "scripts", "grafana", "prometheus", "docs"}, tops
    assert {"LICENSE", "README.md", "pyproject.toml", "PKG-INFO"} <= tops


def test_twine_check_passes(dist: Path) -> None:
    out = run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()))
    assert out.count("PASSED") == 2, out


@pytest.fixture(scope="module")
def venv(work: Path, dist: Path) -> Path:
    """A clean venv with the wheel and the demo extra, at constraints.txt's versions."""
    folder = work / "venv"
    run(sys.executable, "-m", "venv", folder)
    wheel = only(dist, "*.whl")
    run(folder / "bin" / "python", "-m", "pip", "install", "-q", "-c", REPO / "constraints.txt",
        f"{wheel}[demo]")
    return folder


def test_installed_versions_are_the_pinned_ones(venv: Path) -> None:
    listed = json.loads(run(venv / "bin" / "python", "-m", "pip", "list", "--format=json"))
    pinned = {name: version for name, (version, _) in pins().items()}
    installed = {normalize(d["name"]): Version(d["version"]) for d in listed}
    installed = {n: v for n, v in installed.items()
                 if n not in {"customer-sync-exporter", "pip", "setuptools"}}
    assert {n: str(v) for n, v in installed.items() if pinned.get(n) != v} == {}
    assert len(installed) > 20  # the runtime and demo dependencies, not an empty venv


def test_wheel_runs_version_and_check_config(venv: Path, work: Path) -> None:
    exe = venv / "bin" / "customer-sync-exporter"
    assert importlib.metadata.version("customer-sync-exporter") in run(exe, "--version", cwd=work)
    # The example references these secrets; an operator exports them first.
    secrets = {"PGPASSWORD": "example-pg", "ONEC_PASSWORD": "example-1c"}
    out = run(exe, "check-config", REPO / "config.example.yaml", cwd=work, env=secrets)
    assert "config.example.yaml" in out


def test_wheel_runs_the_demo(venv: Path, work: Path) -> None:
    exe = venv / "bin" / "customer-sync-exporter"
    port = free_port()
    log = work / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [exe, "demo", "--web.listen-address", f"127.0.0.1:{port}",
             "--data-dir", work / "demo", "--seed", "1"],
            cwd=work, stdout=out, stderr=subprocess.STDOUT)
    try:
        end, ok = time.monotonic() + 90, False
        while time.monotonic() < end and not ok and proc.poll() is None:
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=12).text
                ok = {s.labels["collector"] for f in text_string_to_metric_families(text)
                      for s in f.samples
                      if s.name == "customer_sync_exporter_collector_success" and s.value == 1
                      } >= {"synclog", "business", "postgres", "redis"}
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        assert ok, f"the demo never served the sync log:\n{log.read_text()[-3000:]}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait()
