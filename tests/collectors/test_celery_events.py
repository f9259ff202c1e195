"""The pure core of the celery collector: events as Celery's receiver hands them out, in; metric
families out. Checked against brute-force counts over random task lifecycles, and the worker rules
(up by heartbeat, task events off) against their definitions, with no broker."""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.celery_events import BUCKETS, OTHER, TASK_STATES, UNKNOWN, CeleryTally
from tests.exposition import promtool_problems, samples

HOST = "celery@shop"


def tally(tasks: list[str], cap: int = 2, forget_after: float = 900.0) -> CeleryTally:
    return CeleryTally(tasks, cap, forget_after=forget_after, max_tasks_in_memory=1000)


def task_event(kind: str, task_id: str, at: float, **fields: Any) -> dict[str, Any]:
    return {"type": f"task-{kind}", "uuid": task_id, "hostname": HOST, "timestamp": at,
            "local_received": at, "clock": 0, **fields}


def beat(at: float, *, processed: int = 0, active: int = 0, freq: float = 2.0,
         kind: str = "heartbeat", host: str = HOST) -> dict[str, Any]:
    return {"type": f"worker-{kind}", "hostname": host, "timestamp": at, "local_received": at,
            "freq": freq, "processed": processed, "active": active}


# A task's life: received, started, then an end; "retried" runs it again (received, started).
ENDS = ("succeeded", "failed", "retried", "rejected", "revoked")
lifecycles = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d", "e"]),
              st.lists(st.sampled_from(ENDS), min_size=1, max_size=3),
              st.floats(0.0, 4000.0)),
    max_size=30,
)


def events_of(name: str, ends: list[str], runtime: float, start: float) -> list[dict[str, Any]]:
    task_id, at, out = str(uuid.uuid4()), start, []
    for end in ends:
        out.append(task_event("received", task_id, at, name=name))
        out.append(task_event("started", task_id, at + 1.0))
        extra = {"runtime": runtime} if end == "succeeded" else {}
        out.append(task_event(end, task_id, at + 1.0 + runtime, **extra))
        at += runtime + 10.0
        if end != "retried":
            break
    return out


@settings(max_examples=150, deadline=None)
@given(lifecycles)
def test_counts_and_histograms_equal_a_brute_force_count(plan: list[Any]) -> None:
    allowed, cap = ["a", "b"], 2
    t = tally(allowed, cap)
    every: list[dict[str, Any]] = []
    for i, (name, ends, runtime) in enumerate(plan):
        every += events_of(name, ends, runtime, start=i * 100_000.0)
    for event in every:
        t.on_event(event)

    names: dict[str, str] = {}
    for name, _, _ in plan:  # oracle: first-seen order over the allow-list, then "other"
        if name not in names:
            extra = sum(1 for v in names.values() if v not in allowed and v != OTHER)
            names[name] = name if name in allowed or extra < cap else OTHER
    expected: Counter[tuple[str, str]] = Counter()
    runs: Counter[str] = Counter()
    by_id: dict[str, str] = {}
    for event in every:
        if event["type"] == "task-received":
            by_id[event["uuid"]] = event["name"]
        label = names[by_id[event["uuid"]]]
        state = event["type"].removeprefix("task-")
        expected[(label, state)] += 1
        runs[label] += state in ("succeeded", "failed", "retried")

    families = t.task_families()
    got = samples(families, "customer_sync_celery_tasks_total")
    for label in {*allowed, *names.values()}:
        for state in TASK_STATES:
            assert got[(label, state)] == expected[(label, state)], (label, state)
    assert len({k[0] for k in got}) <= len(allowed) + cap + 1
    counts = samples(families, "customer_sync_celery_task_runtime_seconds_count")
    assert counts == {(label,): float(runs[label]) for label in {*allowed, *names.values()}}
    waits = samples(families, "customer_sync_celery_task_queue_wait_seconds_count")
    assert waits == {(label,): float(expected[(label, "started")])
                     for label in {*allowed, *names.values()}}
    assert samples(families, "customer_sync_celery_events_total") == {(): float(len(every))}


