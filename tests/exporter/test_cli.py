"""The installed ``customer-sync-exporter`` command, run as a subprocess against real PostgreSQL.

``check-config`` and ``serve`` must print exactly the located lines of
``tests/fixtures/config/bad/*.expected`` and exit 1; ``serve`` answers /metrics and exits 0 on
SIGTERM; ``check`` prints one row per collector; no run ever prints a database password.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.demo.ports import free_port
from exporter.demo.postgres import EmbeddedPostgres

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "fixtures" / "config" / "bad"
GOOD = ROOT / "tests" / "fixtures" / "config" / "good"
EXE = Path(sys.executable).parent / "customer-sync-exporter"
BAD_NAMES = sorted(p.stem for p in BAD.glob("*.yaml"))
# Each of these also gets its own check-config and serve process (each costs ~0.3 s of CPU, so
# not all of them): they cover each stage that can fail (YAML, env, secret file, field,
# cross-section, list element, several at once). Every fixture goes through one multi-file run.
SINGLE = ["yaml_syntax", "env_var_unset", "secret_file_unreadable", "dsn_invalid",
          "database_missing", "list_element_type", "several_problems", "not_utf8", "alias_bomb"]
FIXTURE_SECRETS = ("S3cretDsnPw", "S3cretOneCPw", "S3cretRedisPw", "98765432123456789")


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k != "CSE_TEST_UNSET_PGPASSWORD"}
    out.update(extra)
    return out


def run(*args: str, cwd: Path = ROOT, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
    if not EXE.exists():
        pytest.fail(f"{EXE} is missing: pip install -e '.[test]' into the venv")
    return subprocess.run([str(EXE), *args], cwd=cwd, env=env(**extra), capture_output=True,
                          text=True, timeout=timeout)


def expected_lines(name: str) -> list[str]:
    return (BAD / f"{name}.expected").read_text(encoding="utf-8").splitlines()


# --- bad and good config files -----------------------------------------------------------------


def test_check_config_on_every_bad_fixture_prints_each_located_error() -> None:
    result = run("check-config", *(f"{n}.yaml" for n in BAD_NAMES), cwd=BAD,
                 ONEC_PASSWORD="S3cretOneCPw")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [line for n in BAD_NAMES for line in expected_lines(n)]
    for secret in FIXTURE_SECRETS:
        assert secret not in result.stderr


@pytest.fixture(scope="module")
def held_port() -> Iterator[int]:
    """A port we listen on: a ``serve`` that got as far as binding it would say so and fail."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture(scope="module")
def single_runs(held_port: int) -> dict[tuple[str, str], subprocess.CompletedProcess[str]]:
    """``check-config`` and ``serve`` on each of SINGLE, four processes at a time."""
    jobs = [(cmd, name) for name in SINGLE for cmd in ("check-config", "serve")]

    def one(job: tuple[str, str]) -> subprocess.CompletedProcess[str]:
        cmd, name = job
        args = ([cmd, f"{name}.yaml"] if cmd == "check-config" else
                [cmd, "--config.file", f"{name}.yaml",
                 "--web.listen-address", f"127.0.0.1:{held_port}"])
        return run(*args, cwd=BAD, ONEC_PASSWORD="S3cretOneCPw")

    with ThreadPoolExecutor(4) as pool:
        return dict(zip(jobs, pool.map(one, jobs), strict=True))


@pytest.mark.parametrize("cmd", ["check-config", "serve"])
@pytest.mark.parametrize("name", SINGLE)
def test_bad_config_alone_prints_its_errors_and_exits_1(
    single_runs: dict[tuple[str, str], subprocess.CompletedProcess[str]], name: str, cmd: str
) -> None:
    result = single_runs[(cmd, name)]
    assert result.returncode == 1
    assert result.stderr.splitlines() == expected_lines(name)  # nothing else: no bind, no trace
    assert result.stdout == ""
    for secret in FIXTURE_SECRETS:
        assert secret not in result.stderr


