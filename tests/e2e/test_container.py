"""The Docker image, built and run through testcontainers on Podman's Docker-compatible API, the
way docs/containers.md says, against a real PostgreSQL and Redis on this host; /metrics is
scraped from outside the container.

The container keeps the image's default command (config at /etc/customer-sync-exporter/
config.yaml, port 9188 published on 127.0.0.1) and reaches the host's loopback through
slirp4netns (10.0.2.2), so the documented run path is what is tested. Numbers are checked
against what the test wrote. The image's HEALTHCHECK is run as an engine runs it (see
tests/e2e/containers.py), over plain HTTP, over TLS and over mTLS with basic auth. Slow (about a
minute with a warm Podman cache; the first run builds the stand-in base image, about 2 minutes).
"""

from __future__ import annotations

import base64
import os
import ssl
import textwrap
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bcrypt
import docker
import psycopg
import pytest
import redis
from docker.models.images import Image
from prometheus_client.parser import text_string_to_metric_families
from testcontainers.core.container import DockerContainer
from testcontainers.core.image import DockerImage

from exporter.demo.postgres import EmbeddedPostgres
from exporter.demo.redis import RedisServer
from tests.e2e.containers import (
    REPO,
    base_url,
    build_exporter_image,
    git_revision,
    healthcheck_config,
    http_get,
    logs,
    package_version,
    publish_on_loopback,
    run_healthcheck,
    unique,
    wait_for,
)
from tests.synclog_rows import LogRow, insert_rows, insert_users
from tests.tls_certs import issue, make_ca

pytestmark = pytest.mark.e2e

