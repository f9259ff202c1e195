"""The HA pair's config files: one replica is the other with its replica label changed.

promtool checks them in tests/prometheus/test_rules.py; tests/e2e/test_ha.py and test_fleet.py
run them. Here: what deduplication depends on, read from the files themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HA = Path(__file__).resolve().parents[2] / "prometheus" / "ha"


def replica(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((HA / f"replica-{name}.yml").read_text())
    return data


def test_replicas_differ_only_in_the_replica_label() -> None:
    a, b = replica("a"), replica("b")
    assert a["global"]["external_labels"]["replica"] == "a"
    assert b["global"]["external_labels"]["replica"] == "b"
    b["global"]["external_labels"]["replica"] = "a"
    assert a == b


def test_alerts_reach_alertmanager_without_the_replica_label() -> None:
    """Both replicas' copies of an alert must have the same labels to be one alert."""
    alerting = replica("a")["alerting"]
    assert {"action": "labeldrop", "regex": "replica"} in alerting["alert_relabel_configs"]
    assert len(alerting["alertmanagers"]) == 1
    targets = alerting["alertmanagers"][0]["static_configs"][0]["targets"]
    assert len(targets) == 2, "every Alertmanager of the cluster, not one of them"


def test_every_series_leaves_with_cluster_and_replica_labels() -> None:
    config = replica("a")
    assert set(config["global"]["external_labels"]) == {"cluster", "replica"}
    assert [w["url"].rsplit("/", 3)[-3:] for w in config["remote_write"]] == [
        ["api", "v1", "write"]]


def test_shops_come_from_file_sd_with_a_shop_label() -> None:
    job = next(j for j in replica("a")["scrape_configs"]
               if j["job_name"] == "customer_sync_exporter")
    assert "static_configs" not in job
    (sd,) = job["file_sd_configs"]
    files = sorted((HA / sd["files"][0]).parent.glob(Path(sd["files"][0]).name))
    assert files, sd
    for path in files:
        for group in yaml.safe_load(path.read_text()):
            assert group["labels"]["shop"], path
