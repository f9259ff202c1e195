"""The fast inner loop: ``pytest -m fast`` runs the tests that need no server, in seconds.

Loaded for every run (``-p tests.fast`` in pyproject's addopts), this plugin marks a test
``fast`` unless it

* is end-to-end (marked ``e2e`` or under ``tests/e2e/``),
* asks, directly or through other fixtures, for a fixture in ``SERVER_FIXTURES``,
* starts a server or a process in its own body (``SERVER_CALLS`` in its source), or
* lives in a module of ``SLOW_MODULES``, which runs external programs for every case.

The rule is by fixture and by call, not a list of tests, so a new pure test anywhere is fast
without anyone marking it. What stays is pure logic and in-process stand-ins (the 1C HTTP
stand-in, the alert sink, fake process tables), plus a few quick ``promtool check metrics`` runs.
The whole suite (``bash scripts/test``) stays the README's and CI's test command.
"""

from __future__ import annotations

import inspect

import pytest

SERVER_FIXTURES = frozenset({
    "pg", "pg_major", "pg_servers", "db_dsn", "exporter_dsn", "conn", "db", "written",  # PostgreSQL
    "redis_server", "own_redis", "private_redis", "broker",  # redis-server
    "procs",  # real Celery workers and beat
    "live",  # grafana: a live Prometheus holding the dashboards' data
    "alertmanager", "sink",  # the real Alertmanager and what it delivers to
    "stack", "faults", "soak",  # end-to-end stacks
    "children",  # the process collector's real child processes
})
SERVER_CALLS = ("EmbeddedPostgres(", ".server(", "RedisServer(", "start_alertmanager(", "Popen(")
SLOW_MODULES = frozenset({
    "tests/prometheus/test_rules.py",  # promtool test rules for every case
    "tests/alertmanager/test_config.py",  # render-config, amtool and Alertmanager per case
    "tests/exporter/test_cli.py",  # the installed command as a subprocess, ~0.3 s a run
})


def _starts_servers(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    try:
        source = inspect.getsource(function) if function is not None else ""
    except (OSError, TypeError):
        return True  # cannot tell: not fast
    return any(call in source for call in SERVER_CALLS)


def is_fast(item: pytest.Item) -> bool:
    path = item.nodeid.split("::", 1)[0]
    return not (
        item.get_closest_marker("e2e") is not None
        or path.startswith("tests/e2e/")
        or path in SLOW_MODULES
        or SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        or _starts_servers(item)
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if is_fast(item):
            item.add_marker(pytest.mark.fast)
