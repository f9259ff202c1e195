"""The Docker image, built with Podman and run the way docs/containers.md says, against a real
PostgreSQL and Redis on this host; /metrics is scraped from outside the container.

The container keeps the image's default command (config at /etc/customer-sync-exporter/
config.yaml, port 9188 published) and reaches the host's loopback through slirp4netns
(10.0.2.2), so the documented run path is what is tested. Numbers are checked against what the
test wrote. Slow (about 30 s with a warm Podman cache; the first run builds the stand-in base
image, about 2 minutes).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from exporter.demo.ports import free_port
from exporter.demo.postgres import EmbeddedPostgres
from exporter.demo.redis import RedisServer
from tests.e2e.containers import (
    build_exporter_image,
    cleanup,
    health_status,
    healthcheck_run,
    http_get,
    logs,
    podman,
    unique,
    wait_for,
)
from tests.synclog_rows import LogRow, insert_rows, insert_users

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


def test_image_metadata_non_root_port_healthcheck() -> None:
    image = build_exporter_image()
    info = json.loads(podman("image", "inspect", image).stdout)[0]
    config = info["Config"]
    assert config["User"] == "10001:10001"
    assert "9188/tcp" in config["ExposedPorts"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["HEALTHCHECK_URL"] == "http://127.0.0.1:9188/health/live"
    health = info["Healthcheck"]["Test"]
    assert health[0] == "CMD" and "HEALTHCHECK_URL" in health[-1]
    assert config["Entrypoint"] == ["customer-sync-exporter"]
    assert "--config.file=/etc/customer-sync-exporter/config.yaml" in config["Cmd"]
    # Multi-stage: no compiler, no pip in the runtime venv.
    proc = podman("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
                  "id -u; ls /opt/venv/bin; command -v gcc || echo no-gcc")
    out = proc.stdout.split()
    assert out[0] == "10001"
    assert "pip" not in out and "pip3" not in out and "no-gcc" in out


def test_container_scraped_from_outside_matches_ground_truth(
    pg: EmbeddedPostgres, db_dsn: str, tmp_path: Path
) -> None:
    image = build_exporter_image()
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
    port = free_port()
    name = unique("cse-e2e-exporter")
    try:
        with cleanup() as created:
            podman(
                "run", "-d", "--name", name,
                "--network", "slirp4netns:allow_host_loopback=true",
                "-p", f"127.0.0.1:{port}:9188",
                "-e", f"CSE_DATABASE_DSN={dsn}",
                "-e", f"CSE_REDIS_URL=redis://:{redis_password}@{HOST_LOOPBACK}:{rserver.port}/0",
                "-v", f"{config}:/etc/customer-sync-exporter/config.yaml:ro",
                "-v", f"{logs_dir}:/var/log/freesport:ro",
                "--read-only", "--cap-drop", "ALL",
                image,
            )
            created.append(("container", name))
            url = f"http://127.0.0.1:{port}"
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
                     lambda: logs(name) + "\n" + scraped.get("body", "")[-3000:])
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

            # Secrets reach the container only through the environment and leave it nowhere.
            _, landing = http_get(url + "/")
            container_logs = logs(name)
            for secret in (pg_password, redis_password):
                for where, text in (("/metrics", scraped["body"]), ("/", landing),
                                    ("logs", container_logs)):
                    assert secret not in text, f"a secret leaked into {where}"

            # The image's HEALTHCHECK (python stdlib, no curl) passes against the live exporter.
            status, body = http_get(url + "/health/live")
            assert (status, json.loads(body)) == (200, {"status": "ok"})
            assert healthcheck_run(name) == 0
            assert health_status(name) == "healthy"
            status, body = http_get(url + "/health/ready")
            assert status == 200, body
            assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
    finally:
        rserver.stop()


def test_healthcheck_fails_when_nothing_serves() -> None:
    """The same HEALTHCHECK reports unhealthy when the exporter is not listening."""
    image = build_exporter_image()
    name = unique("cse-e2e-unhealthy")
    with cleanup() as created:
        podman("run", "-d", "--name", name, "--network", "none", "--entrypoint", "sleep",
               image, "120")
        created.append(("container", name))
        codes = [healthcheck_run(name) for _ in range(3)]
        assert all(code != 0 for code in codes), codes
        # Failures inside the 20 s start period do not count yet (Docker's rule too), so the
        # state is "starting", never "healthy". Podman 4.3 ignores --health-start-period unless
        # the command is overridden as well, which would no longer test the image's own check.
        assert health_status(name) == "starting"
