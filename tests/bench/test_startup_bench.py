"""``bench/startup_bench.py`` without running it: its command line."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("startup_bench_under_test",
                                                  REPO / "bench" / "startup_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_defaults_are_the_issues_10m_case(bench: ModuleType) -> None:
    args = bench.parse_args([])
    assert (args.rows, args.days, args.runs, args.baseline_tree) == (10_000_000, 10.0, 3, None)


def test_a_baseline_tree_must_hold_the_exporter(bench: ModuleType, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(["--baseline-tree", str(tmp_path)])
    assert exc.value.code == 2 and "no exporter/cli.py" in capsys.readouterr().err
    assert bench.parse_args(["--baseline-tree", str(REPO)]).baseline_tree == str(REPO)


@pytest.mark.parametrize("argv", [["--rows", "0"], ["--days", "0"], ["--runs", "0"]])
def test_bad_arguments_are_refused(bench: ModuleType, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2
