"""docker-compose.yml: validated by docker-compose itself, then run through testcontainers.

The slow test takes the file as ``docker-compose config`` resolves it and starts every service as
a testcontainers ``DockerContainer`` on Podman's Docker-compatible API: same images, commands,
entrypoints, environment, volumes, tmpfs, healthchecks, published ports (bound to 127.0.0.1),
``depends_on`` order and health conditions, on one network where each service is reachable by
its name. A key it does not know fails the test, so the file cannot grow a setting the test
silently drops. Not ``docker compose`` itself: testcontainers' ``DockerCompose`` drives the
Compose v2 CLI, which has no package here, and its ``--wait`` needs healthchecks the engine runs
by itself, which Podman without systemd does not (see tests/e2e/containers.py). Grafana is the
one service not started: the test suite has no Grafana image (no registry is reachable and
Grafana has no Debian package); its provisioning is checked by tests/grafana/test_dashboards.py.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from exporter.demo.ports import free_port
from tests.conftest import require_binary
from tests.e2e.containers import (
    REPO,
    SESSION_LABELS,
    build_exporter_image,
    http_get,
    logs,
    publish_on_loopback,
    setup_images,
    unique,
    wait_for,
    wait_healthy,
)

COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
NOT_RUN = {"grafana"}  # the test suite has no Grafana image: no registry, no Debian package
STANDINS = ("python", "postgres", "redis", "prometheus", "alertmanager")


def compose_config(env_file: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [require_binary("docker-compose"), "-f", str(COMPOSE), "--env-file", str(env_file),
         "config"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    loaded: dict[str, Any] = yaml.safe_load(proc.stdout)
    return loaded


def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, val = line.partition("=")
            out[key.strip()] = val.strip()
    return out


# --- fast checks of the file itself -------------------------------------------------------------


def test_compose_config_validates_with_env_example() -> None:
    config = compose_config(ENV_EXAMPLE)
    assert set(config["services"]) == {
        "exporter", "postgres", "redis", "prometheus", "alertmanager", "grafana"}
    assert set(config["volumes"]) >= {
        "postgres-data", "redis-data", "prometheus-data", "alertmanager-data", "grafana-data"}


def test_compose_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    """Every secret is required from .env: no default password hides in the compose file."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    proc = subprocess.run(
        [require_binary("docker-compose"), "-f", str(COMPOSE), "--env-file", str(empty),
         "config"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "POSTGRES_PASSWORD" in proc.stderr or "set " in proc.stderr


def test_compose_shape_ports_healthchecks_dependencies() -> None:
    config = compose_config(ENV_EXAMPLE)
    services = config["services"]
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"exporter", "grafana"}
    assert [p["target"] for p in services["exporter"]["ports"]] == [9188]
    assert [p["target"] for p in services["grafana"]["ports"]] == [3000]
    for name, svc in services.items():
        assert "healthcheck" in svc, f"{name} has no healthcheck"
        for dep, cond in svc.get("depends_on", {}).items():
            assert cond["condition"] == "service_healthy", f"{name} -> {dep}"
    assert set(services["exporter"]["depends_on"]) == {"postgres", "redis"}
    assert set(services["prometheus"]["depends_on"]) == {"exporter", "alertmanager"}
    assert set(services["grafana"]["depends_on"]) == {"prometheus"}
    # Data lives in named volumes, configuration comes from the repository, read-only.
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source, _target, mode = volume.split(":")
            if source.startswith("/"):
                assert mode == "ro", f"{name}: {volume} must be read-only"
                assert Path(source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in config["volumes"], f"{name}: {source} is not a named volume"
    mounts = {v.split(":")[1] for v in services["prometheus"]["volumes"]}
    assert "/etc/prometheus/rules" in mounts
    assert any("/etc/grafana/provisioning" in v for v in services["grafana"]["volumes"])
    assert services["exporter"]["image"] == "localhost/customer-sync-exporter:latest"


def test_env_example_holds_only_placeholders() -> None:
    """.env.example names every variable the compose file needs, with no real secret in it."""
    env = env_example()
    required = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\?", COMPOSE.read_text()))
    assert required <= set(env), f"missing in .env.example: {required - set(env)}"
    for key in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD",
                "TELEGRAM_BOT_TOKEN"):
        assert "change-me" in env[key], f"{key} in .env.example must be an obvious placeholder"
    assert env["WEBHOOK_URL"].startswith("https://") and ".invalid" in env["WEBHOOK_URL"]
    assert ".env" in (REPO / ".gitignore").read_text().split()