def test_check_config_reports_good_and_bad_files_together() -> None:
    result = run("check-config", str(GOOD / "minimal.yaml"), str(BAD / "duplicate_key.yaml"),
                 str(GOOD / "no_database.yaml"))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{GOOD / 'minimal.yaml'}: ok; collectors enabled: "
        "synclog, business, postgres, redis, disk, process",
        f"{GOOD / 'no_database.yaml'}: ok; collectors enabled: redis, disk, onec, process",
    ]
    assert result.stderr.splitlines() == [
        f"{BAD}/{line}" for line in expected_lines("duplicate_key")
    ]


@pytest.mark.parametrize(
    ("path", "enabled"),
    [(GOOD / "minimal.yaml", "synclog, business, postgres, redis, disk, process"),
     (GOOD / "no_database.yaml", "redis, disk, onec, process"),
     (ROOT / "config.example.yaml", "synclog, business, postgres, redis, disk, onec, process")],
    ids=lambda v: v.name if isinstance(v, Path) else "",
)
def test_check_config_accepts_good_files(path: Path, enabled: str) -> None:
    result = run("check-config", str(path), PGPASSWORD="pg-pw-x1", ONEC_PASSWORD="onec-pw-x2")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"{path}: ok; collectors enabled: {enabled}\n"
    assert "pg-pw-x1" not in result.stdout


def test_flags_that_make_the_config_invalid_are_refused() -> None:
    result = run("serve", "--config.file", str(GOOD / "minimal.yaml"), "--collector.onec",
                 "--web.listen-address", "127.0.0.1:0")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "(flags): collectors.onec.url: required while the onec collector is enabled "
        "(or set enabled: false)"
    ]


# --- serve and check against real PostgreSQL ---------------------------------------------------


def write_config(tmp_path: Path, dsn: str, extra: str = "") -> Path:
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    (logs / "a.log").write_text("x" * 10)
    path = tmp_path / "config.yaml"
    path.write_text(
        f"scrape_timeout: 5s\ndatabase:\n  dsn: {dsn}\n  connect_timeout: 2s\n"
        f"collectors:\n  disk:\n    dirs:\n      - name: logs\n        path: {logs}\n{extra}"
        + ("" if "onec:" in extra else "  onec:\n    enabled: false\n")
    )
    return path


def dsn_template(pg: EmbeddedPostgres, db_dsn: str, *, port: int | None = None) -> str:
    """The test database's DSN with the password as a ${CSE_PGPASSWORD} reference."""
    dbname = db_dsn.rsplit("/", 1)[1]
    return f"postgresql://postgres:${{CSE_PGPASSWORD}}@127.0.0.1:{port or pg.port}/{dbname}"


@dataclass
class Daemon:
    proc: subprocess.Popen[str]
    url: str
    stderr_path: Path

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = requests.get(f"{self.url}/metrics", timeout=20).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8")


@contextlib.contextmanager
def serving(tmp_path: Path, config: Path, *flags: str, **extra: str) -> Iterator[Daemon]:
    port = free_port()
    stderr_path = tmp_path / f"stderr-{port}.txt"
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(
            [str(EXE), "serve", "--config.file", str(config),
             "--web.listen-address", f"127.0.0.1:{port}", *flags],
            env=env(**extra), stdout=subprocess.DEVNULL, stderr=err, text=True,
        )
    daemon = Daemon(proc, f"http://127.0.0.1:{port}", stderr_path)
    try:
        end = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"exited {proc.returncode}: {daemon.stderr}"
            assert time.monotonic() < end, "did not start in 30 s"
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{daemon.url}/health/live", timeout=2).status_code == 200:
                    break
            time.sleep(0.05)
        yield daemon
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def stop(daemon: Daemon) -> int:
    daemon.proc.send_signal(signal.SIGTERM)
    return daemon.proc.wait(15)


