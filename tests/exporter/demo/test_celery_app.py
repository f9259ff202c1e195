"""The demo's Celery app (``exporter/demo/celery_app.py``): the shop's task names, so the celery
collector's default allow-list matches them, beat's schedule sped up from the shop's, and the
import's 1C check against the real 1C stand-in in each of its outage modes. The tasks run in a
real worker in ``test_celery_processes.py``."""

from __future__ import annotations

import pytest

from exporter.config.schema import SHOP_CELERY_TASKS, CeleryConfig
from exporter.demo.celery_app import (
    CARTS_TASK,
    CLEANUP_TASK,
    EMAIL_TASK,
    IMPORT_TASK,
    MONITOR_TASK,
    make_app,
    onec_problem,
)
from exporter.demo.onec import Mode, OneCStandIn


def test_the_apps_tasks_are_the_shops_and_the_collectors_allow_list() -> None:
    app = make_app("redis://127.0.0.1:1/0")
    ours = {name for name in app.tasks if not name.startswith("celery.")}
    assert ours == {IMPORT_TASK, CLEANUP_TASK, CARTS_TASK, MONITOR_TASK, EMAIL_TASK}
    assert set(CeleryConfig().tasks) == set(SHOP_CELERY_TASKS) == ours - {EMAIL_TASK}
    assert app.conf.task_default_queue == "celery"
    assert not app.conf.worker_send_task_events  # the shop's default: the exporter turns them on


@pytest.mark.parametrize(("speedup", "hourly", "eight_hourly"), [(60, 60.0, 480.0),
                                                                 (3600, 1.0, 8.0)])
def test_beat_sends_the_shops_schedule_sped_up(
    speedup: float, hourly: float, eight_hourly: float
) -> None:
    schedule = make_app("redis://127.0.0.1:1/0", beat_speedup=speedup).conf.beat_schedule
    periods = {entry["task"]: entry["schedule"] for entry in schedule.values()}
    assert periods == {CLEANUP_TASK: hourly, CARTS_TASK: hourly, MONITOR_TASK: eight_hourly}


def test_the_imports_1c_check_sees_every_outage_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    with OneCStandIn(username="exchange", password="onec-pass", slow_seconds=2.0) as onec:
        monkeypatch.setenv("DEMO_ONEC_URL", onec.url)
        monkeypatch.setenv("DEMO_ONEC_USERNAME", "exchange")
        monkeypatch.setenv("DEMO_ONEC_PASSWORD", "onec-pass")
        assert onec_problem(tries=1) is None
        seen = {}
        for mode in (Mode.DOWN, Mode.ERROR, Mode.SLOW, Mode.DEGRADED):
            onec.set_mode(mode)
            seen[mode] = onec_problem(tries=2, pause=0.01, timeout=0.5)
            onec.set_mode(Mode.OK)
        assert seen == {
            Mode.DOWN: "ConnectionError",
            Mode.ERROR: "HTTP 500, status None",
            Mode.SLOW: "ReadTimeout",
            Mode.DEGRADED: "HTTP 200, status 'maintenance'",
        }
        before = onec.requests
        assert onec_problem(tries=3, pause=0.01) is None and onec.requests == before + 1
        monkeypatch.setenv("DEMO_ONEC_PASSWORD", "wrong")
        assert onec_problem(tries=1) == "HTTP 401, status None"
