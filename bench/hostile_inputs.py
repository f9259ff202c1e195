"""Time and peak memory of the exporter given hostile inputs, next to a good input, in one run.

    .venv/bin/python bench/hostile_inputs.py

Why: issue 18 found an 890-byte YAML alias bomb and a 52 MB config taking a reload (and
``check-config``) to tens of seconds at over 600 MB RSS, and a 100 MB Redis ``INFO`` reply
taking the daemon to 560 MB. This prints, as separate processes:

* ``check-config`` on a good config (the baseline), a Latin-1 byte, the alias bomb and the
  52 MB file: exit code, wall time, peak RSS (the child's ``ru_maxrss``) and the first line;
* ``serve`` (disk and process collectors, plus Redis pointed at a loopback server that answers
  ``INFO`` with 100 MB): scrape latency median and max over 2 s before anything happens (the
  baseline), then for each bad config written and SIGHUPped, the time until the reload metric
  says 0, the scrape latency while it happens, the time until a good file written after it is
  applied, and the daemon's peak RSS (VmHWM) after each step.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hostile_redis import hostile, info_of_100_mb  # noqa: E402

EXE = Path(sys.executable).parent / "customer-sync-exporter"
TIME = "/usr/bin/time"  # GNU time (Debian package "time")


def alias_bomb() -> bytes:
    lines = ["x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    return ("\n".join(lines) + "\n").encode()


def base_config(tmp: Path, redis_url: str | None) -> str:
    redis = f"  redis:\n    url: {redis_url}\n" if redis_url else "  redis: {enabled: false}\n"
    return ("collectors:\n  synclog: {enabled: false}\n  business: {enabled: false}\n"
            "  postgres: {enabled: false}\n  onec: {enabled: false}\n" + redis +
            f"  disk:\n    dirs: [{{name: here, path: '{tmp}'}}]\n")


def big_file(path: Path, head: str) -> None:
    with path.open("w") as f:
        f.write(head + "  process:\n    groups:\n")
        i = 0
        while f.tell() < 52_000_000:
            f.write(f"      - {{name: g{i}, cmdline_regex: 'worker-{i}'}}\n")
            i += 1


def check_config(path: Path) -> tuple[int, float, float, str]:
    """Exit code, wall seconds, peak RSS in MiB, first line. GNU time measures the peak: the
    rusage of a child forked from this (large) process would count this one's pages too."""
    with tempfile.NamedTemporaryFile("w+", suffix=".time") as measured:
        start = time.monotonic()
        proc = subprocess.run([TIME, "-o", measured.name, "-f", "%M", str(EXE), "check-config",
                               str(path)], capture_output=True, text=True, timeout=300)
        wall = time.monotonic() - start
        peak_kib = int(Path(measured.name).read_text().split()[-1])
    line = (proc.stderr or proc.stdout).splitlines()[0][:110]
    return proc.returncode, wall, peak_kib / 1024, line


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Scrapes:
    """Scrapes /metrics back to back in a thread; latencies are kept with their start time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            start = time.monotonic()
            session.get(f"{self.url}/metrics", timeout=30)
            self.samples.append((start, time.monotonic() - start))
            time.sleep(0.05)

    def between(self, a: float, b: float) -> list[float]:
        return [d for s, d in self.samples if a <= s <= b]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(35)


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reload_ok(url: str) -> float | None:
    for line in requests.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("customer_sync_exporter_config_last_reload_successful "):
            return float(line.split()[1])
    return None


def until(predicate: Callable[[], bool], limit: float = 60) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > limit:
            return float("inf")
        time.sleep(0.02)
    return time.monotonic() - start


def fmt(latencies: list[float]) -> str:
    if not latencies:
        return "no scrape"
    return (f"n={len(latencies)} median={statistics.median(latencies) * 1000:.1f} ms "
            f"max={max(latencies) * 1000:.1f} ms")


def main() -> int:
    if not EXE.exists():
        print(f"{EXE} is missing: . scripts/venv.sh && ensure_venv test", file=sys.stderr)
        return 2
    if not Path(TIME).exists():
        print(f"{TIME} is missing: apt-get install time", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp_name:
        tmp = Path(tmp_name)
        head = base_config(tmp, None)
        big = check_config_phase(tmp, head)
        serve_phase(tmp, big)
    return 0


def check_config_phase(tmp: Path, head: str) -> Path:
    """``check-config`` on each hostile file, a process each; returns the 52 MB file."""
    files = {
        "good (baseline)": head.encode(),
        "latin-1 byte": head.encode() + "# Prüfung\n".encode("latin-1"),
        f"alias bomb ({len(alias_bomb())} B)": head.encode() + alias_bomb(),
    }
    print("== check-config (a process each)")
    for name, data in files.items():
        path = tmp / "c.yaml"
        path.write_bytes(data)
        code, wall, peak, line = check_config(path)
        print(f"{name:<22} exit={code} wall={wall:.3f} s peak_rss={peak:.1f} MiB  {line}")
    big = tmp / "big.yaml"
    big_file(big, head)
    code, wall, peak, line = check_config(big)
    print(f"{'52 MB file':<22} exit={code} wall={wall:.3f} s peak_rss={peak:.1f} MiB  {line}")
    return big


def serve_phase(tmp: Path, big: Path) -> None:
    """A running daemon: reloads of each hostile file and a 100 MB Redis INFO while scraping."""
    print("== serve: reloads and a 100 MB Redis INFO while scraping")
    with hostile(info_of_100_mb) as server:
        config = tmp / "config.yaml"
        good = base_config(tmp, server.url)
        config.write_text(good)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen([str(EXE), "serve", "--config.file", str(config),
                                 "--web.listen-address", f"127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            until(lambda: _live(url), 30)
            scrapes = Scrapes(url)
            t0 = time.monotonic()
            time.sleep(2)
            baseline = fmt(scrapes.between(t0, time.monotonic()))
            print(f"baseline (Redis answers INFO with 100 MB every scrape): {baseline}  "
                  f"VmHWM={vm_hwm_mib(proc.pid):.1f} MiB")
            metrics = requests.get(f"{url}/metrics", timeout=30).text
            failure = [m for m in metrics.splitlines() if m.startswith(
                'customer_sync_exporter_collector_failure{collector="redis"') and
                m.endswith(" 1.0")]
            print(f"  redis: {failure}")
            for name, write in (
                ("latin-1 byte", lambda: _replace(config, good.encode()
                                                 + "# Prüfung\n".encode("latin-1"))),
                ("alias bomb", lambda: _replace(config, good.encode() + alias_bomb())),
                ("52 MB file", lambda: os.replace(big, config)),
            ):
                t1 = time.monotonic()
                write()
                proc.send_signal(signal.SIGHUP)
                rejected = until(lambda: reload_ok(url) == 0)
                time.sleep(0.5)
                during = scrapes.between(t1, time.monotonic())
                _replace(config, good.encode() + b"# fixed\n")
                proc.send_signal(signal.SIGHUP)
                applied = until(lambda: reload_ok(url) == 1)
                print(f"{name:<14} rejected after {rejected:.3f} s; scrapes from the write "
                      f"until 0.5 s after: {fmt(during)}; good file applied after "
                      f"{applied:.3f} s; VmHWM={vm_hwm_mib(proc.pid):.1f} MiB")
            scrapes.stop()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    print(f"   server-side: the hostile Redis sent {server.sent / 1e6:.1f} MB in total")


def _live(url: str) -> bool:
    try:
        return requests.get(f"{url}/health/live", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
