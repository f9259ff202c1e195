"""Containers for the e2e tests: testcontainers over Podman's Docker-compatible API.

There is no Docker engine here. The session fixture ``podman_api`` (tests/e2e/conftest.py) starts
``podman system service`` on a socket of its own and points testcontainers at it, so
testcontainers and the docker SDK under it talk to Podman as they would to Docker. Ryuk,
testcontainers' reaper, is off: its image would have to be pulled and no registry is reachable.
The fixture does Ryuk's job instead when the session ends: it removes every container, network
and volume labelled with this session's id.

Three things do not go through the API, and why:

* provisioning: installing Podman, its runc/cgroupfs settings and the stand-in base images
  (debootstrap, no registry) is host setup, done by scripts/container-setup.sh (``setup_images``);
* compose: testcontainers' ``DockerCompose`` drives the Compose v2 CLI (``docker compose``), which
  has no package here; tests/e2e/test_compose.py turns the resolved file into containers itself;
* healthchecks: Podman runs them from systemd timers and there is no systemd here, and the Docker
  API has no call that runs one. ``run_healthcheck`` does what an engine does: it reads the
  container's configured check through the API and executes it inside the container.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.models.images import Image
from testcontainers.core.container import DockerContainer
from testcontainers.core.image import DockerImage
from testcontainers.core.labels import LABEL_SESSION_ID, SESSION_ID

from tests.conftest import require_binary

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "scripts" / "container-setup.sh"
EXPORTER_IMAGE = "localhost/customer-sync-exporter:e2e"
# What testcontainers puts on everything it creates in this session (Ryuk's filter).
SESSION_LABELS = {LABEL_SESSION_ID: SESSION_ID}


def setup_images(*names: str) -> None:
    """Install/configure Podman and build the missing stand-in base images (cached after once)."""
    require_binary("podman")
    proc = subprocess.run(["bash", str(SETUP), *names], capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"{SETUP} failed:\n{proc.stderr[-4000:]}")


def package_version() -> str:
    return importlib.metadata.version("customer-sync-exporter")


def git_revision() -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def build_exporter_image(tag: str = EXPORTER_IMAGE) -> Image:
    """Build the repository's Dockerfile through the API, labelled as docs/containers.md says.

    Podman's compat build writes the Docker image format, which keeps the HEALTHCHECK. Unchanged
    layers come from Podman's cache. Callers use the returned image's id, not the tag, so a
    concurrent build elsewhere under the same tag cannot swap the image under a test.
    """
    setup_images("python")
    image = DockerImage(
        path=REPO, tag=tag, clean_up=False, network_mode="host",
        buildargs={"VERSION": package_version(), "REVISION": git_revision()},
    )
    try:
        image.build()
    except docker.errors.BuildError as exc:
        lines = "".join(str(part.get("stream") or part.get("error") or "")
                        for part in exc.build_log)
        pytest.fail(f"building the image failed: {exc}\n{lines[-4000:]}")
    return image.get_wrapped_image()


def publish_on_loopback(container: DockerContainer, port: int,
                        host_port: int | None = None) -> DockerContainer:
    """Publish ``port`` on 127.0.0.1 only (``with_bind_ports`` binds every interface)."""
    container.ports[f"{port}/tcp"] = ("127.0.0.1", host_port) if host_port else ("127.0.0.1",)  # type: ignore[assignment]
    return container


def base_url(container: DockerContainer, port: int, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{container.get_exposed_port(port)}"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def logs(container: DockerContainer) -> str:
    try:
        out, err = container.get_logs()
    except (docker.errors.APIError, RuntimeError) as exc:
        return f"(no logs: {exc})"
    return (out + err).decode(errors="replace")[-4000:]


def healthcheck_config(container: DockerContainer) -> dict[str, Any]:
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    config: dict[str, Any] | None = wrapped.attrs["Config"].get("Healthcheck")
    assert config and config.get("Test"), f"{wrapped.name} has no healthcheck"
    return config


def run_healthcheck(container: DockerContainer) -> int:
    """Run the container's configured HEALTHCHECK inside it, as an engine would; its exit code."""
    kind, *args = healthcheck_config(container)["Test"]
    assert kind in {"CMD", "CMD-SHELL"}, kind
    command = args if kind == "CMD" else ["/bin/sh", "-c", args[0]]
    result = container.exec(command)
    assert result.exit_code is not None
    return result.exit_code


def http_get(url: str | urllib.request.Request, timeout: float = 5.0,
             **kwargs: Any) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout, **kwargs) as resp:
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


def wait_healthy(container: DockerContainer, timeout: float) -> None:
    """Until the container's own healthcheck passes (what compose's service_healthy waits for)."""
    wait_for(f"{container.get_wrapped_container().name} to become healthy",
             lambda: run_healthcheck(container) == 0, timeout, lambda: logs(container))


def remove_session_leftovers(client: docker.DockerClient) -> list[str]:
    """Ryuk's job: remove what this session created and did not remove itself."""
    removed = []
    selector = {"label": [f"{k}={v}" for k, v in SESSION_LABELS.items()]}
    for container in client.containers.list(all=True, filters=selector):
        container.remove(force=True, v=True)
        removed.append(f"container {container.name}")
    for network in client.networks.list(filters=selector):
        network.remove()
        removed.append(f"network {network.name}")
    for volume in client.volumes.list(filters=selector):
        volume.remove(force=True)
        removed.append(f"volume {volume.name}")
    return removed
