"""The demo's stack (``exporter/demo/stack.py``): stops in reverse order, all of them, once."""

from __future__ import annotations

from pathlib import Path

from exporter.demo.stack import DemoStack


def test_stops_run_newest_first_even_when_one_fails(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    data.mkdir()
    stack = DemoStack(data, temporary=True)
    stopped: list[str] = []

    def broken() -> None:
        stopped.append("broken")
        raise RuntimeError("cannot stop")

    stack.started("postgres", lambda: stopped.append("postgres"))
    stack.started("redis", broken)
    stack.started("exporter", lambda: stopped.append("exporter"))
    stack.stop()
    assert stopped == ["exporter", "broken", "postgres"] and not data.exists()
    stack.stop()  # a second stop does nothing
    assert stopped == ["exporter", "broken", "postgres"]


def test_a_kept_data_folder_survives(tmp_path: Path) -> None:
    stack = DemoStack(tmp_path, temporary=False)
    stack.stop()
    assert tmp_path.exists()
