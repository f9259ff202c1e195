"""The peer's configuration, checked without running it: query-exporter is told to read the
floor's own statements, each column a metric or one of its labels."""

from __future__ import annotations

import re

from bench.scrape.common import PEER_INTERVAL_S
from bench.scrape.floor import FLOOR
from bench.scrape.peer import peer_config


def test_the_peer_is_configured_with_the_floors_own_statements() -> None:
    config = peer_config("postgresql+psycopg://qe@127.0.0.1/x")
    assert list(config["queries"]) == [q.name for q in FLOOR]
    assert len(FLOOR) == 6  # the floor: 6 statements per scrape
    for q in FLOOR:
        peer = config["queries"][q.name]
        assert peer["sql"] == q.sql and peer["interval"] == PEER_INTERVAL_S
        # query-exporter demands the result columns be exactly the metrics plus their labels.
        aliases = set(re.findall(r"\bAS (\w+)", q.sql))
        assert set(q.metrics) <= aliases, q.name
        for m in q.metrics:
            assert config["metrics"][m].get("labels", []) == list(q.labels)