HOST_LOOPBACK = "10.0.2.2"  # the host's 127.0.0.1 as seen through slirp4netns
CONFIG = """
database:
  dsn: ${CSE_DATABASE_DSN}
collectors:
  redis:
    url: ${CSE_REDIS_URL}
    queues: [celery, imports]
  disk:
    dirs:
      - {name: sync, path: /var/log/freesport}
  onec: {enabled: false}
  process: {enabled: false}
"""
COLLECTORS = ("synclog", "business", "postgres", "redis", "disk")
CONFIG_PATH = "/etc/customer-sync-exporter/config.yaml"


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(data: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in data, f"{name}{labels} is not exported"
    return data[key]


@pytest.fixture(scope="module")
def image(podman_api: docker.DockerClient) -> Image:
    return build_exporter_image()


def test_image_labels_user_port_healthcheck(image: Image) -> None:
    config = image.attrs["Config"]
    assert config["Labels"].items() >= {
        "org.opencontainers.image.source": "https://github.com/freesport/customer-sync-exporter",
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.version": package_version(),
        "org.opencontainers.image.revision": git_revision(),
        "org.opencontainers.image.title": "customer-sync-exporter",
    }.items()
    assert config["User"] == "10001:10001"
    assert "9188/tcp" in config["ExposedPorts"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["HEALTHCHECK_ADDRESS"] == "127.0.0.1:9188"
    assert config["Entrypoint"] == ["customer-sync-exporter"]
    assert f"--config.file={CONFIG_PATH}" in config["Cmd"]
    # Multi-stage: no compiler, no pip in the runtime venv; the version is the package's.
    probe = (DockerContainer(image.id)
             .with_kwargs(entrypoint=["sh", "-c"], network_mode="none")
             .with_command(["id -u; ls /opt/venv/bin; command -v gcc || echo no-gcc; "
                            "customer-sync-exporter --version"]))
    with probe:
        assert probe.wait() == 0
        out = logs(probe).split()
        # Podman's compat image inspect leaves the healthcheck out; the container has it.
        health = healthcheck_config(probe)
    assert out[0] == "10001"
    assert "pip" not in out and "pip3" not in out and "no-gcc" in out
    assert package_version() in out[out.index("no-gcc") + 1:]  # --version's output
    assert health["Test"][0] == "CMD" and "HEALTHCHECK_ADDRESS" in health["Test"][-1]
    seconds = 1_000_000_000
    assert (health["Interval"], health["Timeout"], health["Retries"]) == (
        15 * seconds, 5 * seconds, 3)


def test_build_refuses_a_version_that_is_not_the_packages(image: Image) -> None:
    """The version label can only be the package's: a wrong VERSION fails the build."""
    wrong = DockerImage(path=REPO, clean_up=False, network_mode="host",
                        buildargs={"VERSION": package_version() + ".1", "REVISION": "x"})
    with pytest.raises(docker.errors.BuildError) as failed:
        wrong.build()
    log = "".join(str(part.get("stream", "")) for part in failed.value.build_log)
    assert f"but the package is version {package_version()}" in log, log[-2000:]


def test_container_scraped_from_outside_matches_ground_truth(
    image: Image, pg: EmbeddedPostgres, db_dsn: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)

    # --- ground truth: rows, users, queue items and log files written by this test -----------
    rows = (
        [LogRow("created", "success", now - timedelta(seconds=30 + i)) for i in range(7)]
        + [LogRow("updated", "success", now - timedelta(minutes=10 + i)) for i in range(4)]
        + [LogRow("error", "failed", now - timedelta(seconds=5 + i), error_message="bad email")
           for i in range(3)]
    )
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        insert_rows(conn, rows)
        insert_users(conn, 5, created_in_1c=True, role="unregistered", needs_export=True)
        in_db: dict[str, int] = dict(conn.execute(
            "SELECT operation_type || '/' || status, count(*) FROM common_customersynclog"
            " GROUP BY 1").fetchall())
        export_queue = conn.execute(
            "SELECT count(*) FROM users WHERE needs_1c_export AND is_active").fetchone()
    assert in_db == {"created/success": 7, "updated/success": 4, "error/failed": 3}
    assert export_queue == (5,)

    redis_password = "r3dis-" + os.urandom(6).hex()
    rserver = RedisServer(tmp_path / "redis", password=redis_password).start()
    client = redis.Redis(port=rserver.port, password=redis_password)
    client.rpush("celery", *[f"task-{i}" for i in range(6)])
    queue_len = client.llen("celery")

    logs_dir = tmp_path / "logs"
    (logs_dir / "2026" / "11").mkdir(parents=True)
    sizes = {"sync.log": 2500, "sync.log.1": 100, "2026/11/import.log": 4096, "empty.log": 0}
    for name, size in sizes.items():
        (logs_dir / name).write_bytes(b"x" * size)
    walked = [Path(d) / f for d, _, files in os.walk(logs_dir) for f in files]
    for d, _, _ in os.walk(logs_dir):
        os.chmod(d, 0o755)  # the container's user 10001 must read it
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    config.chmod(0o644)

    pg_password = pg.password
    dsn = db_dsn.replace("127.0.0.1", HOST_LOOPBACK)
    exporter = (
        DockerContainer(image.id)
        .with_name(unique("cse-e2e-exporter"))
        .with_env("CSE_DATABASE_DSN", dsn)
        .with_env("CSE_REDIS_URL",
                  f"redis://:{redis_password}@{HOST_LOOPBACK}:{rserver.port}/0")
        .with_volume_mapping(config, CONFIG_PATH, "ro")
        .with_volume_mapping(logs_dir, "/var/log/freesport", "ro")
        .with_kwargs(network_mode="slirp4netns:allow_host_loopback=true",
                     read_only=True, cap_drop=["ALL"])
    )
    publish_on_loopback(exporter, 9188)
    try:
        with exporter:
            url = base_url(exporter, 9188)
            scraped: dict[str, str] = {}

            def all_collectors_ok() -> bool:
                status, body = http_get(f"{url}/metrics")
                scraped["body"] = body
                data = parse(body)
                return status == 200 and all(
                    data.get(("customer_sync_exporter_collector_success",
                              (("collector", c),))) == 1.0
                    for c in COLLECTORS
                ) and data.get(("customer_sync_operations_total",
                                (("operation_type", "created"), ("status", "success")))) == 7

            wait_for("every collector to succeed", all_collectors_ok, 60,
                     lambda: logs(exporter) + "\n" + scraped.get("body", "")[-3000:])
            data = parse(scraped["body"])

            assert value(data, "customer_sync_operations_total",
                         operation_type="updated", status="success") == 4
            assert value(data, "customer_sync_operations_total",
                         operation_type="error", status="failed") == 3
            assert value(data, "customer_sync_recent_operations",
                         operation_type="error", status="failed", window="5m") == 3
            assert value(data, "customer_sync_recent_operations",
                         operation_type="updated", status="success", window="5m") == 0
            assert value(data, "customer_sync_recent_operations",
                         operation_type="updated", status="success", window="1h") == 4
            assert value(data, "customer_sync_export_queue_customers") == 5
            assert value(data, "customer_sync_postgres_up") == 1
            assert value(data, "customer_sync_redis_up") == 1
            assert value(data, "customer_sync_redis_queue_length", queue="celery") == queue_len
            assert value(data, "customer_sync_redis_queue_length", queue="imports") == 0
            assert value(data, "customer_sync_log_dir_files", dir="sync") == len(walked)
            assert value(data, "customer_sync_log_dir_bytes", dir="sync") == sum(
                p.stat().st_size for p in walked)
            build = [dict(labels) for name, labels in data
                     if name == "customer_sync_exporter_build_info"]
            assert [b["version"] for b in build] == [package_version()]

            # Secrets reach the container only through the environment and leave it nowhere.
            _, landing = http_get(url + "/")
            container_logs = logs(exporter)
            for secret in (pg_password, redis_password):
                for where, text in (("/metrics", scraped["body"]), ("/", landing),
                                    ("logs", container_logs)):
                    assert secret not in text, f"a secret leaked into {where}"

            # The image's HEALTHCHECK (python stdlib, no curl) passes against the live exporter.
            status, body = http_get(url + "/health/live")
            assert status == 200, body
            assert run_healthcheck(exporter) == 0
            status, body = http_get(url + "/health/ready")
            assert status == 200, body
            assert exporter.exec(["id", "-u"]).output.decode().strip() == "10001"
    finally:
        rserver.stop()


def test_healthcheck_fails_when_nothing_serves(image: Image) -> None:
    """The same HEALTHCHECK reports failure when the exporter is not listening."""
    idle = (DockerContainer(image.id)
            .with_kwargs(entrypoint=["sleep"], network_mode="none")
            .with_command(["120"]))
    with idle:
        codes = [run_healthcheck(idle) for _ in range(3)]
    assert all(code != 0 for code in codes), codes


# --- the HEALTHCHECK when the exporter serves TLS --------------------------------------------

DISK_ONLY = """
collectors:
  synclog: {enabled: false}
  business: {enabled: false}
  postgres: {enabled: false}
  redis: {enabled: false}
  onec: {enabled: false}
  process: {enabled: false}
  disk:
    dirs:
      - {name: config, path: /etc/customer-sync-exporter}
"""
WEB_DIR = "/etc/customer-sync-exporter/web"
USER, PASSWORD = "prometheus", "scrape-" + os.urandom(4).hex()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, ssl.SSLContext]]:
    """A web folder with a server certificate, a client CA and the exporter's config, and a
    client context that trusts the server and presents a client certificate."""
    folder = tmp_path_factory.mktemp("web")
    ca = make_ca("e2e CA")
    issue(ca, "exporter", sans=("localhost", "127.0.0.1")).write(folder, "server")
    (folder / "ca.crt").write_text(ca.cert_pem)
    client_cert = issue(ca, "prometheus", client=True)
    client_cert.write(folder / "client", "client")
    (folder / "config.yaml").write_text(DISK_ONLY)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    (folder / "tls.yml").write_text(textwrap.dedent("""\
        tls_server_config:
          cert_file: server.crt
          key_file: server.key
        """))
    (folder / "mtls-auth.yml").write_text(textwrap.dedent(f"""\
        tls_server_config:
          cert_file: server.crt
          key_file: server.key
          client_auth_type: RequireAndVerifyClientCert
          client_ca_file: ca.crt
        basic_auth_users:
          {USER}: {hashed}
        """))
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the container's user 10001
    folder.chmod(0o755)
    context = ssl.create_default_context(cafile=str(folder / "ca.crt"))
    context.load_cert_chain(folder / "client" / "client.crt", folder / "client" / "client.key")
    yield folder, context


