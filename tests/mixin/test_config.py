"""mixin/config.yml: it validates, every key is required, and bad values name their key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mixin.config import CONFIG_FILE, ConfigError, MixinConfig, load


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def shipped() -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load(CONFIG_FILE.read_text())
    return data


def test_the_shipped_config_loads_with_the_story_values() -> None:
    config = load()
    assert config.selector == 'job="customer_sync_exporter"'
    assert (config.thresholds.error_ratio_1h, config.thresholds.error_ratio_5m) == (0.10, 0.20)
    assert config.thresholds.failed_operations_1h == 50
    assert config.thresholds.queue_items == 1000
    assert config.slo.target == 0.99
    assert config.slo.error_budget == 0.01


@pytest.mark.parametrize(("target", "budget"), [(0.99, 0.01), (0.999, 0.001), (0.95, 0.05),
                                                (0.9995, 0.0005)])
def test_error_budget_is_exact(target: float, budget: float) -> None:
    slo = load().slo.model_copy(update={"target": target})
    assert slo.error_budget == budget  # not 0.010000000000000009


def test_an_unknown_key_is_named(tmp_path: Path) -> None:
    data = shipped()
    data["thresholds"]["error_ratio_1hh"] = 0.1  # type: ignore[index]
    path = write(tmp_path, data)
    line = path.read_text().splitlines().index("  error_ratio_1hh: 0.1") + 1
    with pytest.raises(ConfigError, match=rf"config.yml:{line}: thresholds.error_ratio_1hh: Extra"):
        load(path)


def test_a_missing_key_is_named(tmp_path: Path) -> None:
    data = shipped()
    del data["slo"]["target"]  # type: ignore[attr-defined]
    path = write(tmp_path, data)
    line = path.read_text().splitlines().index("slo:") + 1  # the missing key's parent
    with pytest.raises(ConfigError, match=rf"config.yml:{line}: slo.target: Field required"):
        load(path)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("selector", "customer_sync_exporter", "label matchers"),
    ("selector", 'job="a"}, up{x="y"', "label matchers"),
    ("runbook_url", "docs/runbook.md", "http"),
    ("runbook_url", "https://x/runbook.md#top", "fragment"),
])  # fmt: skip
def test_bad_values_are_refused(tmp_path: Path, key: str, value: str, message: str) -> None:
    data = shipped()
    data[key] = value
    with pytest.raises(ConfigError, match=message):
        load(write(tmp_path, data))


@pytest.mark.parametrize("target", [0, 1, 1.5, -0.1])
def test_a_target_outside_0_1_is_refused(tmp_path: Path, target: float) -> None:
    data = shipped()
    data["slo"]["target"] = target  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"slo.target"):
        load(write(tmp_path, data))


def test_every_problem_is_reported_not_only_the_first(tmp_path: Path) -> None:
    data = shipped()
    data["thresholds"]["queue_items"] = -1  # type: ignore[index]
    data["slo"]["target"] = 2  # type: ignore[index]
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, data))
    lines = str(info.value).splitlines()
    assert [line.split(": ")[1] for line in lines] == ["thresholds.queue_items", "slo.target"]


def test_broken_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("selector: [unclosed\n")
    with pytest.raises(ConfigError, match=r"config.yml"):
        load(path)


def test_several_matchers_are_a_valid_selector() -> None:
    data = shipped()
    data["selector"] = 'job="customer_sync_exporter", env!~"test|dev"'
    assert MixinConfig.model_validate(data).selector == data["selector"]


def test_values_are_every_leaf_by_dotted_path() -> None:
    values = load().values()
    assert values["selector"] == 'job="customer_sync_exporter"'
    assert values["thresholds.queue_items"] == 1000
    assert values["slo.burn_rates.page_1h_5m"] == 14.4
    assert values["slo.error_budget"] == 0.01
    assert len([k for k in values if k.startswith("thresholds.")]) == len(
        shipped()["thresholds"])  # type: ignore[arg-type]