# --- the stack, run through testcontainers -----------------------------------------------------


def _unescape(value: Any) -> Any:
    """docker-compose config writes a literal $ as $$; the engine passes a single $."""
    if isinstance(value, str):
        return value.replace("$$", "$")
    if isinstance(value, list):
        return [_unescape(v) for v in value]
    return value


KNOWN_KEYS = {
    "image", "build", "command", "entrypoint", "environment", "volumes", "ports", "healthcheck",
    "depends_on", "restart", "read_only", "cap_drop", "security_opt", "tmpfs",
}
GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def nanoseconds(duration: str) -> int:
    """A compose duration (Go syntax: 15s, 1m30s) in the nanoseconds the Docker API takes."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"duration {duration!r}"
    return round(sum(float(n) * GO_UNITS[u] for n, u in parts) * 1e9)


def service_container(project: str, name: str, svc: dict[str, Any], network: Network,
                      image: str) -> DockerContainer:
    """The container one resolved compose service describes, on the project's network."""
    unknown = set(svc) - KNOWN_KEYS
    assert not unknown, f"service {name}: the test does not know {sorted(unknown)}; teach it"
    container = (DockerContainer(image).with_name(f"{project}_{name}")
                 .with_network(network).with_network_aliases(name))
    for key, val in (svc.get("environment") or {}).items():
        container.with_env(key, _unescape("" if val is None else str(val)))
    for volume in svc.get("volumes", []):
        source, target, mode = volume.split(":")
        container.with_volume_mapping(source if source.startswith("/") else f"{project}_{source}",
                                      target, mode)
    for tmpfs in svc.get("tmpfs", []):
        path, _, options = tmpfs.partition(":")
        container.tmpfs[path] = options
    for port in svc.get("ports", []):
        assert set(port) <= {"published", "target", "protocol", "mode"}, port
        publish_on_loopback(container, port["target"], int(port["published"]))
    kwargs: dict[str, Any] = {}
    if "restart" in svc:
        kwargs["restart_policy"] = {"Name": svc["restart"]}
    if svc.get("read_only"):
        kwargs["read_only"] = True
    if svc.get("cap_drop"):
        kwargs["cap_drop"] = svc["cap_drop"]
    if svc.get("security_opt"):
        kwargs["security_opt"] = svc["security_opt"]
    health = svc.get("healthcheck")
    if health:
        test = _unescape(health["test"])
        assert test[0] in {"CMD", "CMD-SHELL"}, test
        # Podman 4.3 splits the arguments of a CMD array on spaces when a container is created
        # (API and CLI alike; an image's HEALTHCHECK is kept whole): a shell string keeps them.
        shell = shlex.join(test[1:]) if test[0] == "CMD" else test[1]
        kwargs["healthcheck"] = {
            "test": ["CMD-SHELL", shell], "retries": int(health["retries"]),
            **{key: nanoseconds(health[key]) for key in ("interval", "timeout", "start_period")},
        }
    if "entrypoint" in svc:
        kwargs["entrypoint"] = _unescape(svc["entrypoint"])
    container.with_kwargs(**kwargs)
    command = svc.get("command")
    if command is not None:
        container.with_command(_unescape(command) if isinstance(command, list)
                               else shlex.split(command))
    return container


def start_order(services: dict[str, Any]) -> list[str]:
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"depends_on cycle: {(*path, name)}"
        if name in order:
            return
        for dep in services[name].get("depends_on", {}):
            visit(dep, (*path, name))
        order.append(name)

    for name in sorted(services):
        visit(name, ())
    return order


def exec_get(container: DockerContainer, url: str) -> Any:
    """GET a URL from inside a container (Prometheus is not published, by design)."""
    result = container.exec(["wget", "-q", "-O", "-", url])
    if result.exit_code != 0:
        raise OSError(f"wget {url}: exit {result.exit_code}: {result.output.decode()[-500:]}")
    return json.loads(result.output)


def published(container: DockerContainer) -> bool:
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    return any(wrapped.attrs["NetworkSettings"]["Ports"].values())


