"""A Celery worker stand-in: ``python -m exporter.demo.worker celery -A freesport worker ...``.

It really consumes the demo's Celery queue in Redis (the priority sub-queues too), works slower
while the 1C outage lasts (the demo sets ``demo:worker:slow``), and writes a worker log in
Celery's format. Kept apart so a real Celery worker can replace it without touching the rest.
Configured by the environment: ``DEMO_REDIS_URL``, ``DEMO_QUEUE_KEYS`` (a JSON list of the
Redis lists to pop, highest priority first as kombu does), ``DEMO_LOG``.
"""

from __future__ import annotations

import json
import os
import random
import time

import redis

from exporter.demo.processes import die_with_parent

SLOW_KEY = "demo:worker:slow"


def main() -> None:
    die_with_parent()
    client = redis.Redis.from_url(os.environ["DEMO_REDIS_URL"])
    keys = json.loads(os.environ["DEMO_QUEUE_KEYS"])
    with open(os.environ["DEMO_LOG"], "a", buffering=1, encoding="utf-8") as out:
        while True:
            item = client.brpop(keys, timeout=1)
            if item is None:
                continue
            headers = json.loads(item[1])["headers"]
            task = f"{headers['task']}[{headers['id']}]"
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            out.write(f"[{stamp},000: INFO/MainProcess] Task {task} received\n")
            slow = client.exists(SLOW_KEY)
            spent = random.uniform(2.0, 4.0) if slow else random.uniform(0.1, 0.6)
            time.sleep(spent)
            out.write(f"[{stamp},000: INFO/ForkPoolWorker-1] Task {task}"
                      f" succeeded in {spent:.3f}s: None\n")


if __name__ == "__main__":
    main()