def success(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    return {
        dict(labels)["collector"]: v
        for (name, labels), v in samples.items()
        if name == "customer_sync_exporter_collector_success"
    }


def test_serve_answers_metrics_logs_json_and_exits_0_on_sigterm(
    tmp_path: Path, pg: EmbeddedPostgres, db_dsn: str
) -> None:
    config = write_config(tmp_path, dsn_template(pg, db_dsn))
    with serving(tmp_path, config, "--no-collector.redis", "--no-collector.business",
                 "--log.format", "json", CSE_PGPASSWORD=pg.password) as d:
        samples = d.metrics()
        assert success(samples) == {"synclog": 1, "postgres": 1, "disk": 1, "process": 1}
        assert samples[("customer_sync_postgres_up", ())] == 1
        assert any(name == "customer_sync_exporter_build_info" for name, _ in samples)
        assert samples[("process_resident_memory_bytes", ())] > 0
        assert stop(d) == 0
    # Nothing listens on the port any more (SO_REUSEADDR: closed connections may linger).
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(d.url.rsplit(":", 1)[1])))
    events = [json.loads(line) for line in d.stderr.splitlines() if line.strip()]
    assert {"listening", "stopping"} <= {e["event"] for e in events}
    assert all({"event", "level", "timestamp"} <= e.keys() for e in events)
    assert sorted(e["collector"] for e in events if e["event"] == "collector enabled") == [
        "disk", "postgres", "process", "synclog"]
    assert pg.password not in d.stderr


def test_no_collector_flag_removes_its_self_metrics_and_console_logs(
    tmp_path: Path, pg: EmbeddedPostgres, db_dsn: str
) -> None:
    config = write_config(tmp_path, dsn_template(pg, db_dsn))
    with serving(tmp_path, config, "--no-collector.synclog", "--no-collector.business",
                 "--no-collector.redis", "--log.format", "console",
                 CSE_PGPASSWORD=pg.password) as d:
        samples = d.metrics()
        assert success(samples) == {"postgres": 1, "disk": 1, "process": 1}
        assert not [k for k in samples if ("collector", "synclog") in k[1]]
        assert not [k for k in samples if k[0].startswith("customer_sync_synclog_")]
        assert stop(d) == 0
    lines = [line for line in d.stderr.splitlines() if line.strip()]
    assert lines, "no log output"
    console = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z \[(info|warning|error|debug)\s*\] \S")
    assert all(console.match(line) for line in lines), lines
    assert any(re.search(r"\] listening\s.*port=\d+", line) for line in lines)
    assert pg.password not in d.stderr


def test_wrong_password_fails_with_auth_and_never_prints_it(
    tmp_path: Path, pg: EmbeddedPostgres, db_dsn: str
) -> None:
    wrong = "Wr0ng-Passw0rd-4711"
    dbname = db_dsn.rsplit("/", 1)[1]
    config = write_config(tmp_path, f"postgresql://postgres:{wrong}@127.0.0.1:{pg.port}/{dbname}")
    with serving(tmp_path, config, "--no-collector.redis", "--no-collector.business",
                 "--no-collector.synclog", "--log.level", "debug") as d:
        samples = d.metrics()
        assert success(samples)["postgres"] == 0
        assert samples[("customer_sync_exporter_collector_failure",
                        (("collector", "postgres"), ("reason", "auth")))] == 1
        assert requests.get(f"{d.url}/health/ready", timeout=10).status_code == 503
        assert stop(d) == 0
    events = [json.loads(line) for line in d.stderr.splitlines() if line.strip()]
    assert any(e["event"] == "collector failed" and e.get("reason") == "auth" for e in events)
    assert wrong not in d.stderr and pg.password not in d.stderr


def parse_table(stdout: str) -> dict[str, list[str]]:
    lines = stdout.splitlines()
    assert lines[0].split() == ["collector", "result", "duration", "samples", "reason"]
    rows = {}
    for line in lines[1:]:
        name, state, duration, samples, *reason = line.split(None, 4)
        rows[name] = [state, duration, samples, reason[0] if reason else ""]
    return rows