def test_runtime_buckets_and_sum_are_exact() -> None:
    t = tally(["imp"])
    runtimes = [0.05, 0.3, 7.0, 61.0, 1200.0, 3600.0, 5000.0]
    for i, runtime in enumerate(runtimes):
        events_ = events_of("imp", ["succeeded"], runtime, start=i * 10_000.0)
        for event in events_:
            t.on_event(event)
    family = samples(t.task_families(), "customer_sync_celery_task_runtime_seconds_bucket")
    for bound in BUCKETS:
        assert family[("imp", f"{bound:g}")] == sum(1 for r in runtimes if r <= bound), bound
    assert family[("imp", "+Inf")] == len(runtimes)
    total = samples(t.task_families(), "customer_sync_celery_task_runtime_seconds_sum")
    assert total[("imp",)] == sum(runtimes)


def test_failed_and_retried_runtime_is_end_minus_start_and_eta_tasks_have_no_wait() -> None:
    t = tally(["imp"])
    for event in [
        task_event("received", "t1", 100.0, name="imp"),
        task_event("started", "t1", 103.0),
        task_event("retried", "t1", 110.0),
        task_event("received", "t1", 110.5, name="imp", eta="2026-01-01T00:00:00"),
        task_event("started", "t1", 200.0),
        task_event("failed", "t1", 230.0),
    ]:
        t.on_event(event)
    families = t.task_families()
    assert samples(families, "customer_sync_celery_task_runtime_seconds_sum") == {("imp",): 37.0}
    assert samples(families, "customer_sync_celery_task_queue_wait_seconds_sum") == {("imp",): 3.0}
    assert samples(families, "customer_sync_celery_task_queue_wait_seconds_count") == {
        ("imp",): 1.0}
    received = samples(families, "customer_sync_celery_task_last_received_timestamp_seconds")
    assert received == {("imp",): 110.5}
    assert samples(families, "customer_sync_celery_task_last_succeeded_timestamp_seconds") == {}


def test_allow_list_is_zero_filled_and_a_nameless_task_is_unknown() -> None:
    t = tally(["a", "b"], cap=0)
    families = t.task_families()
    assert samples(families, "customer_sync_celery_tasks_total") == {
        (n, s): 0.0 for n in ("a", "b") for s in TASK_STATES}
    # Revoked before any worker received it: Celery sends task-revoked alone, without a name.
    t.on_event(task_event("revoked", "lost", 5.0))
    t.on_event(task_event("received", "x", 6.0, name="zzz"))  # cap 0: straight to "other"
    got = samples(t.task_families(), "customer_sync_celery_tasks_total")
    assert got[(UNKNOWN, "revoked")] == 1 and got[(OTHER, "received")] == 1
    assert promtool_problems(t.task_families()) == ""


def test_worker_is_up_until_twice_its_heartbeat_interval_after_the_last_beat() -> None:
    t = tally([])
    t.on_event(beat(1000.0, kind="online", freq=2.0))
    t.on_event(beat(1002.0, freq=2.0))
    for now, up in [(1002.0, 1.0), (1005.999, 1.0), (1006.0, 0.0), (1100.0, 0.0)]:
        assert samples(t.worker_families(now), "customer_sync_celery_worker_up") == {
            (HOST,): up}, now
    t.on_event(beat(1200.0, freq=5.0))  # the worker's own interval counts: 5 s -> 10 s
    assert samples(t.worker_families(1209.9), "customer_sync_celery_worker_up") == {(HOST,): 1.0}
    assert samples(t.worker_families(1210.0), "customer_sync_celery_worker_up") == {(HOST,): 0.0}


