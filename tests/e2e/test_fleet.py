"""A fleet of shops behind the HA pair, and long-term storage by remote_write.

Three shops, each its own database (FREESPORT schema), 1C stand-in and exporter, listed in a
file_sd file with their ``shop`` labels; both replicas of prometheus/ha/replica-{a,b}.yml scrape
them and remote_write to a third Prometheus run as prometheus/ha/longterm.yml with
``--web.enable-remote-write-receiver`` (Debian's 2.42). Proven:

- discovery: every shop is a target of both replicas, with its label;
- long-term storage: for every shop, the receiver holds ``customer_sync_operations_total`` from
  both replicas (told apart by ``replica``), equal to the rows in that shop's database (SQL);
- per shop: after a different mix of failures in each shop, the recording rules give each shop
  its own error ratio (worked out from the rows written), the alerts fire for exactly the shops
  over their thresholds and name them, and the dashboards' own queries, with the shop variable
  set, show that shop's numbers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import yaml

from exporter.demo.postgres import EmbeddedPostgres
from tests.conftest import require_binary
from tests.e2e.topology import (
    HA,
    REPO,
    Prometheus,
    Shop,
    Stack,
    insert_rows,
    operation_counts,
    replica_config,
    scaled_rules,
    start_prometheus,
    start_shop,
    stop_shop,
    wait_until,
    write_targets,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# Different history per shop, so a value found under the wrong shop label would show.
HISTORY = {
    "msk": {("updated", "success"): 120, ("skipped", "success"): 10},
    "spb": {("updated", "success"): 70, ("created", "success"): 30, ("error", "failed"): 4},
    "kzn": {("created", "success"): 15, ("created", "warning"): 5},
}
# Rows written during the test: (successes, failed, error). Error ratios 0, 0.2 and 0.5.
TRAFFIC = {"msk": (100, 0, 0), "spb": (80, 20, 0), "kzn": (50, 30, 20)}
RATIO = {shop: (f + e) / (ok + f + e) for shop, (ok, f, e) in TRAFFIC.items()}
BUDGET = 0.01  # the 99 % SLO


@pytest.fixture(scope="module")
def fleet(pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_binary("prometheus")
    tmp = tmp_path_factory.mktemp("fleet")
    with ExitStack() as cleanup:
        shops: list[Shop] = []
        for name, history in HISTORY.items():
            shops.append(start_shop(pg, name, history))
            cleanup.callback(stop_shop, pg, shops[-1])
        longterm = start_prometheus(
            "longterm", tmp / "longterm", yaml.safe_load((HA / "longterm.yml").read_text()),
            "--web.enable-remote-write-receiver")
        cleanup.callback(longterm.stop)
        targets = write_targets(tmp / "targets" / "shops.yml", shops)
        rules, fors = scaled_rules(tmp / "rules")
        replicas: list[Prometheus] = []
        for replica in ("a", "b"):
            config = replica_config(replica, targets=targets, rule_files=rules, alertmanagers=[],
                                    remote_write=f"{longterm.url}/api/v1/write")
            replicas.append(start_prometheus(replica, tmp / f"prometheus-{replica}", config))
            cleanup.callback(replicas[-1].stop)
        stack = Stack(shops, replicas, fors, longterm=longterm)
        wait_until(lambda: all(s.synclog_ready() for s in shops), 60,
                   "every exporter's start-up read of its sync log")
        # Ten seconds of samples first: rate() over younger data extrapolates each series to
        # its own zero point, so the ratios would only converge as the data ages.
        wait_until(
            lambda: all({r["metric"]["shop"] for r in p.query(
                'count_over_time(customer_sync_operations_total'
                '{operation_type="updated", status="success"}[1m]) >= 10')}
                == set(HISTORY) for p in replicas),
            60, "both replicas to have 10 s of every shop's counters", stack.debug)
        yield stack


def shop(stack: Stack, name: str) -> Shop:
    return next(s for s in stack.shops if s.name == name)


def test_every_shop_is_discovered_from_file_sd_with_its_label(fleet: Stack) -> None:
    for replica in fleet.replicas:
        up = {(r["metric"]["shop"], r["metric"]["instance"]): r["value"][1]
              for r in replica.query('up{job="customer_sync_exporter"}')}
        assert up == {(s.name, s.instance): "1" for s in fleet.shops}, replica.name


def test_longterm_store_holds_every_shops_counters_from_both_replicas(fleet: Stack) -> None:
    assert fleet.longterm is not None
    longterm = fleet.longterm
    truth = {s.name: operation_counts(s.dsn) for s in fleet.shops}

    def stored() -> dict[tuple[str, str], dict[tuple[str, str], float]]:
        out: dict[tuple[str, str], dict[tuple[str, str], float]] = {}
        for r in longterm.query('customer_sync_operations_total{job="customer_sync_exporter"}'):
            m = r["metric"]
            key = (m["shop"], m["replica"])
            out.setdefault(key, {})[(m["operation_type"], m["status"])] = float(r["value"][1])
        return out

    def complete() -> bool:
        got = stored()
        return set(got) == {(s, r) for s in HISTORY for r in ("a", "b")} and all(
            {k: v for k, v in series.items() if v} == truth[s] for (s, _), series in got.items())

    wait_until(complete, 60, "every shop's counters from both replicas in long-term storage",
               lambda: json.dumps({f"{k}": v for k, v in stored().items()}, default=str)[:3000])
    for (name, replica), series in stored().items():
        # the exporter's zeros for every known operation type and status came along too
        assert len(series) >= len(truth[name]), (name, replica)
        assert {k: v for k, v in series.items() if v} == truth[name], (name, replica)
    any_series = longterm.query('customer_sync_operations_total{shop="msk"}')[0]["metric"]
    assert any_series["cluster"] == "customer-sync"
    assert set(any_series) >= {"job", "instance", "shop", "cluster", "replica",
                               "operation_type", "status"}


def _values(prom: Prometheus, expr: str, label: str = "shop") -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in prom.query(expr)}


def _dashboard_query(title: str, ref: str = "A") -> str:
    dash = json.loads((REPO / "grafana" / "dashboards" / "customer-sync-operations.json")
                      .read_text())
    panel = next(p for p in dash["panels"] if p["title"] == title)
    return str(next(t["expr"] for t in panel["targets"] if t["refId"] == ref))


def _for_shop(expr: str, s: Shop) -> str:
    """Grafana's substitution with one shop (and its exporter) selected."""
    return (expr.replace("$shop", s.name).replace("$instance", s.instance.replace(".", "\\\\."))
            .replace("$__rate_interval", "1m"))


