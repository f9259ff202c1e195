"""Podman helpers shared by the container tests: setup, build, run, wait, clean up.

Podman is configured by scripts/container-setup.sh (runc, cgroupfs, local stand-in base images);
each helper fails the test, never skips it, when a tool is missing.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import require_binary

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "scripts" / "container-setup.sh"
EXPORTER_IMAGE = "localhost/customer-sync-exporter:e2e"


def podman(*args: str, check: bool = True, timeout: float = 120.0,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run podman; on failure the test fails with podman's own output."""
    proc = subprocess.run(
        [require_binary("podman"), *args], capture_output=True, text=True, timeout=timeout,
        input=input,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"podman {' '.join(args[:3])} ... exited {proc.returncode}:\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def setup_images(*names: str) -> None:
    """Install/configure Podman and build the missing stand-in base images (cached after once)."""
    require_binary("podman")
    proc = subprocess.run(["bash", str(SETUP), *names], capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"{SETUP} failed:\n{proc.stderr[-4000:]}")


def build_exporter_image(tag: str = EXPORTER_IMAGE) -> str:
    """Build the repository's Dockerfile; unchanged layers come from Podman's cache."""
    setup_images("python")
    # --format docker: the OCI format has no HEALTHCHECK, Podman would drop ours.
    podman("build", "--network", "host", "--format", "docker", "-t", tag, str(REPO),
           timeout=600)
    return tag


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def cleanup() -> Iterator[list[tuple[str, str]]]:
    """Collects (kind, name) of what a test created; removes it all at the end."""
    created: list[tuple[str, str]] = []
    try:
        yield created
    finally:
        for kind, name in reversed(created):
            if kind == "container":
                podman("rm", "-f", "-t", "2", name, check=False)
            elif kind == "volume":
                podman("volume", "rm", "-f", name, check=False)
            elif kind == "network":
                podman("network", "rm", "-f", name, check=False)


def logs(name: str) -> str:
    proc = podman("logs", name, check=False)
    return (proc.stdout + proc.stderr)[-4000:]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(what: str, check: Callable[[], bool], timeout: float,
             diagnose: Callable[[], str] = lambda: "") -> None:
    """Poll ``check`` until true; fail with ``diagnose()`` (container logs) on timeout."""
    end = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < end:
        try:
            if check():
                return
        except (OSError, ValueError) as exc:
            last_error = exc
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})\n"
                f"{diagnose()}")


def health_status(name: str) -> str:
    return podman("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()


def healthcheck_run(name: str) -> int:
    """Run the container's HEALTHCHECK now (there is no systemd timer here); its exit code."""
    return podman("healthcheck", "run", name, check=False).returncode
