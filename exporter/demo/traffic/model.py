"""The traffic model: a seeded ``random.Random`` in, a stream of row operations out.

Pure: it never touches a database while generating (ids come from an :class:`IdSource` that
fetches ahead). Two lanes interleave as they do in the shop: the 1C import runs
(:class:`CustomerImporter`) take ``import_share`` of the draws, and up to
``max_side_activities`` side activities run beside them (sync-logger runs, resolver runs,
portal registrations and links, legacy identification), each a generator of operations.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from exporter.demo.traffic.identity import legacy_identify
from exporter.demo.traffic.ids import IdSource
from exporter.demo.traffic.importer import CustomerImporter
from exporter.demo.traffic.logger import SyncLogger
from exporter.demo.traffic.portal import Portal
from exporter.demo.traffic.resolver import ConflictResolver
from exporter.demo.traffic.rows import LogRow, Op
from exporter.demo.traffic.state import Counterparty, Customer, Mix, TrafficState


class TrafficModel(TrafficState):
    """Generates row operations. ``t`` (seconds, set by the driver) and ``outage`` steer it."""

    def __init__(self, rng: random.Random, ids: IdSource, mix: Mix | None = None) -> None:
        super().__init__(rng, ids, mix)
        importer = CustomerImporter(self)
        logger, portal = SyncLogger(self), Portal(self)
        self._importer = importer
        self._activities: dict[str, Callable[[], Iterator[Op]]] = {
            "logger_import": logger.run_import,
            "logger_export": logger.run_export,
            "identification": logger.run_identification,
            "validation": logger.run_validation,
            "resolver": ConflictResolver(self).run,
            "registration": portal.registration,
            "link": portal.link,
            "legacy": lambda: legacy_identify(self),
        }
        self._import_lane = importer.lane()
        self._side: list[Iterator[Op]] = []

    def take(self, n: int) -> list[Op]:
        """Operations holding exactly ``n`` log rows (plus the user/session/conflict ops)."""
        out: list[Op] = []
        logs = 0
        while logs < n:
            op = self.next_op()
            out.append(op)
            logs += isinstance(op, LogRow)
        return out

    def next_op(self) -> Op:
        if self.rng.random() < self.mix.import_share:
            try:
                op = next(self._import_lane)
            except Exception:
                self._import_lane = self._importer.lane()  # a generator that raised is finished
                raise
            if op is not None:
                return op
        return self._next_side()

    def _next_side(self) -> Op:
        while True:
            if not self._side or (
                len(self._side) < self.mix.max_side_activities and self.rng.random() < 0.05
            ):
                self._side.append(self._new_side_activity())
            activity = self.rng.choice(self._side)
            try:
                op = next(activity, None)
            except Exception:
                self._side.remove(activity)
                raise
            if op is None:
                self._side.remove(activity)
                continue
            return op

    def _new_side_activity(self) -> Iterator[Op]:
        """A side activity drawn by ``side_weights``, leaving out those with nothing to act on."""
        weights = dict(self.mix.side_weights)
        if not self.export_queue:
            weights.pop("logger_export", None)
        if not self.customers_1c:
            for name in ("logger_export", "resolver", "link"):
                weights.pop(name, None)
        if self.last_session_id is None:
            weights.pop("legacy", None)
        kind = self.draw.pick(list(weights), list(weights.values()))
        return self._activities[kind]()

    # -- restart on an existing database --

    def load(self, conn: psycopg.Connection[Any], limit: int = 20_000) -> None:
        """Continue from what an earlier run left in the database (a persistent --data-dir)."""
        rows = conn.execute(
            "SELECT id, email, tax_id, role, created_in_1c, onec_id, onec_guid, password <> '',"
            " needs_1c_export, is_active, company_name FROM users ORDER BY id DESC LIMIT %s",
            (limit,),
        ).fetchall()
        for uid, email, tax_id, role, in_1c, onec_id, guid, has_pw, queued, active, company in (
            reversed(rows)
        ):
            user = Customer(
                id=uid, email=email, tax_id=tax_id, role=role, created_in_1c=in_1c,
                onec_id=onec_id, onec_guid=guid, needs_export=queued, is_active=active,
                company_name=company,
            )
            if not in_1c:
                self.portal.append(user)
                if queued and active:
                    self.export_queue[uid] = user
                continue
            self.customers_1c.append(user)
            ctype = {10: "legal_entity", 12: "individual_entrepreneur"}.get(
                len(tax_id), "individual"
            )
            cp = Counterparty(
                number=uid, onec_id=onec_id or self.draw.guid(uid), onec_role="Покупатель",
                customer_type=ctype, name=company or email or str(uid), email=email or "",
                tax_id=tax_id, phone="", has_attributes=True, customer=user, linked=has_pw,
            )
            self.catalog.append(cp)
            self.by_customer[uid] = cp
            if guid is not None:
                self.guided.append(cp)
        last = conn.execute("SELECT max(id) FROM import_sessions").fetchone()
        self.last_session_id = last[0] if last else None