def test_check_prints_one_row_per_collector_and_fails_when_one_fails(
    tmp_path: Path, pg: EmbeddedPostgres, db_dsn: str
) -> None:
    closed = free_port()  # nothing listens here
    config = write_config(
        tmp_path, dsn_template(pg, db_dsn),
        f"  onec:\n    url: http://127.0.0.1:{closed}/hs/ping\n    password: ${{ONEC_PW}}\n"
        "    username: exporter\n",
    )
    result = run("check", "--config.file", str(config), "--no-collector.redis",
                 CSE_PGPASSWORD=pg.password, ONEC_PW="onec-Secret-99")
    assert result.returncode == 1, result.stdout + result.stderr
    rows = parse_table(result.stdout)
    assert list(rows) == ["synclog", "business", "postgres", "disk", "onec", "process"]
    for name, (state, duration, samples, reason) in rows.items():
        assert re.fullmatch(r"\d+\.\d{3}s", duration), duration
        assert int(samples) >= 1, name  # even the failed probe reports its *_up 0
        if name == "onec":
            assert state == "failed" and reason.startswith("connect: "), reason
        else:
            assert (state, reason) == ("ok", ""), (name, reason)
    out = result.stdout + result.stderr
    assert pg.password not in out and "onec-Secret-99" not in out


def test_check_against_a_closed_database_port(tmp_path: Path, pg: EmbeddedPostgres,
                                              db_dsn: str) -> None:
    config = write_config(tmp_path, dsn_template(pg, db_dsn, port=free_port()))
    result = run("check", "--config.file", str(config), "--no-collector.redis",
                 "--no-collector.synclog", "--no-collector.business", "--no-collector.process",
                 CSE_PGPASSWORD=pg.password)
    assert result.returncode == 1
    rows = parse_table(result.stdout)
    assert list(rows) == ["postgres", "disk"]
    assert rows["postgres"][0] == "failed" and rows["postgres"][3].startswith("connect: ")
    assert rows["disk"][0] == "ok"
    assert pg.password not in result.stdout + result.stderr


