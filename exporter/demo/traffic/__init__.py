"""A traffic simulator that writes FREESPORT customer-sync rows in the shapes of DATA.md §3.

Why it exists: the demo, the tests and the benchmark need a database that looks like production
(the 1C importer's ``created/updated/skipped/error`` rows with NULL durations, one correlation id
per row, ``session = str(import_sessions.id)``) and like the richer writers that exist in the
FREESPORT code but have no production caller (``CustomerSyncLogger`` runs with durations and one
correlation id per instance, ``CustomerConflictResolver`` conflicts, the legacy identity
resolver), so every metric of the exporter has something real to count.

Three layers, each its own modules:

* the model (:mod:`.model`, with one module per FREESPORT writer: :mod:`.importer`,
  :mod:`.portal`, :mod:`.logger`, :mod:`.resolver`, :mod:`.identity`) is pure: a seeded
  ``random.Random`` in, a stream of row operations (:mod:`.rows`) out;
* :func:`write_ops` (:mod:`.writer`) writes one batch of operations in one transaction;
* :class:`TrafficSimulator` (:mod:`.simulator`) runs the model in a thread at ``rate`` rows per
  second with 1C outages and error bursts; :func:`bulk_load` (:mod:`.history`) fills a past time
  span with millions of rows for the benchmark.
"""

from exporter.demo.traffic.history import bulk_load
from exporter.demo.traffic.ids import CountingIds, IdSource, SequenceIds
from exporter.demo.traffic.model import TrafficModel
from exporter.demo.traffic.rows import (
    STAMP,
    ConflictRow,
    LogRow,
    Op,
    SessionRow,
    SessionUpdate,
    UserRow,
    UserUpdate,
)
from exporter.demo.traffic.simulator import NO_OUTAGES, OutageSchedule, TrafficSimulator
from exporter.demo.traffic.state import Counterparty, Customer, Mix
from exporter.demo.traffic.writer import WriteStats, write_ops

__all__ = [
    "NO_OUTAGES",
    "STAMP",
    "ConflictRow",
    "Counterparty",
    "CountingIds",
    "Customer",
    "IdSource",
    "LogRow",
    "Mix",
    "Op",
    "OutageSchedule",
    "SequenceIds",
    "SessionRow",
    "SessionUpdate",
    "TrafficModel",
    "TrafficSimulator",
    "UserRow",
    "UserUpdate",
    "WriteStats",
    "bulk_load",
    "write_ops",
]
