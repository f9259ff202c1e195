"""The celery collector against real ``celery worker`` and ``celery beat`` processes on a real
redis-server (the test app is ``tests/celery_app.py``).

Ground truth is what the tasks were made to do (each task's outcome is fixed by its code) and what
the worker itself says through Celery's remote control (``inspect stats``: tasks accepted per name,
pool processes) or the kernel (``/proc``: children, peak RSS), never the collector's own output.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from celery import Celery
from prometheus_client.core import Metric
from pydantic import SecretStr

from collectors.celery import CeleryCollector
from collectors.disk import DiskCollector
from exporter.collector import CollectorError, Deadline, Reason
from exporter.config import CeleryConfig, DiskConfig, LogDirConfig
from exporter.demo.redis import RedisServer
from exporter.scrape import Scraper
from tests.exposition import promtool_problems, samples

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))
TASKS = ["tests.ok", "tests.fail", "tests.flaky", "tests.cleanup", "tests.never_sent"]
HEARTBEAT = 2.0  # Celery's default heartbeat interval; the rule says down after twice that


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own: killing it, or its pub/sub traffic, harms no other."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


class Proc:
    """A ``celery`` command (worker or beat) in its own process group, logging to a file."""

    def __init__(self, args: list[str], url: str, log: Path, *, task_events: bool,
                 beat_seconds: float = 1.0) -> None:
        env = dict(os.environ, CSX_BROKER_URL=url, CSX_TASK_EVENTS="1" if task_events else "0",
                   CSX_BEAT_SECONDS=str(beat_seconds), PYTHONPATH=str(ROOT))
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen([CELERY, "-A", "tests.celery_app", *args], env=env,
                                          cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, signum: int) -> None:
        os.killpg(self.popen.pid, signum)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait()
        with contextlib.suppress(ProcessLookupError):  # children of a SIGKILLed main process
            os.killpg(self.popen.pid, signal.SIGKILL)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    started: list[Proc] = []

    def start(kind: str, url: str, name: str = "w1", *, task_events: bool = True,
              concurrency: int = 2, beat_seconds: float = 1.0) -> Proc:
        if kind == "worker":
            args = ["worker", "-l", "info", "-n", f"{name}@csx", "-c", str(concurrency),
                    "--without-mingle", "--without-gossip"]
        else:
            args = ["beat", "-l", "info", "-s", str(tmp_path / f"beat-{name}"),
                    "--pidfile", str(tmp_path / f"beat-{name}.pid")]
        proc = Proc(args, url, tmp_path / f"{kind}-{name}.log", task_events=task_events,
                    beat_seconds=beat_seconds)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def collectors() -> Iterator[Callable[..., CeleryCollector]]:
    made: list[CeleryCollector] = []

    def make(url: str, **extra: Any) -> CeleryCollector:
        settings: dict[str, Any] = {"enabled": True, "broker_url": SecretStr(url),
                                    "tasks": TASKS, "inspect_interval": 2.0, **extra}
        collector = CeleryCollector(CeleryConfig(**settings))
        made.append(collector)
        return collector

    yield make
    for collector in made:
        collector.close()


def scrape(collector: CeleryCollector) -> tuple[list[Metric], CollectorError | None]:
    try:
        return collector.collect(Deadline.after(5)), None
    except CollectorError as exc:
        return exc.partial, exc


def wait_for(collector: CeleryCollector, check: Callable[[list[Metric]], bool], what: str,
             timeout: float = 30.0, every: float = 0.1) -> list[Metric]:
    end = time.monotonic() + timeout
    while True:
        families, _ = scrape(collector)
        if check(families):
            return families
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


def up(families: list[Metric], worker: str) -> float | None:
    return samples(families, "customer_sync_celery_worker_up").get((worker,))


def client(url: str) -> Celery:
    app = Celery("csx-test-client", broker=url, set_as_current=False)
    app.conf.task_ignore_result = True
    return app


def tasks_total(families: list[Metric]) -> dict[tuple[str, ...], float]:
    return samples(families, "customer_sync_celery_tasks_total")


# --- outcomes ---------------------------------------------------------------------------------


def test_known_outcomes_give_exactly_those_counts(
    broker: RedisServer, procs: Callable[..., Proc], collectors: Callable[..., CeleryCollector]
) -> None:
    url = broker.url()
    collector = collectors(url)
    worker = procs("worker", url)
    wait_for(collector, lambda f: up(f, "w1@csx") == 1.0, "the worker to come up")

    app = client(url)
    revoked = app.send_task("tests.ok", countdown=2)  # received now, held for its ETA, revoked
    for _ in range(3):
        app.send_task("tests.ok", args=(0.3,))
    for _ in range(2):
        app.send_task("tests.fail")
    app.send_task("tests.flaky", args=(1,))  # fails once, retried at once, then succeeds
    wait_for(collector, lambda f: tasks_total(f)[("tests.ok", "received")] == 4.0,
             "the ETA task to be received")
    app.control.revoke(revoked.id)

    def settled(f: list[Metric]) -> bool:
        t = tasks_total(f)
        return (t[("tests.ok", "succeeded")] == 3 and t[("tests.ok", "revoked")] == 1
                and t[("tests.fail", "failed")] == 2 and t[("tests.flaky", "succeeded")] == 1)

    families = wait_for(collector, settled, "every task to finish")
    time.sleep(1.0)  # anything extra (a duplicate or a late event) would arrive by now
    families, error = scrape(collector)
    assert error is None, error.message if error else ""

    expected = {("tests.ok", "received"): 4, ("tests.ok", "started"): 3,
                ("tests.ok", "succeeded"): 3, ("tests.ok", "revoked"): 1,
                ("tests.fail", "received"): 2, ("tests.fail", "started"): 2,
                ("tests.fail", "failed"): 2,
                ("tests.flaky", "received"): 2, ("tests.flaky", "started"): 2,
                ("tests.flaky", "retried"): 1, ("tests.flaky", "succeeded"): 1}
    got = tasks_total(families)
    assert set(got) == {(t, s) for t in TASKS for s in
                        ("received", "started", "succeeded", "failed", "retried", "rejected",
                         "revoked")}  # zero-filled allow-list, nothing else
    assert {k: v for k, v in got.items() if v} == {k: float(v) for k, v in expected.items()}

    # The worker's own account (remote control, not events): tasks accepted per name.
    stats = app.control.inspect(timeout=2).stats()
    assert stats is not None
    accepted = stats["w1@csx"]["total"]
    assert accepted == {"tests.ok": 3, "tests.fail": 2, "tests.flaky": 2}
    for name, n in accepted.items():
        assert got[(name, "started")] == n

    counts = samples(families, "customer_sync_celery_task_runtime_seconds_count")
    ended = {t: got[(t, "succeeded")] + got[(t, "failed")] + got[(t, "retried")] for t in TASKS}
    assert counts == {(t,): ended[t] for t in TASKS}
    sums = samples(families, "customer_sync_celery_task_runtime_seconds_sum")
    assert 0.9 <= sums[("tests.ok",)] < 0.9 + 1.0  # three runs of sleep(0.3)
    waits = samples(families, "customer_sync_celery_task_queue_wait_seconds_count")
    assert waits[("tests.ok",)] == 3 and waits[("tests.flaky",)] == 2  # the ETA task: none
    succeeded = samples(families, "customer_sync_celery_task_last_succeeded_timestamp_seconds")
    assert set(succeeded) == {("tests.ok",), ("tests.flaky",)}
    assert all(time.time() - 60 < ts <= time.time() for ts in succeeded.values())

    # Per worker: processed matches the worker, the pool matches the kernel's process tree.
    families = wait_for(
        collector,
        lambda f: samples(f, "customer_sync_celery_worker_tasks_processed_total").get(
            ("w1@csx",)) == 7.0,
        "a heartbeat carrying processed=7")
    children = psutil.Process(worker.pid).children()
    assert samples(families, "customer_sync_celery_worker_pool_processes") == {
        ("w1@csx",): float(len(children))} == {("w1@csx",): 2.0}
    rss = samples(families, "customer_sync_celery_worker_peak_resident_memory_bytes")
    # The kernel's peak RSS of the worker's main process. getrusage's maxrss also covers the
    # image the process had before exec(), which here is a copy of this pytest process.
    hwm = _vm_hwm_bytes(worker.pid)
    assert 0.9 * hwm <= rss[("w1@csx",)] <= max(hwm, _vm_hwm_bytes(os.getpid()))
    assert samples(families, "customer_sync_celery_worker_task_events_enabled") == {
        ("w1@csx",): 1.0}
    assert samples(families, "customer_sync_celery_workers") == {(): 1.0}
    assert promtool_problems(families) == ""


def _vm_hwm_bytes(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) * 1024.0
    raise AssertionError("no VmHWM")


# --- workers that die or hang -----------------------------------------------------------------


def assert_goes_down_by_the_heartbeat_rule(collector: CeleryCollector, worker: str) -> float:
    """Scrape until ``worker`` reads down, then check every scrape against Celery's rule with
    the worker's final newest heartbeat: a scrape that ended before it expired read up, and the
    first one that began after it read down (the scrape's own clock lies between the two
    readings taken around it, so this holds however loaded the machine is). Returns the newest
    heartbeat's time."""
    seen: list[tuple[float, float, float | None]] = []
    end = time.monotonic() + 3 * HEARTBEAT + 10
    while True:
        before = time.time()
        families, error = scrape(collector)
        after = time.time()
        assert error is None, error.message if error else ""
        seen.append((before, after, up(families, worker)))
        if seen[-1][2] == 0.0:
            break
        assert time.monotonic() < end, f"{worker} never read down"
        time.sleep(0.05)
    last = samples(families, "customer_sync_celery_worker_last_heartbeat_timestamp_seconds")
    expires = last[(worker,)] + 2 * HEARTBEAT
    for before, after, state in seen:
        if after < expires:
            assert state == 1.0, (before, after, expires)
        if before >= expires:
            assert state == 0.0, (before, after, expires)
    return last[(worker,)]