@pytest.mark.parametrize(("web_config", "flags", "healthy"), [
    ("tls.yml", [], True),
    ("mtls-auth.yml", ["--web.health-without-auth"], True),
    # The probe has no client certificate: without the flag the handshake refuses it.
    ("mtls-auth.yml", [], False),
])
def test_healthcheck_over_tls(image: Image, tls_files: tuple[Path, ssl.SSLContext],
                              web_config: str, flags: list[str], healthy: bool) -> None:
    folder, client_tls = tls_files
    exporter = (
        DockerContainer(image.id)
        .with_volume_mapping(folder, WEB_DIR, "ro")
        .with_command(["serve", f"--config.file={WEB_DIR}/config.yaml",
                       "--web.listen-address=:9188",
                       f"--web.config.file={WEB_DIR}/{web_config}", *flags])
        .with_kwargs(read_only=True, cap_drop=["ALL"])
    )
    publish_on_loopback(exporter, 9188)
    credentials = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    with exporter:
        url = base_url(exporter, 9188, "https")

        def scrape() -> tuple[int, str]:
            request = urllib.request.Request(f"{url}/metrics",
                                             headers={"Authorization": f"Basic {credentials}"})
            return http_get(request, context=client_tls)

        wait_for("the exporter to serve TLS", lambda: scrape()[0] == 200, 60,
                 lambda: logs(exporter))
        status, body = scrape()
        assert status == 200, body
        assert value(parse(body), "customer_sync_exporter_collector_success",
                     collector="disk") == 1
        # It speaks TLS only: a plain-HTTP request gets no page (an error, or at most a 400).
        try:
            plain = http_get(base_url(exporter, 9188) + "/health/live")[0]
        except OSError:
            plain = 0
        assert plain in {0, 400}, plain
        assert (run_healthcheck(exporter) == 0) is healthy, logs(exporter)