@pytest.mark.e2e
def test_stack_runs_and_prometheus_scrapes_the_exporter(
    podman_api: docker.DockerClient, tmp_path: Path
) -> None:
    setup_images(*STANDINS)
    project = unique("cse-e2e-stack")
    exporter_port = free_port()
    env = env_example() | {
        "POSTGRES_PASSWORD": "pg-" + project,
        "REDIS_PASSWORD": "redis-" + project,
        "EXPORTER_PORT": str(exporter_port),
        "GRAFANA_PORT": str(free_port()),
    }
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    config = compose_config(env_file)
    services = {k: v for k, v in config["services"].items() if k not in NOT_RUN}
    # The image compose would build from "build: .", by id (the tag is the shared store's).
    images = {name: svc["image"] for name, svc in services.items()}
    images["exporter"] = build_exporter_image().id

    started = time.monotonic()
    with ExitStack() as stack:
        network = stack.enter_context(Network())  # labelled with the session by testcontainers
        for volume in config["volumes"]:
            created = podman_api.volumes.create(f"{project}_{volume}", labels=SESSION_LABELS)
            stack.callback(created.remove, force=True)
        running: dict[str, DockerContainer] = {}
        for name in start_order(services):
            for dep, cond in services[name].get("depends_on", {}).items():
                if cond["condition"] == "service_healthy":
                    wait_healthy(running[dep], 120)
            container = service_container(project, name, services[name], network, images[name])
            running[name] = stack.enter_context(container)

        prometheus = running["prometheus"]
        wait_healthy(prometheus, 60)
        result: dict[str, Any] = {}

        def exporter_target_up() -> bool:
            targets = exec_get(prometheus, "http://127.0.0.1:9090/api/v1/targets")
            result["targets"] = targets
            active = [t for t in targets["data"]["activeTargets"]
                      if t["labels"]["job"] == "customer_sync_exporter"]
            return len(active) == 1 and active[0]["health"] == "up"

        wait_for("Prometheus to report the exporter target up", exporter_target_up, 60,
                 lambda: json.dumps(result.get("targets"), indent=1)[-3000:]
                 + logs(running["exporter"]))
        target = next(t for t in result["targets"]["data"]["activeTargets"]
                      if t["labels"]["job"] == "customer_sync_exporter")
        assert target["scrapeUrl"] == "http://exporter:9188/metrics"

        # What Prometheus scraped: the dependencies are up through the compose network.
        def query(expr: str) -> list[Any]:
            body = exec_get(prometheus, "http://127.0.0.1:9090/api/v1/query?query="
                            + expr.replace(" ", "%20"))
            assert body["status"] == "success", body
            res: list[Any] = body["data"]["result"]
            return res

        for metric in ("customer_sync_postgres_up", "customer_sync_redis_up"):
            assert [float(r["value"][1]) for r in query(metric)] == [1.0], metric
        # Every collector compose/exporter.yaml enables works against the stack's services
        # (synclog and business need the FREESPORT schema the postgres init step loads).
        # The first scrape may end before a collector's first run does (the sync-log tail reads
        # the table once); within a few scrapes every one must succeed.
        expected = {"synclog", "business", "postgres", "redis", "disk"}

        def all_collectors_ok() -> bool:
            ok = {r["metric"]["collector"]
                  for r in query("customer_sync_exporter_collector_success == 1")}
            return ok == expected

        wait_for("every collector to succeed", all_collectors_ok, 60, lambda: json.dumps(
            [r["metric"] for r in query("customer_sync_exporter_collector_failure == 1")])
            + logs(running["exporter"]))
        # The mounted rules are loaded, and Prometheus found the rendered Alertmanager.
        rules = exec_get(prometheus, "http://127.0.0.1:9090/api/v1/rules")
        groups = {g["name"] for g in rules["data"]["groups"]}
        assert {"customer_sync.recording", "customer_sync.alerts"} <= groups, groups
        ams = exec_get(prometheus, "http://127.0.0.1:9090/api/v1/alertmanagers")
        assert [a["url"] for a in ams["data"]["activeAlertmanagers"]] == [
            "http://alertmanager:9093/api/v2/alerts"]

        # Published: the exporter (and Grafana); not published: everything else.
        status, body = http_get(f"http://127.0.0.1:{exporter_port}/metrics")
        assert status == 200 and "customer_sync_exporter_collector_success" in body
        for secret in (env["POSTGRES_PASSWORD"], env["REDIS_PASSWORD"], env["TELEGRAM_BOT_TOKEN"]):
            assert secret not in body
        assert {name for name, c in running.items() if published(c)} == {"exporter"}
        # Alertmanager runs on the config render-config wrote into its tmpfs, not the template.
        status_json = exec_get(running["alertmanager"], "http://127.0.0.1:9093/api/v2/status")
        assert "telegram_configs" in status_json["config"]["original"]
        assert "${TELEGRAM_BOT_TOKEN}" not in status_json["config"]["original"]
    assert time.monotonic() - started < 300