def test_check_all_ok_exits_0(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "collectors:\n  synclog: {enabled: false}\n  business: {enabled: false}\n"
        "  postgres: {enabled: false}\n  redis: {enabled: false}\n  onec: {enabled: false}\n"
        f"  disk:\n    dirs: [{{name: here, path: '{tmp_path}'}}]\n"
    )
    result = run("check", "--config.file", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = parse_table(result.stdout)
    assert list(rows) == ["disk", "process"]
    assert all(state == "ok" for state, *_ in rows.values())


def test_check_config_refuses_a_52_mb_file_with_a_located_line(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("w") as f:
        f.write("collectors:\n  onec: {enabled: false}\n  redis:\n    queues:\n")
        while f.tell() < 52_000_000:
            f.write("      - some-queue-name\n")
    result = run("check-config", str(path))
    assert result.returncode == 1
    assert re.fullmatch(rf"{re.escape(str(path))}:\d+: \(file\): the file goes past 256 KiB on "
                        r"this line; a config is a few KiB, so it is not parsed\n", result.stderr)


def test_serve_survives_bad_config_files_and_applies_the_next_good_one(tmp_path: Path) -> None:
    """Non-UTF-8, an alias bomb, 52 MB: each is a rejected reload; SIGHUP and edits still act."""
    config = tmp_path / "config.yaml"
    base = ("collectors:\n  synclog: {enabled: false}\n  business: {enabled: false}\n"
            "  postgres: {enabled: false}\n  redis: {enabled: false}\n  onec: {enabled: false}\n"
            f"  disk:\n    dirs: [{{name: here, path: '{tmp_path}'}}]\n")
    config.write_text(base)

    def replace(data: bytes) -> None:
        tmp = config.with_name(".config.yaml.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, config)

    def rejections(d: Daemon) -> int:
        return d.stderr.count('"event": "config reload rejected')

    def reload_ok(d: Daemon) -> float:
        return d.metrics()[("customer_sync_exporter_config_last_reload_successful", ())]

    def new_config_with_its_status(d: Daemon) -> bool:
        """Whether the new collectors serve; when they do, the same scrape says the reload
        succeeded (the swap and the status are one step)."""
        samples = d.metrics()
        if set(success(samples)) != {"disk"}:
            return False
        assert samples[("customer_sync_exporter_config_last_reload_successful", ())] == 1
        return True

    bomb = ["x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    bomb += [f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    bad_files = {
        "latin1": base.encode() + "# Prüfung\n".encode("latin-1"),
        "alias_bomb": base.encode() + "\n".join(bomb).encode() + b"\n",
        "52mb": base.encode() + b"#" + b"x" * 52_000_000 + b"\n",
    }
    def until(predicate: Callable[[], bool], what: str) -> None:
        end = time.monotonic() + 10
        while not predicate():
            assert time.monotonic() < end, what
            time.sleep(0.05)

    with serving(tmp_path, config) as d:
        assert set(success(d.metrics())) == {"disk", "process"}
        for name, data in bad_files.items():
            before = rejections(d)
            replace(data)
            d.proc.send_signal(signal.SIGHUP)  # not to wait for the 2 s poll
            until(lambda n=before: rejections(d) > n and reload_ok(d) == 0, f"{name}: not rejected")
            assert set(success(d.metrics())) == {"disk", "process"}  # the old config serves
            before = rejections(d)
            d.proc.send_signal(signal.SIGHUP)  # still heard: the same file rejected once more
            until(lambda n=before: rejections(d) > n, f"{name}: SIGHUP not acted on")
            replace((base + "  process: {enabled: false}\n").encode())
            d.proc.send_signal(signal.SIGHUP)
            until(lambda: new_config_with_its_status(d), f"{name}: good file not applied")
            replace(base.encode())  # back to both collectors for the next bad file
            d.proc.send_signal(signal.SIGHUP)
            until(lambda: set(success(d.metrics())) == {"disk", "process"}, "restore")
        assert stop(d) == 0
    events = [json.loads(line) for line in d.stderr.splitlines() if line.strip()]
    rejected = [e["error"] for e in events if e["event"].startswith("config reload rejected")]
    # Each bad file, as it was written and again on SIGHUP (a poll may add one more), with the
    # line where it goes wrong.
    assert [(line, len(list(group)) >= 2) for line, group in itertools.groupby(rejected)] == [
        (f"{config}:9: (file): byte 0xfc in column 5 is not UTF-8; save the file as UTF-8", True),
        (f"{config}:12: (size): the document grows past 5000 YAML nodes here (aliases count as "
         "every node they repeat); a config has a few hundred", True),
        (f"{config}:9: (file): the file goes past 256 KiB on this line; a config is a few KiB, "
         "so it is not parsed", True),
    ]


# --- the flags Go exporters have ----------------------------------------------------------------


def disk_only(tmp_path: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        "collectors:\n  synclog: {enabled: false}\n  business: {enabled: false}\n"
        "  postgres: {enabled: false}\n  redis: {enabled: false}\n  onec: {enabled: false}\n"
        "  process: {enabled: false}\n"
        f"  disk:\n    dirs: [{{name: here, path: '{tmp_path}'}}]\n"
    )
    return config


@pytest.mark.parametrize("args", [["--version"], ["serve", "--version"],
                                  ["--config.file", "x.yaml", "--version"]])
def test_version_prints_version_revision_python_and_platform(args: list[str]) -> None:
    from importlib.metadata import version

    result = run(*args)
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    expected = re.escape(version("customer-sync-exporter"))
    assert re.fullmatch(rf"customer-sync-exporter, version {expected} "
                        r"\(revision: (unknown|[0-9a-f]{40})\)", lines[0]), lines[0]
    assert lines[1] == f"  python version:   {platform.python_version()} " \
                       f"({platform.python_implementation()})"
    assert lines[2] == f"  platform:         {sys.platform}/{platform.machine()}"
    assert re.fullmatch(r"  libraries:        prometheus-client [\d.]+, h11 [\d.]+, .*", lines[3])


def test_several_listen_addresses_telemetry_path_and_logfmt(tmp_path: Path) -> None:
    second = free_port()
    with serving(tmp_path, disk_only(tmp_path), "--web.listen-address", f"127.0.0.1:{second}",
                 "--web.telemetry-path", "/custom/metrics", "--log.format", "logfmt") as d:
        urls = [d.url, f"http://127.0.0.1:{second}"]
        for url in urls:
            r = requests.get(f"{url}/custom/metrics", timeout=10)
            assert r.status_code == 200 and "customer_sync_log_dir_" in r.text
            assert requests.get(f"{url}/metrics", timeout=10).status_code == 404
            assert 'href="/custom/metrics"' in requests.get(f"{url}/", timeout=10).text
        assert stop(d) == 0
    lines = [line for line in d.stderr.splitlines() if line.strip()]
    stamp = r"timestamp=\d{4}-\d\d-\d\dT[\d:.]+Z level=\w+ event=\S+"
    assert all(re.match(stamp, line) for line in lines), lines
    listening = [line for line in lines if "event=listening" in line]
    ports = [int(d.url.rsplit(":", 1)[1]), second]
    assert [re.findall(r" port=(\d+)", line) for line in listening] == [[str(p)] for p in ports]


def test_log_level_warn_drops_info_lines(tmp_path: Path) -> None:
    with serving(tmp_path, disk_only(tmp_path), "--log.level", "warn") as d:
        assert requests.get(f"{d.url}/metrics", timeout=10).status_code == 200
        assert stop(d) == 0
    events = [json.loads(line) for line in d.stderr.splitlines() if line.strip()]
    assert not [e for e in events if e["level"] == "info"], events


@pytest.mark.parametrize("path", ["/health/ready", "metrics"])
def test_a_telemetry_path_that_would_hide_a_page_is_refused(path: str) -> None:
    result = run("serve", "--web.telemetry-path", path)
    assert result.returncode == 2
    assert f"--web.telemetry-path: invalid telemetry path '{path}'" in result.stderr


# --- 1C credentials that are not ASCII ---------------------------------------------------------

ONEC_USER, ONEC_PASSWORD = "Администратор", "пароль1С"  # a Russian 1C base's default administrator


def _onec_only(tmp_path: Path, name: str, onec: str) -> Path:
    path = tmp_path / name
    path.write_text(
        "collectors:\n  synclog: {enabled: false}\n  business: {enabled: false}\n"
        "  postgres: {enabled: false}\n  redis: {enabled: false}\n  disk: {enabled: false}\n"
        "  process: {enabled: false}\n  onec:\n" + onec, encoding="utf-8")
    return path


def test_cyrillic_1c_credentials_are_sent_and_never_printed(tmp_path: Path) -> None:
    from urllib.parse import quote

    from exporter.demo.onec import OneCStandIn

    with OneCStandIn(username=ONEC_USER, password=ONEC_PASSWORD) as onec:
        userinfo = f"{quote(ONEC_USER, safe='')}:{quote(ONEC_PASSWORD, safe='')}@"
        by_keys = _onec_only(tmp_path, "keys.yaml", f"    url: {onec.url}\n"
                             f"    username: {ONEC_USER}\n    password: ${{ONEC_PW}}\n")
        by_url = _onec_only(tmp_path, "url.yaml",
                            f"    url: {onec.url.replace('://', '://' + userinfo)}\n")
        wrong = _onec_only(tmp_path, "wrong.yaml", f"    url: {onec.url}\n"
                           f"    username: {ONEC_USER}\n    password: ${{ONEC_PW}}x\n")
        outputs = []
        for config, state in ((by_keys, "ok"), (by_url, "ok"), (wrong, "failed")):
            result = run("check", "--config.file", str(config), ONEC_PW=ONEC_PASSWORD)
            rows = parse_table(result.stdout)
            assert rows["onec"][0] == state, result.stdout + result.stderr
            if state == "failed":
                assert rows["onec"][3].startswith("auth: "), rows
            outputs.append(result.stdout + result.stderr)
        assert onec.requests == 3  # each check sent its request: none died before it
        with serving(tmp_path, by_url, "--log.level", "debug") as d:
            samples = d.metrics()
            assert samples[("customer_sync_onec_up", ())] == 1
            outputs.append(requests.get(f"{d.url}/", timeout=10).text)
            outputs.append(requests.get(f"{d.url}/health/ready", timeout=10).text)
            assert stop(d) == 0
        outputs.append(d.stderr)
    for output in outputs:
        for secret in (ONEC_PASSWORD, quote(ONEC_PASSWORD, safe=""), ONEC_PASSWORD + "x"):
            assert secret not in output
