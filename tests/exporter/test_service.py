"""The daemon assembled in-process: a reload builds a new pipeline while the old one serves and
puts it live with the reload status in one step; the log masker knows the secrets of the
pipelines still in use and forgets a replaced config's once its pipeline has closed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter import service
from exporter.config import Config, parse_config
from exporter.logs import MASK, SecretMasker
from exporter.service import Exporter

TOKENS = ("tokOld-Secret-1a", "tokNew-Secret-2b")


def config(tmp_path: Path, token: str, *, process: bool) -> Config:
    return parse_config(
        "collectors:\n  synclog: {enabled: false}\n  business: {enabled: false}\n"
        "  postgres: {enabled: false}\n  redis: {enabled: false}\n"
        f"  onec: {{enabled: false, token: {token}}}\n"
        f"  process: {{enabled: {str(process).lower()}}}\n"
        f"  disk:\n    dirs: [{{name: here, path: '{tmp_path}'}}]\n",
        "test.yaml", {},
    )


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[Exporter]:
    running = Exporter(config(tmp_path, TOKENS[0], process=True), "127.0.0.1:0",
                       masker=SecretMasker()).start()
    yield running
    running.stop()


def scrape(e: Exporter) -> dict[str, float]:
    text = requests.get(f"http://127.0.0.1:{e.port}/metrics", timeout=10).text
    return {f"{s.name}{sorted(s.labels.items())}": s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def collectors(samples: dict[str, float]) -> set[str]:
    prefix = "customer_sync_exporter_collector_success[('collector', '"
    return {k[len(prefix):].split("'")[0] for k in samples if k.startswith(prefix)}


def test_a_reload_is_built_aside_then_put_live_with_its_status(
    exporter: Exporter, tmp_path: Path
) -> None:
    assert collectors(scrape(exporter)) == {"disk", "process"}
    exporter.reload_status.failed()  # an earlier file was rejected
    commit = exporter.apply(config(tmp_path, TOKENS[1], process=False))
    samples = scrape(exporter)  # built, not live yet: the old config still serves
    assert collectors(samples) == {"disk", "process"}
    assert samples["customer_sync_exporter_config_last_reload_successful[]"] == 0
    old = exporter.live.pipeline
    exporter.reload_status.succeeded(commit)
    samples = scrape(exporter)
    assert collectors(samples) == {"disk"}
    assert samples["customer_sync_exporter_config_last_reload_successful[]"] == 1
    assert old.closed.wait(10)  # no request was inside it any more


def test_the_masker_forgets_a_replaced_configs_secrets_once_its_pipeline_closed(
    exporter: Exporter, tmp_path: Path
) -> None:
    masker = exporter.masker
    line = " ".join(TOKENS)
    assert masker.mask(line) == f"{MASK} {TOKENS[1]}"
    commit = exporter.apply(config(tmp_path, TOKENS[1], process=True))
    assert masker.mask(line) == f"{MASK} {MASK}"  # both in use: the new one is being built
    old = exporter.live.pipeline
    with exporter.live.lease():  # a request inside the old pipeline through the swap
        exporter.reload_status.succeeded(commit)
        time.sleep(0.2)
        assert masker.mask(line) == f"{MASK} {MASK}"  # still draining: still masked
    assert old.closed.wait(10)
    end = time.monotonic() + 5
    while masker.mask(line) != f"{TOKENS[0]} {MASK}" and time.monotonic() < end:
        time.sleep(0.02)
    assert masker.mask(line) == f"{TOKENS[0]} {MASK}"


def test_a_config_that_cannot_be_built_changes_nothing(exporter: Exporter, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("cannot build")

    monkeypatch.setattr(service, "build_pipeline", broken)
    live = exporter.live.pipeline
    with pytest.raises(RuntimeError):
        exporter.apply(config(tmp_path, TOKENS[1], process=False))
    assert exporter.live.pipeline is live
    assert exporter.masker.mask(" ".join(TOKENS)) == f"{MASK} {TOKENS[1]}"  # not kept


WEB_OK = "customer_sync_exporter_web_config_last_reload_successful[]"
WEB_AT = "customer_sync_exporter_web_config_last_reload_success_timestamp_seconds[]"


def test_the_web_config_reload_status_is_scraped_only_with_a_web_config(
    exporter: Exporter, tmp_path: Path
) -> None:
    assert WEB_OK not in scrape(exporter) and WEB_AT not in scrape(exporter)
    web = tmp_path / "web.yml"
    web.write_text("http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    with_web = Exporter(config(tmp_path, TOKENS[0], process=False), "127.0.0.1:0",
                        web_config_file=str(web)).start()
    try:
        samples = scrape(with_web)
        assert samples[WEB_OK] == 1 and abs(samples[WEB_AT] - time.time()) < 60
        web.write_text("http_server_config:\n  headers: [not, a, map]\n")
        samples = scrape(with_web)  # the request that notices the change reloads first
        assert samples[WEB_OK] == 0
    finally:
        with_web.stop()