def test_each_shop_gets_its_own_ratios_alerts_and_dashboard_numbers(fleet: Stack) -> None:
    for name, (ok, failed, error) in TRAFFIC.items():
        dsn = shop(fleet, name).dsn
        insert_rows(dsn, ok, "updated", "success")
        insert_rows(dsn, failed, "error", "failed", "Невалидный формат email")
        insert_rows(dsn, error, "export_to_1c", "error", "1C timeout")
    expected = {name: pytest.approx(r, abs=1e-9) for name, r in RATIO.items()}

    for replica in fleet.replicas:
        def ratios(prom: Prometheus = replica) -> list[dict[str, float]]:
            # per shop (the SLO's), and per exporter: the same, one exporter per shop
            return [_values(prom, f"{level}:customer_sync_operations_errors:ratio_rate5m")
                    for level in ("shop", "instance")]

        wait_until(lambda r=ratios: r() == [expected, expected], 60,
                   f"each shop's error ratio on replica {replica.name}",
                   lambda r=ratios: str(r()))

    # alerts: the 5-minute ratio pages above 20 % (kzn only: spb is at exactly 20 %); the SLO
    # pages at burn rate above 14.4 (spb 20, kzn 50); msk raises nothing
    def firing(prom: Prometheus) -> dict[tuple[str, str], dict[str, Any]]:
        return {(a["labels"]["alertname"], a["labels"]["shop"]): a
                for a in prom.alerts() if a["labels"]["severity"] == "critical"}

    want = {("CustomerSyncErrorRatioHigh", "kzn"), ("CustomerSyncErrorBudgetBurn", "spb"),
            ("CustomerSyncErrorBudgetBurn", "kzn")}
    for replica in fleet.replicas:
        wait_until(lambda p=replica: set(firing(p)) == want, 60,
                   f"the critical alerts on replica {replica.name}",
                   lambda p=replica: str(sorted(firing(p))))
        alerts = firing(replica)
        kzn = shop(fleet, "kzn")
        assert alerts[("CustomerSyncErrorRatioHigh", "kzn")]["annotations"]["description"] == (
            f"Shop kzn: 50% of the customer sync operations recorded by {kzn.instance} in the "
            "last 5 minutes have status failed or error (critical threshold 20 %).")
        assert alerts[("CustomerSyncErrorBudgetBurn", "spb")]["annotations"][
            "description"].startswith("Shop spb: sync operations fail at 20.0 times the rate")
        # the SLO is a shop's, not an exporter's
        assert "instance" not in alerts[("CustomerSyncErrorBudgetBurn", "spb")]["labels"]

    # the dashboards' own queries, with one shop selected, show that shop's numbers
    replica = fleet.replicas[0]
    for name, ratio in RATIO.items():
        s = shop(fleet, name)
        error_ratio = _values(replica, _for_shop(_dashboard_query("Error ratio (1h)"), s))
        assert error_ratio == {"": pytest.approx(ratio, abs=1e-9)}, name
        burn = _values(replica, _for_shop(_dashboard_query("Burn rate, page windows", "B"), s))
        assert burn == {name: pytest.approx(ratio / BUDGET, abs=1e-6)}, name
