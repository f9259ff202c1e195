"""``demo --with-prometheus``: Prometheus with the repository's rules, Alertmanager delivering to a
local :class:`AlertSink`.

Both read deployment files that live beside the code, not in the Python package:
``prometheus/prometheus.yml`` with its rule files and ``alertmanager/render-config`` with its
template. They are found in the source checkout this package runs from (a clone, or an editable
install of one); a wheel or the container image does not carry them, and then the demo says so
and runs without Prometheus and Alertmanager rather than with rules of unknown age.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import yaml

from exporter.demo.alertsink import AlertSink
from exporter.demo.ports import port_or_free
from exporter.demo.processes import stop_process
from exporter.demo.stack import DemoStack

NOT_INSTALLED = "needs a source checkout: the package does not install"
SINK_HISTORY = 200  # notifications the sink remembers; the demo only logs them


def source_tree() -> Path | None:
    """The checkout holding ``prometheus/`` and ``alertmanager/`` beside this package, if any."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "prometheus" / "prometheus.yml").is_file():
        return root
    return None


def prometheus_config(
    source: Path, data_dir: Path, exporter_target: str, am_port: int | None
) -> Path:
    """The repository's prometheus.yml with this demo's targets and absolute rule paths."""
    path = source / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["rule_files"] = [str((path.parent / f).resolve()) for f in config.get("rule_files", [])]
    for job in config.get("scrape_configs", []):
        if job.get("job_name") == "customer_sync_exporter":
            job["static_configs"] = [{"targets": [exporter_target]}]
    if am_port is None:
        config.pop("alerting", None)
    else:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
        }
    target = data_dir / "prometheus" / "prometheus.yml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return target


def alertmanager_config(source: Path, folder: Path, sink: AlertSink) -> Path:
    """Render the repository's template with alertmanager/render-config, pointed at the sink."""
    out = folder / "alertmanager.yml"
    env = {k: v for k, v in os.environ.items()
           if k not in {"TELEGRAM_BOT_TOKEN_FILE", "TELEGRAM_CHAT_ID_FILE", "WEBHOOK_URL_FILE"}}
    env.update({
        "TELEGRAM_BOT_TOKEN": "123456:demo-token", "TELEGRAM_CHAT_ID": "1",
        "WEBHOOK_URL": f"{sink.url}/webhook", "TELEGRAM_API_URL": sink.url,
        "ALERTMANAGER_CONFIG_OUT": str(out),
    })
    done = subprocess.run(
        ["sh", str(source / "alertmanager" / "render-config"), "--render-only"],
        env=env, capture_output=True, text=True, timeout=30,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip() or f"render-config exited {done.returncode}")
    return out


def _serve(stack: DemoStack, name: str, args: list[str], log_file: Path) -> None:
    with log_file.open("ab") as err:
        proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
    stack.started(name, functools.partial(stop_process, proc))


def _start_alertmanager(stack: DemoStack, source: Path) -> tuple[int | None, str]:
    """Alertmanager delivering to a local sink: its port (None if not started) and a line."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        return None, "  Alertmanager:  not started (no prometheus-alertmanager binary)"
    if not (source / "alertmanager" / "render-config").exists():
        return None, "  Alertmanager:  not started (alertmanager/render-config is missing)"
    am_dir = stack.data_dir / "alertmanager"
    am_dir.mkdir(parents=True, exist_ok=True)
    sink = AlertSink(am_dir / "received.log", keep=SINK_HISTORY).start()
    stack.started("alert-sink", sink.stop)
    try:
        config = alertmanager_config(source, am_dir, sink)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return None, f"  Alertmanager:  not started (render-config: {exc})"
    port = port_or_free(9093)
    _serve(stack, "alertmanager",
           [binary, f"--config.file={config}", f"--storage.path={am_dir}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address="],  # no gossip port for one demo instance
           am_dir / "alertmanager.log")
    return port, (f"  Alertmanager:  http://localhost:{port}/"
                  f" (notifications land in {am_dir / 'received.log'})")


def start_prometheus_stack(stack: DemoStack, exporter_target: str) -> list[str]:
    """Prometheus with the repository's rules and, when its config renders, Alertmanager
    delivering to a local sink; registers what it starts with ``stack``. Returns lines to print."""
    source = source_tree()
    if source is None:
        return [f"  Prometheus:    not started ({NOT_INSTALLED} prometheus/)",
                f"  Alertmanager:  not started ({NOT_INSTALLED} alertmanager/)"]
    am_port, am_line = _start_alertmanager(stack, source)
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        return [am_line, "  Prometheus:    not started (no prometheus binary)"]
    data_dir = stack.data_dir
    config_file = prometheus_config(source, data_dir, exporter_target, am_port)
    port = port_or_free(9090)
    _serve(stack, "prometheus",
           [prometheus, f"--config.file={config_file}",
            f"--storage.tsdb.path={data_dir / 'prometheus' / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}"],
           data_dir / "prometheus" / "prometheus.log")
    return [am_line, f"  Prometheus:    http://localhost:{port}/alerts"]
