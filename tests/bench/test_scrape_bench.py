"""``bench/scrape_bench.py`` without running it: its command line.

The benchmark itself is run by hand (it loads 10M rows); these checks are cheap and catch a
broken command line (the floor it hands the peer: tests/bench/scrape/test_peer.py).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scrape_bench_under_test",
                                                  REPO / "bench" / "scrape_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_defaults_are_the_issues_two_sizes(bench: ModuleType) -> None:
    args = bench.parse_args([])
    assert args.sizes == [1_000_000, 10_000_000]
    assert args.spans == [30.0, 10.0]  # 1M over 30 days; 10M at 1M rows per 24 h
    assert (args.scrapes, args.floor_scrapes, args.new_rows) == (20, 20, 1000)


def test_one_days_value_applies_to_every_size(bench: ModuleType) -> None:
    args = bench.parse_args(["--rows", "1000,2000,3000", "--days", "2"])
    assert args.sizes == [1000, 2000, 3000]
    assert args.spans == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("argv", [
    ["--rows", "1000,2000", "--days", "1,2,3"],
    ["--rows", "1000", "--days", "0"],
    ["--rows", "lots"],
    ["--scrapes", "0"],
])
def test_bad_arguments_are_refused(bench: ModuleType, argv: list[str],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err
