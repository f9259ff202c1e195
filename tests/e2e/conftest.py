"""``podman_api``: Podman's Docker-compatible API for testcontainers, for the whole session."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from testcontainers.core.config import ConnectionMode, testcontainers_config

from exporter.demo.processes import stop_process
from tests.conftest import require_binary
from tests.e2e.containers import remove_session_leftovers, setup_images


@pytest.fixture(scope="session")
def podman_api() -> Iterator[docker.DockerClient]:
    """``podman system service`` on a socket of this session's own; testcontainers points at it.

    Ryuk is disabled (its image cannot be pulled here) and its job is done at teardown by
    ``remove_session_leftovers``. The engine runs on this host, so testcontainers is told to
    reach published ports on 127.0.0.1 (it would otherwise look for a gateway, as it does when
    it detects it runs inside a container).
    """
    setup_images("python")  # the runc/cgroupfs settings the service reads when it starts
    folder = Path(tempfile.mkdtemp(prefix="cse-podman-api-"))
    url = f"unix://{folder / 'podman.sock'}"
    with (folder / "service.log").open("wb") as log:
        service = subprocess.Popen(
            [require_binary("podman"), "system", "service", "--time=0", url],
            stdout=log, stderr=log)
    saved = {k: os.environ.get(k) for k in ("DOCKER_HOST", "TESTCONTAINERS_RYUK_DISABLED")}
    os.environ["DOCKER_HOST"] = url
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    testcontainers_config.ryuk_disabled = True
    testcontainers_config.connection_mode_override = ConnectionMode.docker_host
    testcontainers_config.tc_host_override = "127.0.0.1"
    client = None
    try:
        end = time.monotonic() + 30
        while client is None:
            try:
                client = docker.DockerClient(base_url=url)  # asks the API version: it answers
            except (docker.errors.DockerException, OSError):
                if service.poll() is not None or time.monotonic() > end:
                    pytest.fail("podman system service did not answer:\n"
                                + (folder / "service.log").read_text()[-3000:])
                time.sleep(0.2)
        yield client
    finally:
        try:
            if client is not None:
                left = remove_session_leftovers(client)
                if left:
                    print(f"\nremoved what the tests left behind: {', '.join(left)}")
                client.close()
        finally:
            stop_process(service, timeout=20)
            for key, val in saved.items():
                if val is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = val
            shutil.rmtree(folder, ignore_errors=True)