def test_killed_worker_goes_down_in_time_and_comes_back_when_restarted(
    broker: RedisServer, procs: Callable[..., Proc], collectors: Callable[..., CeleryCollector]
) -> None:
    url = broker.url()
    collector = collectors(url)
    worker = procs("worker", url, "k1")
    wait_for(collector, lambda f: up(f, "k1@csx") == 1.0, "the worker to come up")
    worker.signal(signal.SIGKILL)  # no worker-offline: only the heartbeats stop
    killed_at = time.time()
    last = assert_goes_down_by_the_heartbeat_rule(collector, "k1@csx")
    assert last < killed_at + 1.0  # the newest heartbeat is one sent before the kill
    families, error = scrape(collector)
    assert error is None and samples(families, "customer_sync_celery_workers") == {(): 1.0}
    assert samples(families, "customer_sync_celery_worker_active_tasks") == {("k1@csx",): 0.0}

    procs("worker", url, "k1")  # the same hostname again
    wait_for(collector, lambda f: up(f, "k1@csx") == 1.0, "the restarted worker to come up")


def test_hung_worker_goes_down_and_recovers_when_continued(
    broker: RedisServer, procs: Callable[..., Proc], collectors: Callable[..., CeleryCollector]
) -> None:
    url = broker.url()
    collector = collectors(url)
    worker = procs("worker", url, "h1")
    wait_for(collector, lambda f: up(f, "h1@csx") == 1.0, "the worker to come up")
    worker.signal(signal.SIGSTOP)  # hung: its connections stay open, it only stops talking
    stopped_at = time.time()
    assert assert_goes_down_by_the_heartbeat_rule(collector, "h1@csx") < stopped_at + 1.0
    worker.signal(signal.SIGCONT)
    wait_for(collector, lambda f: up(f, "h1@csx") == 1.0, "the continued worker to come back",
             timeout=3 * HEARTBEAT + 2)