def test_offline_is_down_at_once_and_a_silent_worker_is_forgotten() -> None:
    t = tally([], forget_after=60.0)
    t.on_event(beat(10.0, kind="online", active=3))
    t.on_event(beat(11.0, active=3))
    families = t.worker_families(11.5)
    assert samples(families, "customer_sync_celery_worker_active_tasks") == {(HOST,): 3.0}
    t.on_event(beat(12.0, kind="offline"))
    families = t.worker_families(12.1)
    assert samples(families, "customer_sync_celery_worker_up") == {(HOST,): 0.0}
    assert samples(families, "customer_sync_celery_worker_active_tasks") == {(HOST,): 0.0}
    assert samples(families, "customer_sync_celery_workers") == {(): 1.0}
    assert samples(t.worker_families(72.1), "customer_sync_celery_workers") == {(): 0.0}
    assert samples(t.worker_families(72.1), "customer_sync_celery_worker_up") == {}


def test_task_events_off_when_heartbeats_show_work_but_no_task_event_came() -> None:
    off, on = tally([]), tally([])
    for i, processed in enumerate([0, 0, 2, 2]):
        off.on_event(beat(float(i * 2), processed=processed))
    assert off.silent_workers(6.5) == [HOST]
    assert samples(off.worker_families(6.5),
                   "customer_sync_celery_worker_task_events_enabled") == {(HOST,): 0.0}
    # The same work with its task events: on. The heartbeat may overtake the buffered events.
    on.on_event(beat(0.0, processed=0))
    on.on_event(beat(2.0, processed=2))
    on.on_event(task_event("received", "t", 2.1, name="x"))
    on.on_event(beat(4.0, processed=2))
    assert on.silent_workers(4.5) == []
    assert samples(on.worker_families(4.5),
                   "customer_sync_celery_worker_task_events_enabled") == {(HOST,): 1.0}
    # enable_events answered ok: on at once, and the earlier silent work no longer counts.
    off.on_events_enabled([HOST])
    off.on_event(beat(8.0, processed=2))
    assert off.silent_workers(8.5) == []
    undecided = tally([])
    for i in range(5):
        undecided.on_event(beat(float(i * 2), processed=0))
    assert samples(undecided.worker_families(9.0),
                   "customer_sync_celery_worker_task_events_enabled") == {}


def test_stats_replies_fill_pool_and_memory_and_vanish_without_a_reply() -> None:
    t = tally([])
    t.on_event(beat(1.0, kind="online"))
    t.on_event(beat(1.0, kind="online", host="celery@other"))
    t.on_stats({HOST: {"pool": {"processes": [11, 12, 13]}, "rusage": {"maxrss": 51200}},
                "celery@stranger": {"pool": {"processes": [1]}}})
    families = t.worker_families(2.0)
    assert samples(families, "customer_sync_celery_worker_pool_processes") == {(HOST,): 3.0}
    assert samples(families, "customer_sync_celery_worker_peak_resident_memory_bytes") == {
        (HOST,): 51200 * 1024.0}
    assert promtool_problems(families) == ""
    t.on_stats({})
    assert samples(t.worker_families(2.0), "customer_sync_celery_worker_pool_processes") == {}


def test_state_stays_bounded_by_the_task_lru() -> None:
    t = CeleryTally(["a"], 0, forget_after=60.0, max_tasks_in_memory=100)
    for i in itertools.islice(itertools.count(), 5000):
        t.on_event(task_event("received", f"id{i}", float(i), name="a", args="x" * 500))
    assert len(t.state.tasks) <= 100
    assert all(getattr(task, "args", None) is None for task in t.state.tasks.values())


def test_task_sent_by_a_client_names_the_task_and_makes_no_worker() -> None:
    t = tally(["imp"])
    sent = task_event("sent", "t1", 1.0, name="imp")
    sent["hostname"] = "gen42@web"  # the Django process that called apply_async
    t.on_event(sent)
    t.on_event(task_event("revoked", "t1", 2.0))  # revoked before a worker received it
    assert samples(t.task_families(), "customer_sync_celery_tasks_total")[("imp", "revoked")] == 1
    assert samples(t.worker_families(2.0), "customer_sync_celery_worker_up") == {(HOST,): 0.0}
