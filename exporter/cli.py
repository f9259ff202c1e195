"""The ``customer-sync-exporter`` command: serve (default), check-config, check, demo."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from exporter.config import COLLECTOR_NAMES, Config, ConfigError, load_config

if TYPE_CHECKING:
    from exporter.scrape import CollectorResult, Scraper

DEFAULT_LISTEN = ":9188"
DEFAULT_CONFIG = "config.yaml"
DEFAULT_TELEMETRY_PATH = "/metrics"
LOG_LEVELS = ["debug", "info", "warn", "warning", "error"]  # warn: the Go exporters' spelling
LOG_FORMATS = ["json", "logfmt", "console"]


class _Version(argparse.Action):
    """``--version``: several lines, printed as they are (argparse's own action rewraps them)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0,
                         help="print the version, revision, Python and platform, and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from exporter.version import version_text

        print(version_text(parser.prog.split()[0]))
        parser.exit()


def _telemetry_path(value: str) -> str:
    from exporter.http import check_telemetry_path

    try:
        return check_telemetry_path(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_logging(p: argparse.ArgumentParser, format_default: str) -> None:
    p.add_argument("--log.level", dest="log_level", default="info", choices=LOG_LEVELS)
    p.add_argument("--log.format", dest="log_format", default=format_default,
                   choices=LOG_FORMATS)


def _add_common(p: argparse.ArgumentParser, config_default: str | None = DEFAULT_CONFIG) -> None:
    p.add_argument("--config.file", dest="config_file", default=config_default,
                   help=f"path to the YAML config (default: {config_default})")
    _add_logging(p, "json")
    for name in COLLECTOR_NAMES:
        p.add_argument(f"--collector.{name}", dest=f"collector_{name}", action="store_const",
                       const=True, default=None, help=f"enable the {name} collector")
        p.add_argument(f"--no-collector.{name}", dest=f"collector_{name}", action="store_const",
                       const=False, help=f"disable the {name} collector")


def _add_web(p: argparse.ArgumentParser) -> None:
    p.add_argument("--web.listen-address", dest="listen_addresses", action="append",
                   default=None, metavar="ADDRESS",
                   help=f"address to serve on; repeat it to listen on several, each its own "
                        f"socket (default: {DEFAULT_LISTEN}, every address, dual-stack)")
    p.add_argument("--web.telemetry-path", dest="telemetry_path", type=_telemetry_path,
                   default=DEFAULT_TELEMETRY_PATH,
                   help=f"path the metrics are served on (default: {DEFAULT_TELEMETRY_PATH})")
    p.add_argument("--web.config.file", dest="web_config_file", default=None,
                   help="exporter-toolkit web config (TLS, client certificates, basic auth, "
                        "headers); re-read when it or its certificate files change")
    p.add_argument("--web.health-without-auth", dest="health_without_auth",
                   action="store_true",
                   help="serve /health/live and /health/ready without basic auth, client "
                        "certificate or rate limit (for container probes)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="customer-sync-exporter",
        description="Prometheus exporter for the FREESPORT customer sync with 1C.",
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="run the exporter daemon (the default)")
    serve.add_argument("--version", action=_Version)
    _add_common(serve)
    _add_web(serve)

    check_config = sub.add_parser("check-config", help="validate config files and exit")
    check_config.add_argument("file", nargs="+", help="config file(s); exit 1 if any is invalid")

    check = sub.add_parser("check", help="run every collector once and print a table")
    _add_common(check)

    demo = sub.add_parser("demo", help="run on an embedded PostgreSQL, Redis and live traffic")
    demo.add_argument("--web.listen-address", dest="listen_address", default=DEFAULT_LISTEN,
                      help=f"address to serve /metrics on (default: {DEFAULT_LISTEN})")
    demo.add_argument("--rate", type=float, default=5.0, help="sync-log rows per second")
    demo.add_argument("--seed", type=int, default=None, help="random seed for the traffic")
    demo.add_argument("--data-dir", default=None, help="where to keep the demo's data")
    demo.add_argument("--with-prometheus", action="store_true",
                      help="also run Prometheus and Alertmanager if their binaries exist")
    _add_logging(demo, "console")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, bool]:
    return {
        name: value
        for name in COLLECTOR_NAMES
        if (value := getattr(args, f"collector_{name}", None)) is not None
    }


def load_or_exit(args: argparse.Namespace) -> Config | None:
    try:
        config = load_config(args.config_file)
        overrides = _overrides(args)
        return config.with_collectors(overrides) if overrides else config
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return None
    except Exception as exc:  # a flag combination that re-validation rejects
        print(f"{args.config_file}: {exc}", file=sys.stderr)
        return None


def cmd_check_config(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.file:
        try:
            config = load_config(path)
        except ConfigError as exc:
            for line in exc.errors:
                print(line, file=sys.stderr)
            failed += 1
            continue
        except Exception as exc:  # a loader bug: a located line and exit 1, not a traceback
            print(f"{path}:0: (internal): cannot load: {type(exc).__name__}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path}: ok; collectors enabled: {', '.join(config.collectors.enabled_names())}")
    return 1 if failed else 0


def cmd_serve(args: argparse.Namespace) -> int:
    from exporter.logs import setup_logging

    masker = setup_logging(args.log_level, args.log_format)
    config = load_or_exit(args)
    if config is None:
        return 1
    from exporter.reload import ConfigWatcher
    from exporter.service import Exporter, Signals  # heavy: only for a valid config
    from exporter.web import WebConfigError

    addresses = args.listen_addresses or [DEFAULT_LISTEN]
    signals = Signals()  # before start: a SIGTERM during start-up still exits cleanly
    try:
        exporter = Exporter(config, addresses, web_config_file=args.web_config_file,
                            health_without_auth=args.health_without_auth,
                            telemetry_path=args.telemetry_path, masker=masker).start()
    except WebConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"cannot listen on {', '.join(addresses)}: {exc}", file=sys.stderr)
        return 1
    overrides = _overrides(args)
    watcher = ConfigWatcher(
        args.config_file,
        prepare=lambda c: c.with_collectors(overrides) if overrides else c,
        apply=exporter.apply,
        status=exporter.reload_status,
    ).start()
    signals.on_hup = watcher.request_reload
    try:
        signals.wait()
    finally:
        watcher.stop()
        exporter.stop()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Every collector once, on a pipeline of its own: no socket, no server."""
    from exporter.config import iter_secrets
    from exporter.logs import setup_logging
    from exporter.pipeline import build_pipeline

    masker = setup_logging("error", args.log_format)
    config = load_or_exit(args)
    if config is None:
        return 1
    masker.update(iter_secrets(config))
    pipeline = build_pipeline(config)
    try:
        results = _collect_once(pipeline.scraper, config.scrape_timeout)
    finally:
        pipeline.close()
    print(f"{'collector':<10} {'result':<7} {'duration':>9} {'samples':>8}  reason")
    failed = 0
    for name, r in results.items():
        if r is None:  # one row per collector, even one that never reported
            failed += 1
            print(f"{name:<10} {'failed':<7} {'-':>9} {0:>8}  did not run")
            continue
        samples = sum(len(f.samples) for f in r.families)
        state = "ok" if r.ok else "failed"
        failed += not r.ok
        # Printed, not logged: mask here what the log processor would have masked.
        reason = "" if r.ok else masker.mask(f"{r.reason}: {r.message}")
        print(f"{name:<10} {state:<7} {r.duration:>8.3f}s {samples:>8}  {reason}")
    return 1 if failed else 0


def _collect_once(scraper: Scraper, timeout: float) -> dict[str, CollectorResult | None]:
    """One scrape, repeated while a collector reports ``timeout`` (the sync log reads its table
    once at start) for up to ``timeout`` more."""
    from exporter.collector import Deadline, Reason

    def scrape() -> dict[str, CollectorResult | None]:
        scraper.scrape(Deadline.after(timeout))
        return scraper.last_results()

    results = scrape()
    end = time.monotonic() + timeout
    while any(r is not None and r.reason is Reason.TIMEOUT for r in results.values()) and (
        time.monotonic() < end
    ):
        time.sleep(0.5)
        results = scrape()
    return results


def cmd_demo(args: argparse.Namespace) -> int:
    from exporter.demo.run import run_demo
    from exporter.logs import setup_logging

    masker = setup_logging(args.log_level, args.log_format)
    return run_demo(args, masker=masker)


def main(argv: Sequence[str] | None = None) -> int:
    from exporter.memory import limit_malloc_arenas

    limit_malloc_arenas()  # before any thread exists: see exporter/memory.py
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"serve", "check-config", "check", "demo"}
    if not argv or (argv[0] not in commands and argv[0] not in {"-h", "--help", "--version"}):
        argv = ["serve", *argv]
    args = build_parser().parse_args(argv)
    handler: dict[str, Callable[[argparse.Namespace], int]] = {
        "serve": cmd_serve,
        "check-config": cmd_check_config,
        "check": cmd_check,
        "demo": cmd_demo,
    }
    return handler[args.command](args)