def test_a_worker_leaving_cleanly_is_down_at_once(
    broker: RedisServer, procs: Callable[..., Proc], collectors: Callable[..., CeleryCollector]
) -> None:
    url = broker.url()
    collector = collectors(url)
    worker = procs("worker", url, "s1")
    wait_for(collector, lambda f: up(f, "s1@csx") == 1.0, "the worker to come up")
    worker.signal(signal.SIGTERM)  # warm shutdown: worker-offline
    worker.popen.wait(timeout=20)
    families, _ = scrape(collector)
    last = samples(families, "customer_sync_celery_worker_last_heartbeat_timestamp_seconds")
    assert up(families, "s1@csx") == 0.0
    assert time.time() - last[("s1@csx",)] < 2 * HEARTBEAT  # down before the heartbeat rule


# --- beat -------------------------------------------------------------------------------------


def test_stopped_beat_makes_the_scheduled_tasks_age_grow(
    broker: RedisServer, procs: Callable[..., Proc], collectors: Callable[..., CeleryCollector]
) -> None:
    url = broker.url()
    collector = collectors(url)
    procs("worker", url, "b1")
    beat = procs("beat", url, "b1", beat_seconds=1.0)

    def received(f: list[Metric]) -> float | None:
        return samples(f, "customer_sync_celery_task_last_received_timestamp_seconds").get(
            ("tests.cleanup",))

    first = received(wait_for(collector, lambda f: received(f) is not None, "a scheduled run"))
    assert first is not None
    wait_for(collector, lambda f: (received(f) or 0) > first, "a second scheduled run")
    families, _ = scrape(collector)
    assert time.time() - (received(families) or 0) < 3.0  # kept fresh by a 1 s schedule
    beat.stop()
    stopped = received(scrape(collector)[0])
    while True:  # until a run sent just before beat stopped has been received
        time.sleep(1.0)
        latest = received(scrape(collector)[0])
        if latest == stopped:
            break
        stopped = latest
    time.sleep(4.0)
    families, error = scrape(collector)
    assert error is None and received(families) == stopped
    assert time.time() - (stopped or 0) > 4.0  # the age grows: alert at twice the period
    assert up(families, "b1@csx") == 1.0  # the worker is fine; only beat stopped


