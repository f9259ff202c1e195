"""Render the rule files and dashboards from mixin/config.yml; ``--check`` for staleness."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from mixin.config import ConfigError, MixinConfig, load
from mixin.dashboards import dashboard_files
from mixin.dashboards.panels import Context
from mixin.render import TemplateError, rule_files

ROOT = Path(__file__).resolve().parent.parent
RULES_OUT = Path("prometheus", "rules")
DASHBOARDS_OUT = Path("grafana", "dashboards")


def outputs(config: MixinConfig, root: Path = ROOT) -> dict[Path, str]:
    """Every generated file, by path under ``root``."""
    rules = rule_files(config)
    alerts = frozenset(
        r["alert"] for text in rules.values()
        for g in yaml.safe_load(text)["groups"] for r in g["rules"] if "alert" in r
    )  # fmt: skip
    out = {root / RULES_OUT / n: t for n, t in rules.items()}
    out |= {root / DASHBOARDS_OUT / n: t
            for n, t in dashboard_files(Context(config, alerts)).items()}
    return out


def stale(files: dict[Path, str], out_dirs: tuple[Path, ...]) -> list[Path]:
    """Generated files that differ on disk, and files in the output folders nobody generates."""
    bad = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
    for folder in out_dirs:
        bad += [p for p in sorted(folder.iterdir()) if p.suffix in {".yml", ".json"}
                and p not in files]
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if prometheus/rules/ or grafana/dashboards/ is not what "
                             "this generates")
    args = parser.parse_args(argv)
    try:
        files = outputs(load(), ROOT)
    except (ConfigError, TemplateError, ValueError) as exc:
        print(f"mixin: {exc}", file=sys.stderr)
        return 2
    if args.check:
        bad = stale(files, (ROOT / RULES_OUT, ROOT / DASHBOARDS_OUT))
        if bad:
            names = ", ".join(str(p.relative_to(ROOT)) for p in bad)
            print(f"out of date, run .venv/bin/python -m mixin.build: {names}", file=sys.stderr)
            return 1
        return 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
