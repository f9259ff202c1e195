"""The config's value types: durations to seconds, and secret files read within bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import ConfigError, Window, parse_config, parse_duration


def test_durations_parse_to_seconds() -> None:
    assert parse_duration("1h30m") == 5400.0
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2d") == 172800.0
    assert parse_duration(15) == 15.0
    assert parse_duration(" 1.5s ") == 1.5
    config = parse_config(
        "scrape_timeout: 750ms\ndatabase:\n  dsn: postgresql://u@h/db\n"
        "collectors:\n  onec:\n    enabled: false\n  synclog:\n    windows: [90s, 1h30m]\n",
        "c.yaml", {},
    )
    assert config.scrape_timeout == 0.75
    assert config.collectors.synclog.windows == [Window("90s", 90.0), Window("1h30m", 5400.0)]



def test_a_secret_file_must_be_small_utf8_text(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    base = "collectors:\n  onec:\n    url: http://1c/p\n    username: u\n"
    secret.write_bytes("pässwörd".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        parse_config(base + f"    password_file: {secret}\n", "c.yaml", {})
    assert f"c.yaml:5: collectors.onec.password_file: secret file '{secret}' is not UTF-8 text" in (
        info.value.errors)
    with pytest.raises(ConfigError) as info:
        parse_config(base + "    password_file: /dev/zero\n", "c.yaml", {})  # endless
    assert ("c.yaml:5: collectors.onec.password_file: secret file '/dev/zero' is larger than 64 "
            "KiB; it should hold one password or token") in info.value.errors


# A random document of anchored lists, each holding scalars, nested lists and aliases to earlier
# anchors: the bounded loader must refuse it exactly when the expanded tree (every alias