# --- broker failures and events that are off ---------------------------------------------------


def test_redis_down_is_connect_while_other_collectors_keep_serving(
    broker: RedisServer, procs: Callable[..., Proc], collectors: Callable[..., CeleryCollector],
    tmp_path: Path,
) -> None:
    url = broker.url()
    collector = collectors(url)
    procs("worker", url, "r1")
    wait_for(collector, lambda f: up(f, "r1@csx") == 1.0, "the worker to come up")
    client(url).send_task("tests.ok")
    wait_for(collector, lambda f: tasks_total(f)[("tests.ok", "succeeded")] == 1, "one task")
    (tmp_path / "logs").mkdir()
    disk = DiskCollector(DiskConfig(dirs=[LogDirConfig(name="logs", path=tmp_path / "logs")]))
    scraper = Scraper([collector, disk], scrape_timeout=5.0, process_collector=False)
    try:
        broker.kill()
        time.sleep(0.5)
        families = scraper.scrape(Deadline.after(5))
        success = samples(families, "customer_sync_exporter_collector_success")
        failure = samples(families, "customer_sync_exporter_collector_failure")
        assert success == {("celery",): 0.0, ("disk",): 1.0}
        assert failure[("celery", Reason.CONNECT.value)] == 1.0
        assert sum(v for (c, _), v in failure.items() if c == "celery") == 1.0
        # What the exporter counted stays; the workers it can no longer see are left out.
        assert tasks_total(families)[("tests.ok", "succeeded")] == 1.0
        assert samples(families, "customer_sync_celery_worker_up") == {}
        assert samples(families, "customer_sync_log_dir_files") == {("logs",): 0.0}
        assert promtool_problems(families) == ""
        result = scraper.last_results()["celery"]
        assert result is not None and "redis://" not in result.message
        # Whichever the stream met last: the reset of its connection as Redis died, or the
        # refusal of a reconnect (a loaded machine may not have tried one in 0.5 s).
        assert any(what in result.message for what in
                   ("Connection refused", "connecting", "Connection reset by peer")), result.message

        broker.start()  # the same port: the stream reconnects with back-off (at most 10 s)
        wait_for(collector, lambda f: up(f, "r1@csx") == 1.0, "the stream to reconnect",
                 timeout=25.0, every=0.25)
        families = scraper.scrape(Deadline.after(5))
        assert samples(families, "customer_sync_exporter_collector_success") == {
            ("celery",): 1.0, ("disk",): 1.0}
    finally:
        scraper.close()


def test_broker_not_reachable_from_the_start_is_connect_and_an_unknown_host_dns(
    collectors: Callable[..., CeleryCollector],
) -> None:
    from exporter.demo.postgres import free_port

    for url, reason in [(f"redis://127.0.0.1:{free_port()}/0", Reason.CONNECT),
                        ("redis://no-such-host.invalid:6379/0", Reason.DNS)]:
        collector = collectors(url)
        started = time.monotonic()
        _, error = scrape(collector)
        assert error is not None and error.reason is reason, (url, error)
        assert time.monotonic() - started < 5.0
        assert samples(error.partial, "customer_sync_celery_tasks_total")  # still zero-filled


def test_password_from_file_and_never_shown(tmp_path: Path,
                                            collectors: Callable[..., CeleryCollector]) -> None:
    server = RedisServer(tmp_path / "auth", password="S3cretBrokerPw").start()
    try:
        secret = tmp_path / "pw"
        secret.write_text("S3cretBrokerPw\n")
        bare = f"redis://127.0.0.1:{server.port}/0"
        good = CeleryCollector(CeleryConfig(enabled=True, broker_url=SecretStr(bare),
                                            password_file=secret))  # type: ignore[arg-type]
        try:
            assert scrape(good)[1] is None
        finally:
            good.close()
        wrong = collectors(f"redis://:WrongS3cret@127.0.0.1:{server.port}/0")
        _, error = scrape(wrong)
        assert error is not None and error.reason is Reason.AUTH
        assert "WrongS3cret" not in error.message and "S3cret" not in repr(error.partial)
    finally:
        server.stop()


def test_events_off_in_the_worker_is_config_unless_the_exporter_may_turn_them_on(
    broker: RedisServer, procs: Callable[..., Proc], collectors: Callable[..., CeleryCollector]
) -> None:
    url = broker.url()
    forbidden = collectors(url, enable_events=False)
    worker = procs("worker", url, "e1", task_events=False)  # no -E, worker_send_task_events False
    wait_for(forbidden, lambda f: up(f, "e1@csx") == 1.0, "the worker to come up")
    app = client(url)
    app.send_task("tests.ok")
    app.send_task("tests.ok")

    def error_of(c: CeleryCollector) -> CollectorError | None:
        return scrape(c)[1]

    end = time.monotonic() + 15
    while (error := error_of(forbidden)) is None and time.monotonic() < end:
        time.sleep(0.2)
    assert error is not None and error.reason is Reason.CONFIG, error
    assert "e1@csx" in error.message and "enable_events" in error.message
    families = error.partial
    assert samples(families, "customer_sync_celery_worker_task_events_enabled") == {
        ("e1@csx",): 0.0}
    assert samples(families, "customer_sync_celery_worker_tasks_processed_total") == {
        ("e1@csx",): 2.0}  # the worker ran them...
    assert tasks_total(families)[("tests.ok", "started")] == 0.0  # ...unseen
    assert promtool_problems(families) == ""

    allowed = collectors(url, enable_events=True)
    wait_for(allowed, lambda f: samples(f, "customer_sync_celery_worker_task_events_enabled")
             == {("e1@csx",): 1.0}, "the exporter to turn the worker's task events on")
    end = time.monotonic() + 5  # the worker's own word for it
    while "Events of group {task} enabled by remote" not in worker.log.read_text():
        assert time.monotonic() < end, worker.log.read_text()[-2000:]
        time.sleep(0.1)
    app.send_task("tests.ok")
    app.send_task("tests.ok")
    families = wait_for(allowed, lambda f: tasks_total(f)[("tests.ok", "succeeded")] == 2.0,
                        "the two tasks sent after events were turned on")
    assert error_of(allowed) is None
    # The forbidding exporter sees them too now, and stops reporting the workers as silent.
    wait_for(forbidden, lambda f: tasks_total(f)[("tests.ok", "succeeded")] == 2.0, "them too")
    end = time.monotonic() + 3 * HEARTBEAT + 2
    while error_of(forbidden) is not None and time.monotonic() < end:
        time.sleep(0.2)
    assert error_of(forbidden) is None
