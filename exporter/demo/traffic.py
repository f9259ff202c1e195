"""A traffic simulator that writes FREESPORT customer-sync rows in the shapes of DATA.md §3.

Why it exists: the demo, the tests and the benchmark need a database that looks like production
(the 1C importer's ``created/updated/skipped/error`` rows with NULL durations, one correlation id
per row, ``session = str(import_sessions.id)``) and like the richer writers that exist in the
FREESPORT code but have no production caller (``CustomerSyncLogger`` runs with durations and one
correlation id per instance, ``CustomerConflictResolver`` conflicts, the legacy identity
resolver), so every metric of the exporter has something real to count.

Three layers:

* :class:`TrafficModel` is pure: a seeded ``random.Random`` in, a stream of row operations out
  (:class:`LogRow`, :class:`UserRow`, ...). Unique values (user ids, 1C GUIDs, e-mails) embed
  numbers drawn from the database's own sequences, so a restarted demo never collides.
* :func:`write_ops` writes one batch of operations in one transaction with ``COPY`` and
  ``executemany``; timestamps are the database's ``now()`` or, for history, given per row.
* :class:`TrafficSimulator` runs the model in a thread at ``rate`` sync-log rows per second, with
  a 1C outage every few minutes (callbacks switch the stand-in 1C server) and error bursts;
  :func:`bulk_load` fills a past time span with millions of rows for the benchmark.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import psycopg
import structlog
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

log = structlog.get_logger(__name__)


class _Stamp:
    """Placeholder for "the time this row is written", filled in by the writer."""

    def __repr__(self) -> str:
        return "STAMP"


STAMP: Any = _Stamp()

# --- value sets (DATA.md §1.2, §2, §3) ---------------------------------------------------------

PORTAL_ROLES = (
    "retail", "wholesale_level1", "wholesale_level2", "wholesale_level3", "wholesale_level4",
    "trainer", "federation_rep",
)
PORTAL_ROLE_WEIGHTS = (60, 12, 6, 3, 2, 10, 7)
B2B_ROLES = PORTAL_ROLES[1:]
IMPORTED_ROLE = "unregistered"
CUSTOMER_TYPES = ("legal_entity", "individual_entrepreneur", "individual")
ROLE_STATS_KEYS = (
    "roles_updated", "roles_updated_from_unregistered", "roles_updated_from_assigned",
    "roles_already_actual", "roles_skipped_unlinked_record", "roles_skipped_no_data",
    "roles_skipped_no_agreement", "roles_skipped_unknown_price_type", "roles_skipped_ambiguous",
)
ROLE_UPDATED = ("roles_updated_from_unregistered", "roles_updated_from_assigned")
SEARCH_METHODS = ("onec_id", "onec_guid", "tax_id", "email")
NOT_BUYER_ROLES = ("Поставщик", "Конкурент", "Прочее", "Перевозчик", "Поставщик, Комиссионер")
BUYER_ROLES = ("Покупатель", "Покупатель", "Покупатель", "покупатель ", "Покупатель, Поставщик")
PROCESSOR_ERRORS = (
    'duplicate key value violates unique constraint "users_email_key"\n'
    "DETAIL:  Key (email)=({email}) already exists.",
    "value too long for type character varying(12)",
    "could not serialize access due to concurrent update",
    "canceling statement due to statement timeout",
    "Company matching query does not exist.",
)
OUTAGE_ERRORS = (
    "HTTPConnectionPool(host='1c.freesport.local', port=80): Max retries exceeded with url: "
    "/base/hs/exchange/contragents (Caused by NewConnectionError: [Errno 111] Connection refused)",
    "HTTPConnectionPool(host='1c.freesport.local', port=80): Read timed out. (read timeout=30)",
    "503 Server Error: Service Unavailable for url: http://1c.freesport.local/base/hs/exchange",
)
NOTIFICATION_ERRORS = (
    "[Errno 111] Connection refused",
    "(451, b'4.7.0 Temporary server error. Please try again later')",
    "Connection unexpectedly closed",
    "timed out",
)
COMPANY_WORDS = (
    "Спорт", "Олимп", "Атлет", "Динамо", "Чемпион", "Старт", "Финиш", "Рекорд", "Арена", "Вектор",
)
LAST_NAMES = ("Иванов", "Петров", "Смирнов", "Кузнецов", "Попов", "Соколов", "Лебедев", "Козлов")
FIRST_NAMES = ("Алексей", "Мария", "Дмитрий", "Ольга", "Сергей", "Анна", "Игорь", "Елена")
EMAIL_DOMAINS = ("mail.ru", "yandex.ru", "gmail.com", "sport-club.ru", "bk.ru")
COUNTRIES = ("Россия", "Россия", "Россия", "Россия", "Беларусь", "Казахстан")


# --- operations --------------------------------------------------------------------------------


@dataclass(slots=True)
class LogRow:
    """One ``common_customersynclog`` row; ``STAMP`` values in ``details`` become the row time."""

    operation_type: str
    status: str
    correlation_id: uuid.UUID
    onec_id: str = ""
    error_message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    session: str = ""
    customer_id: int | None = None
    duration_ms: int | None = None


@dataclass(slots=True)
class UserRow:
    """One ``users`` row, with every NOT NULL column filled the way Django would."""

    id: int
    email: str | None
    role: str
    created_in_1c: bool
    password: str = ""
    first_name: str = ""
    last_name: str = ""
    phone: str = ""
    company_name: str = ""
    tax_id: str = ""
    is_active: bool = True
    is_verified: bool = False
    needs_1c_export: bool = False
    onec_id: str | None = None
    sync_status: str = "pending"
    verification_status: str = "unverified"
    country: str = "Россия"
    onec_price_type_id: str = ""
    synced: bool = False  # last_sync_at = the row time


@dataclass(slots=True)
class UserUpdate:
    """``UPDATE users SET ...``; ``STAMP`` values become the row time, as does updated_at."""

    id: int
    values: dict[str, Any]


@dataclass(slots=True)
class SessionRow:
    """An ``import_sessions`` row as the import view / command creates it."""

    id: int
    import_type: str = "customers"
    status: str = "started"
    celery_task_id: str | None = None


@dataclass(slots=True)
class SessionUpdate:
    """A status change of an import session; ``finished`` sets finished_at to the row time."""

    id: int
    status: str
    finished: bool = False
    report_details: dict[str, Any] | None = None
    error_message: str | None = None


@dataclass(slots=True)
class ConflictRow:
    """One ``common_syncconflict`` row as ``CustomerConflictResolver`` writes it."""

    conflict_type: str
    customer_id: int | None
    details: dict[str, Any]
    resolution_strategy: str = "onec_wins"
    is_resolved: bool = True


Op = LogRow | UserRow | UserUpdate | SessionRow | SessionUpdate | ConflictRow


class IdSource(Protocol):
    """Where user and import-session ids come from (the database sequences, or a counter)."""

    def next_user_id(self) -> int: ...

    def next_session_id(self) -> int: ...


class CountingIds:
    """Ids from plain counters: for a model that never meets a database."""

    def __init__(self, user: int = 1, session: int = 1) -> None:
        self._user = user
        self._session = session

    def next_user_id(self) -> int:
        self._user += 1
        return self._user - 1

    def next_session_id(self) -> int:
        self._session += 1
        return self._session - 1


class SequenceIds:
    """Ids drawn from the tables' identity sequences in chunks, as Django's INSERT would.

    ``reserve`` fetches ahead, so generating a batch needs no database round trip (and cannot
    fail half-way because the database went away).
    """

    def __init__(self, conn: Callable[[], psycopg.Connection[Any]], chunk: int = 256) -> None:
        self.conn = conn
        self.chunk = chunk
        self._pools: dict[str, list[int]] = {"users": [], "import_sessions": []}

    def reserve(self, users: int, sessions: int) -> None:
        for table, want in (("users", users), ("import_sessions", sessions)):
            missing = want - len(self._pools[table])
            if missing > 0:
                self._fetch(table, max(missing, self.chunk if table == "users" else 8))

    def _fetch(self, table: str, count: int) -> None:
        rows = self.conn().execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            (table, count),
        ).fetchall()
        # Popped from the end: keep the smallest id last so ids are used in ascending order.
        self._pools[table] = sorted((int(r[0]) for r in rows), reverse=True) + self._pools[table]

    def _next(self, table: str) -> int:
        if not self._pools[table]:
            self._fetch(table, self.chunk if table == "users" else 8)
        return self._pools[table].pop()

    def next_user_id(self) -> int:
        return self._next("users")

    def next_session_id(self) -> int:
        return self._next("import_sessions")


# --- the model ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Customer:
    """What the model remembers of a ``users`` row it wrote (or found at start-up)."""

    id: int
    email: str | None
    tax_id: str
    role: str
    created_in_1c: bool
    first_name: str = ""
    last_name: str = ""
    phone: str = ""
    company_name: str = ""
    onec_id: str | None = None
    onec_guid: uuid.UUID | None = None
    verification_status: str = "unverified"
    needs_export: bool = False
    is_active: bool = True


@dataclass(slots=True)
class Counterparty:
    """A counterparty of the simulated 1C catalog (contragents*.xml)."""

    number: int  # reserved users.id; also makes the GUID and e-mail unique
    onec_id: str
    onec_role: str
    customer_type: str
    name: str
    email: str  # '' = none, may be malformed
    tax_id: str
    phone: str
    has_attributes: bool
    customer: Customer | None = None
    linked: bool = False  # a manager linked it to a portal account: roles come from 1C


@dataclass
class Mix:
    """Knobs of the traffic: shares, error rates, run sizes. Defaults suit the live demo."""

    import_share: float = 0.65  # share of log rows from the production 1C importer
    import_size: tuple[int, int] = (30, 120)  # counterparties per import run
    import_gap_seconds: float = 8.0  # pause between import runs
    new_counterparties: tuple[int, int] = (1, 4)  # added to the 1C catalog before each run
    initial_catalog: int = 60
    error_rate: float = 0.02
    burst_error_rate: float = 0.6
    burst_every: tuple[float, float] = (120.0, 300.0)
    burst_length: tuple[float, float] = (15.0, 30.0)
    max_side_activities: int = 2
    side_weights: dict[str, float] = field(
        default_factory=lambda: {
            "logger_import": 1.0, "logger_export": 1.0, "identification": 2.0,
            "validation": 0.7, "resolver": 1.5, "registration": 2.5, "link": 0.3, "legacy": 0.3,
        }
    )


class TrafficModel:
    """Generates row operations. ``t`` (seconds, set by the driver) and ``outage`` steer it."""

    def __init__(self, rng: random.Random, ids: IdSource, mix: Mix | None = None) -> None:
        self.rng = rng
        self.ids = ids
        self.mix = mix or Mix()
        self.t = 0.0
        self.outage = False
        self.catalog: list[Counterparty] = []
        self.portal: list[Customer] = []
        self.export_queue: dict[int, Customer] = {}  # active users with needs_1c_export
        self.customers_1c: list[Customer] = []
        self.last_session_id: int | None = None
        self._burst_until = -1.0
        self._next_burst = self.rng.uniform(*self.mix.burst_every)
        self._import_lane = self._imports()
        self._side: list[Iterator[Op]] = []
        self._tax_ids: list[str] = []
        self._by_customer: dict[int, Counterparty] = {}  # 1C customers' counterparties
        self._guided: list[Counterparty] = []  # ... whose customer got a onec_guid

    # -- random helpers --

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def _unique_uuid(self, number: int) -> uuid.UUID:
        """A random-looking uuid whose low 48 bits are a sequence number, so it never repeats."""
        bits = (self.rng.getrandbits(128) & ~((1 << 48) - 1)) | (number & ((1 << 48) - 1))
        return uuid.UUID(int=bits, version=4)

    def _guid(self, number: int) -> str:
        """A 1C-style GUID ``xxxxxxxx-xxxx-11xx-xxxx-<node>``; the node makes it unique."""
        r = self.rng.getrandbits(64)
        return (
            f"{r >> 32:08x}-{(r >> 16) & 0xFFFF:04x}-11{(r >> 8) & 0xFF:02x}-"
            f"{0x8000 | (r & 0x3FFF):04x}-{number & 0xFFFFFFFFFFFF:012x}"
        )

    def _ms(self, median: float, sigma: float = 0.7) -> int:
        return max(0, int(self.rng.lognormvariate(0, sigma) * median))

    def _pick(self, values: Sequence[str], weights: Sequence[float] | None = None) -> str:
        return self.rng.choices(values, weights)[0]

    def _phone(self) -> str:
        return f"+79{self.rng.randrange(10**9):09d}"

    def _tax_id(self, customer_type: str) -> str:
        if customer_type == "individual":
            return ""
        if self._tax_ids and self.rng.random() < 0.05:  # INN is not unique in production
            return self.rng.choice(self._tax_ids)
        digits = 10 if customer_type == "legal_entity" else 12
        value = "".join(str(self.rng.randrange(10)) for _ in range(digits))
        self._tax_ids.append(value)
        return value

    def _password(self) -> str:
        salt = "".join(self.rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=22))
        digest = "".join(self.rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh0123456789+/", k=43))
        return f"pbkdf2_sha256$870000${salt}${digest}="

    def _error_rate(self) -> float:
        if self.t >= self._next_burst:
            self._burst_until = self.t + self.rng.uniform(*self.mix.burst_length)
            self._next_burst = self._burst_until + self.rng.uniform(*self.mix.burst_every)
        return self.mix.burst_error_rate if self.t < self._burst_until else self.mix.error_rate

    @property
    def in_burst(self) -> bool:
        return self.t < self._burst_until

    # -- the stream --

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
                self._import_lane = self._imports()  # a generator that raised is finished
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
        weights = dict(self.mix.side_weights)
        if not self.export_queue:
            weights.pop("logger_export", None)
        if not self.customers_1c:
            for name in ("logger_export", "resolver", "link"):
                weights.pop(name, None)
        if self.last_session_id is None:
            weights.pop("legacy", None)
        kind = self._pick(list(weights), list(weights.values()))
        return {
            "logger_import": self._logger_import,
            "logger_export": self._logger_export,
            "identification": self._identification,
            "validation": self._validation,
            "resolver": self._resolver,
            "registration": self._registration,
            "link": self._link,
            "legacy": self._legacy_identify,
        }[kind]()

    # -- the 1C catalog --

    def _new_counterparty(self) -> Counterparty:
        number = self.ids.next_user_id()
        ctype = self._pick(CUSTOMER_TYPES, (55, 30, 15))
        last, first = self.rng.choice(LAST_NAMES), self.rng.choice(FIRST_NAMES)
        if ctype == "legal_entity":
            name = f'ООО "{self.rng.choice(COMPANY_WORDS)}-{self.rng.choice(COMPANY_WORDS)}"'
        elif ctype == "individual_entrepreneur":
            name = f"ИП {last} {first}"
        else:
            name = f"{last} {first}"
        r = self.rng.random()
        if r < 0.25:
            email = ""
        elif r < 0.29:
            email = f"{last.lower()}{number}@@{self.rng.choice(EMAIL_DOMAINS)}"  # 1C typo
        else:
            email = f"client{number}@{self.rng.choice(EMAIL_DOMAINS)}"
        is_buyer = self.rng.random() >= 0.08
        return Counterparty(
            number=number,
            onec_id=self._guid(number),
            onec_role=self.rng.choice(BUYER_ROLES if is_buyer else NOT_BUYER_ROLES),
            customer_type=ctype,
            name=name,
            email=email,
            tax_id=self._tax_id(ctype),
            phone=f"8-9{self.rng.randrange(10**9):09d}",
            has_attributes=self.rng.random() < 0.9,
        )

    def _run_counterparties(self) -> list[Counterparty]:
        if not self.catalog:
            self.catalog.extend(self._new_counterparty() for _ in range(self.mix.initial_catalog))
        else:
            added = self.rng.randint(*self.mix.new_counterparties)
            self.catalog.extend(self._new_counterparty() for _ in range(added))
        size = min(len(self.catalog), self.rng.randint(*self.mix.import_size))
        # The newest counterparties are always in the export; the rest is a sample.
        fresh = [c for c in self.catalog[-20:] if c.customer is None and c.onec_role]
        rest = self.rng.sample(self.catalog, size)
        seen: set[int] = set()
        out = []
        for c in fresh + rest:
            if c.number not in seen:
                seen.add(c.number)
                out.append(c)
        return out[: max(size, len(fresh))]

    # -- (a) CustomerDataProcessor, the production writer --

    def _imports(self) -> Iterator[Op | None]:
        next_start = self.t
        while True:
            while self.t < next_start or (self.outage and self.rng.random() < 0.97):
                yield None  # idle between runs; during an outage a retry is rare
            yield from self._import_run()
            next_start = self.t + self.mix.import_gap_seconds

    def _import_run(self) -> Iterator[Op]:
        sid = self.ids.next_session_id()
        self.last_session_id = sid
        session = str(sid)
        yield SessionRow(sid, celery_task_id=str(self.uuid4()))
        stats: dict[str, Any] = {
            "total": 0, "created": 0, "updated": 0, "skipped": 0, "errors": 0,
            "attributes_block_present": 0, "attributes_block_missing": 0,
            **dict.fromkeys(ROLE_STATS_KEYS, 0),
        }
        for i, cp in enumerate(self._run_counterparties()):
            if self.outage:
                yield from self._fail_run(sid, session, cp)
                return
            yield from self._process(cp, session, stats)
            if i == 0:
                yield SessionUpdate(sid, "in_progress")
        stats["roles_updated"] = (
            stats["roles_updated_from_unregistered"] + stats["roles_updated_from_assigned"]
        )
        stats["attributes_block_anomaly"] = (
            stats["total"] > 0 and stats["attributes_block_present"] == 0
        )
        yield SessionUpdate(sid, "completed", finished=True, report_details=stats)

    def _fail_run(self, sid: int, session: str, cp: Counterparty) -> Iterator[Op]:
        message = self.rng.choice(OUTAGE_ERRORS)
        for party in [cp, *self.rng.sample(self.catalog, min(len(self.catalog), 5))][
            : self.rng.randint(2, 6)
        ]:
            yield self._processor_row(party.onec_id, session, "error", "failed", error=message)
        yield SessionUpdate(sid, "failed", finished=True, error_message=message)

    def _processor_row(
        self, onec_id: str, session: str, op: str, status: str, *,
        error: str = "", details: dict[str, Any] | None = None, customer: int | None = None,
    ) -> LogRow:
        """``_log_operation``: a NEW correlation id per row, no duration."""
        return LogRow(
            op, status, self.uuid4(), onec_id=onec_id, error_message=error,
            details=details or {}, session=session, customer_id=customer,
        )

    def _process(self, cp: Counterparty, session: str, stats: dict[str, Any]) -> Iterator[Op]:
        stats["total"] += 1
        stats["attributes_block_present" if cp.has_attributes else "attributes_block_missing"] += 1
        if "покупатель" not in {p.strip().casefold() for p in cp.onec_role.split(",")}:
            stats["skipped"] += 1
            details: dict[str, Any] = {"reason": "not_buyer", "role": cp.onec_role}
            yield self._processor_row(cp.onec_id, session, "skipped", "success", details=details)
            return
        if self.rng.random() < self._error_rate():
            stats["errors"] += 1
            error = self.rng.choice(PROCESSOR_ERRORS).format(email=cp.email or "-")
            yield self._processor_row(cp.onec_id, session, "error", "failed", error=error)
            return
        if "@@" in cp.email:
            stats["errors"] += 1
            error = f"Невалидный формат email: {cp.email}"
            yield self._processor_row(cp.onec_id, session, "error", "failed", error=error)
            if self.rng.random() < 0.3:  # a manager fixes the card in 1C
                cp.email = cp.email.replace("@@", "@")
            return
        if cp.customer is None:
            stats["created"] += 1
            user = yield from self._create_1c_customer(cp)
            details = {
                "role": IMPORTED_ROLE,
                "has_email": bool(cp.email),
                "customer_type": cp.customer_type,
            }
            yield self._processor_row(
                cp.onec_id, session, "created", "success", details=details, customer=user.id
            )
            if not cp.email:
                details = {"notes": "Клиент создан без email адреса"}
                yield self._processor_row(
                    cp.onec_id, session, "created", "warning", details=details, customer=user.id
                )
            return
        user = cp.customer
        outcome = self._role_outcome(cp)
        stats["updated"] += 1
        stats[outcome] += 1
        if outcome in ROLE_UPDATED:
            user.role = self._pick(B2B_ROLES, (5, 3, 2, 1, 2, 1))
            yield UserUpdate(user.id, {"role": user.role, "last_sync_at": STAMP})
        details = {
            "role": user.role,
            "role_outcome": outcome,
            "role_preserved": outcome not in ROLE_UPDATED,
        }
        yield self._processor_row(
            cp.onec_id, session, "updated", "success", details=details, customer=user.id
        )

    def _role_outcome(self, cp: Counterparty) -> str:
        assert cp.customer is not None
        if not cp.linked:
            return "roles_skipped_unlinked_record"
        if cp.customer.role == IMPORTED_ROLE:
            return "roles_updated_from_unregistered"
        return self._pick(
            (
                "roles_already_actual", "roles_updated_from_assigned", "roles_skipped_no_data",
                "roles_skipped_no_agreement", "roles_skipped_unknown_price_type",
                "roles_skipped_ambiguous",
            ),
            (70, 6, 8, 8, 5, 3),
        )

    def _create_1c_customer(self, cp: Counterparty) -> Generator[Op, None, Customer]:
        """``_create_customer``: password '', role unregistered, email NULL when absent."""
        parts = cp.name.split()
        last, first = (parts[0], " ".join(parts[1:])) if len(parts) >= 2 else (cp.name, "")
        if cp.customer_type != "individual":
            last, first = "", ""
        user = Customer(
            id=cp.number, email=cp.email or None, tax_id=cp.tax_id, role=IMPORTED_ROLE,
            created_in_1c=True, first_name=first, last_name=last, phone=f"+7{cp.phone[2:]}",
            company_name=cp.name if cp.customer_type != "individual" else "",
            onec_id=cp.onec_id,
        )
        cp.customer = user
        self.customers_1c.append(user)
        self._by_customer[user.id] = cp
        yield UserRow(
            id=user.id, email=user.email, role=IMPORTED_ROLE, created_in_1c=True, password="",
            first_name=first, last_name=last, phone=user.phone, company_name=user.company_name,
            tax_id=cp.tax_id, onec_id=cp.onec_id, sync_status="synced", synced=True,
            onec_price_type_id=self._guid(0) if cp.has_attributes and self.rng.random() < 0.1
            else "",
        )
        return user

    # -- (b) portal registrations (no log row: registration writes none) --

    def _registration(self) -> Iterator[Op]:
        uid = self.ids.next_user_id()
        role = self._pick(PORTAL_ROLES, PORTAL_ROLE_WEIGHTS)
        b2b = role != "retail"
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        ctype = "legal_entity" if b2b else "individual"
        user = Customer(
            id=uid, email=f"user{uid}@{self.rng.choice(EMAIL_DOMAINS)}",
            tax_id=self._tax_id(ctype), role=role, created_in_1c=False,
            first_name=first, last_name=last, phone=self._phone(),
            company_name=f'ООО "{self.rng.choice(COMPANY_WORDS)}"' if b2b else "",
            needs_export=self.rng.random() < (0.7 if b2b else 0.2),
            is_active=self.rng.random() < 0.95,
            verification_status=self._pick(("pending", "unverified"), (3, 1)) if b2b
            else "verified",
        )
        self.portal.append(user)
        if user.needs_export and user.is_active:
            self.export_queue[uid] = user
        yield UserRow(
            id=uid, email=user.email, role=role, created_in_1c=False, password=self._password(),
            first_name=first, last_name=last, phone=user.phone,
            company_name=user.company_name, tax_id=user.tax_id, is_active=user.is_active,
            is_verified=user.verification_status == "verified",
            needs_1c_export=user.needs_export, verification_status=user.verification_status,
            country=self.rng.choice(COUNTRIES),
        )

    def _link(self) -> Iterator[Op]:
        """A manager links a 1C record to a portal account (link_1c_customer): no log row."""
        candidates = [c for c in self.catalog[-500:] if c.customer is not None and not c.linked]
        if not candidates:
            return
        cp = self.rng.choice(candidates)
        cp.linked = True
        assert cp.customer is not None
        cp.customer.verification_status = "verified"
        yield UserUpdate(
            cp.customer.id,
            {"password": self._password(), "verification_status": "verified", "is_verified": True},
        )

    # -- (c) CustomerSyncLogger: one correlation id per instance, durations set --

    def _logger_row(
        self, corr: uuid.UUID, op: str, status: str, duration: int, *, onec_id: str = "",
        customer: int | None = None, details: dict[str, Any], error: str = "",
    ) -> LogRow:
        return LogRow(
            op, status, corr, onec_id=onec_id, error_message=error, details=details,
            session="", customer_id=customer, duration_ms=duration,
        )

    def _identify_row(self, corr: uuid.UUID, cp: Counterparty | None) -> LogRow:
        """``log_customer_identification``: search_method/found; not found is status skipped."""
        user = cp.customer if cp is not None else None
        options = ["onec_id", "tax_id", "email"]
        if user is not None and user.onec_guid is not None:
            options.append("onec_guid")
        method: str | None = None
        if user is not None and self.rng.random() < 0.85:
            method = self._pick(options, (6, 2, 2, 4)[: len(options)])
            if (method == "tax_id" and not user.tax_id) or (method == "email" and not user.email):
                method = "onec_id"
        value: str | None
        normalized: str | None
        if method == "onec_id" and cp is not None:
            value = normalized = cp.onec_id
        elif method == "onec_guid" and user is not None:
            value = normalized = str(user.onec_guid)
        elif method == "tax_id" and user is not None:
            normalized = user.tax_id
            value = f"{normalized[:4]} {normalized[4:]}"
        elif method == "email" and user is not None and user.email:
            normalized = user.email
            value = f" {user.email.upper()} "
        else:
            method, value, normalized, user = None, None, None, None
        found = user is not None
        details = {
            "search_method": method,
            "search_value": value,
            "normalized_value": normalized,
            "found": found,
            "customer_id": user.id if user else None,
        }
        return self._logger_row(
            corr, "customer_identification", "success" if found else "skipped", self._ms(8),
            onec_id=cp.onec_id if cp else "", customer=user.id if user else None,
            details=details,
        )

    def _batch_row(
        self, corr: uuid.UUID, name: str, ok: int, failed: int, duration: int
    ) -> LogRow:
        total = ok + failed
        status = "success" if failed == 0 else ("error" if ok == 0 else "warning")
        details = {
            "operation_name": name,
            "total_count": total,
            "success_count": ok,
            "error_count": failed,
            "success_rate": round(ok / total * 100, 2) if total > 0 else 0,
            "timestamp": STAMP,
        }
        error = f"{failed} ошибок из {total}" if failed > 0 else ""
        return self._logger_row(
            corr, "batch_operation", status, duration, details=details, error=error
        )

    def _validation_row(self, corr: uuid.UUID, cp: Counterparty) -> tuple[LogRow, bool]:
        errors: list[str] = []
        warnings: list[str] = []
        if "@@" in cp.email:
            errors.append(f"Невалидный формат email: {cp.email}")
        if not cp.email:
            warnings.append("Отсутствует email")
        if cp.customer_type != "individual" and self.rng.random() < 0.05:
            errors.append(f"Некорректный ИНН: {cp.tax_id[:5]}")
        valid = not errors
        details = {
            "validation_timestamp": STAMP,
            "customer_email": cp.email,
            "is_valid": valid,
            "errors": errors,
            "warnings": warnings,
            "validated_fields": ["email", "tax_id", "phone", "company_name"],
        }
        row = self._logger_row(
            corr, "data_validation", "success" if valid else "error", self._ms(3),
            onec_id=cp.onec_id, details=details, error="; ".join(errors),
        )
        return row, valid

    def _sample_catalog(self, k: int) -> list[Counterparty]:
        if not self.catalog:
            self.catalog.extend(self._new_counterparty() for _ in range(self.mix.initial_catalog))
        pool = self.catalog[-2000:]
        return self.rng.sample(pool, min(k, len(pool)))

    def _logger_import(self) -> Iterator[Op]:
        """A logger run importing a few counterparties: validate, identify, import, sync."""
        corr = self.uuid4()
        ok = failed = total_ms = 0
        for cp in self._sample_catalog(self.rng.randint(3, 10)):
            if self.rng.random() < 0.5:
                row, valid = self._validation_row(corr, cp)
                total_ms += row.duration_ms or 0
                yield row
                if not valid:
                    failed += 1
                    continue
            row = self._identify_row(corr, cp)
            total_ms += row.duration_ms or 0
            yield row
            success = not self.outage and self.rng.random() >= self._error_rate()
            created = False
            if success and cp.customer is None:
                created = True
                yield from self._create_1c_customer(cp)
            user = cp.customer
            data = {"id": cp.onec_id, "customer_type": cp.customer_type, "name": cp.name,
                    "email": cp.email, "tax_id": cp.tax_id, "phone": cp.phone}
            details: dict[str, Any] = {
                "source": "1c_export",
                "import_timestamp": STAMP,
                "onec_customer_id": cp.onec_id,
                "customer_type": cp.customer_type,
                "data_fields": list(data),
            }
            if success and user is not None:
                details.update(
                    {"platform_customer_id": user.id, "assigned_role": user.role,
                     "created_new": created}
                )
            duration = self._ms(120, 0.8) if not self.outage else self._ms(8000, 0.4)
            total_ms += duration
            error = "" if success else self.rng.choice(OUTAGE_ERRORS if self.outage
                                                       else PROCESSOR_ERRORS[1:])
            yield self._logger_row(
                corr, "import_from_1c", "success" if success else "error", duration,
                onec_id=cp.onec_id, customer=user.id if success and user else None,
                details=details, error=error,
            )
            if not success or user is None:
                failed += 1
                continue
            ok += 1
            if not created and self.rng.random() < 0.15:
                total_ms += yield from self._logger_conflict(corr, user, "data_import")
            if self.rng.random() < 0.5:
                total_ms += yield from self._sync_changes(corr, user)
        yield self._batch_row(corr, "import_customers_from_1c", ok, failed, total_ms + 40)

    def _logger_conflict(
        self, corr: uuid.UUID, user: Customer, source: str
    ) -> Generator[Op, None, int]:
        """``log_conflict_resolution`` as a caller would wire it (email_sent may be true)."""
        fields = self.rng.sample(["first_name", "last_name", "phone", "company_name"], 2)
        success = self.rng.random() >= 0.05
        changes = {f: {"old": "…", "new": "…"} for f in fields} if source == "data_import" else {}
        details = {
            "conflict_source": source,
            "resolution_strategy": "onec_wins",
            "conflicting_fields": fields,
            "changes_made": changes,
            "action": (
                ("data_updated" if source == "data_import" else "verified_client")
                if success else None
            ),
            "email_sent": success and self.rng.random() < 0.7,
            "sync_conflict_id": None,
        }
        duration = self._ms(60)
        yield self._logger_row(
            corr, "conflict_resolution", "success" if success else "error", duration,
            onec_id=user.onec_id or "", customer=user.id, details=details,
            error="" if success else "could not serialize access due to concurrent update",
        )
        return duration

    def _sync_changes(self, corr: uuid.UUID, user: Customer) -> Generator[Op, None, int]:
        success = self.rng.random() >= 0.03
        field_name = self.rng.choice(["phone", "company_name", "tax_id"])
        details = {
            "changes": {field_name: {"old": "…", "new": "…"}},
            "timestamp": STAMP,
            "customer_id": user.id,
        }
        duration = self._ms(25)
        yield self._logger_row(
            corr, "sync_changes", "success" if success else "error", duration,
            onec_id=user.onec_id or "", customer=user.id, details=details,
            error="" if success else "canceling statement due to statement timeout",
        )
        return duration

    def _logger_export(self) -> Iterator[Op]:
        """A logger run exporting queued portal customers to 1C; a success dequeues them."""
        corr = self.uuid4()
        queue = list(itertools.islice(self.export_queue.values(), self.rng.randint(1, 6)))
        ok = failed = total_ms = 0
        for user in queue:
            fields = ["email", "first_name", "last_name", "phone", "company_name", "tax_id"]
            details: dict[str, Any] = {
                "destination": "1c_api",
                "export_timestamp": STAMP,
                "platform_customer_id": user.id,
                "customer_role": user.role,
                "export_format": "json",
                "exported_fields": fields,
            }
            success = not self.outage and self.rng.random() >= 0.05
            if success:
                guid = self._guid(user.id)
                details.update(
                    {"assigned_1c_id": guid, "response_data": {"status": "created", "id": guid}}
                )
                duration = self._ms(350, 0.6)
                user.needs_export = False
                self.export_queue.pop(user.id, None)
                user.onec_id = guid
                yield UserUpdate(
                    user.id,
                    {"needs_1c_export": False, "onec_id": guid, "sync_status": "synced",
                     "last_sync_at": STAMP},
                )
                ok += 1
                error = ""
            else:
                duration = self._ms(12000, 0.4) if self.outage else self._ms(900)
                failed += 1
                error = (
                    self.rng.choice(OUTAGE_ERRORS) if self.outage
                    else "500 Server Error: Internal Server Error for url: "
                    "http://1c.freesport.local/base/hs/exchange/customers"
                )
            total_ms += duration
            yield self._logger_row(
                corr, "export_to_1c", "success" if success else "error", duration,
                onec_id=user.onec_id or "", customer=user.id, details=details, error=error,
            )
            if success and self.rng.random() < 0.6:
                total_ms += yield from self._sync_changes(corr, user)
        yield self._batch_row(corr, "export_customers_to_1c", ok, failed, total_ms + 25)

    def _identification(self) -> Iterator[Op]:
        """A registration check: one logger instance, 1-3 identification attempts."""
        corr = self.uuid4()
        for _ in range(self.rng.randint(1, 3)):
            known = bool(self.catalog) and self.rng.random() < 0.7
            cp = self.rng.choice(self.catalog) if known else None
            if known and self._guided and self.rng.random() < 0.2:
                cp = self.rng.choice(self._guided)  # a customer the resolver gave a GUID
            row = self._identify_row(corr, cp)
            yield row
            if cp is not None and cp.customer is not None and row.status == "success" and (
                self.rng.random() < 0.2
            ):  # a 1C customer registering on the portal
                yield from self._logger_conflict(corr, cp.customer, "portal_registration")

    def _validation(self) -> Iterator[Op]:
        corr = self.uuid4()
        ok = failed = total_ms = 0
        for cp in self._sample_catalog(self.rng.randint(3, 8)):
            row, valid = self._validation_row(corr, cp)
            total_ms += row.duration_ms or 0
            ok, failed = (ok + 1, failed) if valid else (ok, failed + 1)
            yield row
        yield self._batch_row(corr, "validate_customers", ok, failed, total_ms + 5)

    # -- (d) CustomerConflictResolver --

    def _resolver(self) -> Iterator[Op]:
        """SyncConflict + one conflict_resolution/success row (no email_sent, no duration)."""
        portal = [c for c in self.portal[-500:] if c.is_active]
        source = "data_import" if self.rng.random() < 0.5 else "portal_registration"
        if source == "data_import" and portal and self.rng.random() < 0.5:
            user = self.rng.choice(portal)  # 1C data meets an existing portal account
        else:
            user = self.rng.choice(self.customers_1c[-2000:])
        fields = self.rng.sample(["first_name", "last_name", "email", "phone", "company_name"],
                                 self.rng.randint(0, 3))
        platform_data = {
            "id": user.id, "email": user.email or "", "first_name": user.first_name,
            "last_name": user.last_name, "phone": user.phone, "company_name": user.company_name,
            "tax_id": user.tax_id, "onec_id": user.onec_id,
            "onec_guid": str(user.onec_guid) if user.onec_guid else None,
            "verification_status": user.verification_status,
            "created_in_1c": user.created_in_1c, "last_sync_from_1c": None,
        }
        onec_data: dict[str, Any] = {"tax_id": user.tax_id, "email": user.email}
        if source == "data_import":
            if user.onec_guid is None:
                user.onec_guid = self._unique_uuid(user.id)
                if user.id in self._by_customer:
                    self._guided.append(self._by_customer[user.id])
            onec_data["onec_guid"] = str(user.onec_guid)
            yield UserUpdate(user.id, {"onec_guid": user.onec_guid, "last_sync_from_1c": STAMP})
        else:
            user.verification_status = "verified"
            yield UserUpdate(user.id, {"verification_status": "verified", "is_verified": True})
        yield ConflictRow(
            "portal_registration_blocked" if source == "portal_registration" else "customer_data",
            user.id,
            {
                "source": source, "resolved_at": STAMP, "fields_updated": len(fields),
                "platform_data": platform_data, "onec_data": onec_data,
                "conflicting_fields": fields, "resolved_by": "CustomerConflictResolver",
            },
        )
        yield LogRow(
            "conflict_resolution", "success", self.uuid4(), onec_id=user.onec_id or "",
            details={"conflict_source": source, "resolution_strategy": "onec_wins",
                     "conflicting_fields": fields},
            customer_id=user.id,
        )
        if self.rng.random() < 0.25:  # the e-mail after commit failed
            message = self.rng.choice(NOTIFICATION_ERRORS)
            yield LogRow(
                "notification_failed", "warning", self.uuid4(), onec_id=user.onec_id or "",
                error_message=message, details={"error": message}, customer_id=user.id,
            )

    # -- (e) the legacy CustomerIdentityResolver (with a correlation id: the DB needs one) --

    def _legacy_identify(self) -> Iterator[Op]:
        cp = self.rng.choice(self.catalog) if self.catalog else None
        user = cp.customer if cp is not None and self.rng.random() < 0.7 else None
        method = "not_found"
        if user is not None:
            method = "onec_id" if user.onec_id else ("tax_id" if user.tax_id else "email")
        yield LogRow(
            "identify_customer", "success" if user else "not_found", self.uuid4(),
            onec_id=cp.onec_id if cp else "",
            details={
                "identification_method": method,
                "onec_guid": str(user.onec_guid) if user and user.onec_guid else None,
                "tax_id": cp.tax_id if cp else None, "email": cp.email if cp else None,
            },
            session=str(self.last_session_id), customer_id=user.id if user else None,
        )

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
                number=uid, onec_id=onec_id or self._guid(uid), onec_role="Покупатель",
                customer_type=ctype, name=company or email or str(uid), email=email or "",
                tax_id=tax_id, phone="", has_attributes=True, customer=user, linked=has_pw,
            )
            self.catalog.append(cp)
            self._by_customer[uid] = cp
            if guid is not None:
                self._guided.append(cp)
        last = conn.execute("SELECT max(id) FROM import_sessions").fetchone()
        self.last_session_id = last[0] if last else None


# --- writing -----------------------------------------------------------------------------------

_USER_COLUMNS = (
    "id", "password", "last_login", "is_superuser", "first_name", "last_name", "is_staff",
    "is_active", "date_joined", "email", "role", "phone", "company_name", "tax_id", "is_verified",
    "created_at", "updated_at", "created_in_1c", "last_sync_at", "needs_1c_export", "onec_id",
    "sync_error_message", "sync_status", "onec_guid", "last_sync_from_1c", "verification_status",
    "customer_code", "country", "onec_price_type_id", "responsible_manager_id",
    "responsible_manager_manual",
)
_SESSION_COLUMNS = (
    "id", "import_type", "status", "started_at", "finished_at", "report_details", "error_message",
    "celery_task_id", "created_at", "report", "updated_at", "session_key",
)
_CONFLICT_COLUMNS = (
    "conflict_type", "resolution_strategy", "is_resolved", "resolved_at", "created_at",
    "customer_id", "details", "updated_at",
)
_LOG_COLUMNS = (
    "onec_id", "operation_type", "status", "error_message", "details", "created_at", "session",
    "correlation_id", "customer_id", "duration_ms", "updated_at", "ip_address", "user_agent",
)


def _stamped(values: dict[str, Any], ts: datetime) -> dict[str, Any]:
    return {k: (ts.isoformat() if v is STAMP else v) for k, v in values.items()}


def _resolve(value: Any, ts: datetime) -> Any:
    return ts if value is STAMP else value


@dataclass
class WriteStats:
    """What one batch wrote, per table."""

    log_rows: int = 0
    users: int = 0
    user_updates: int = 0
    sessions: int = 0
    session_updates: int = 0
    conflicts: int = 0
    log_by_type: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, other: WriteStats) -> None:
        for name in ("log_rows", "users", "user_updates", "sessions", "session_updates",
                     "conflicts"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.log_by_type.update(other.log_by_type)


def write_ops(
    conn: psycopg.Connection[Any], ops: Sequence[Op], times: Sequence[datetime] | None = None
) -> WriteStats:
    """Write ``ops`` in one transaction: COPY for inserts, executemany for updates.

    ``times`` gives each op its timestamp (history); without it every row gets the database's
    ``now()`` of this transaction, like live rows.
    """
    with conn.transaction():
        if times is None:
            row = conn.execute("SELECT now()").fetchone()
            assert row is not None
            return _write_stream(conn, zip(ops, itertools.repeat(row[0])))
        return _write_stream(conn, zip(ops, times, strict=True))


def _write_stream(
    conn: psycopg.Connection[Any], pairs: Iterable[tuple[Op, datetime]]
) -> WriteStats:
    """Stream log rows into COPY while ``pairs`` is produced; buffer and then write the rest.

    The log COPY goes through a queued writer, so generating rows (Python) and storing them
    (PostgreSQL) overlap. Updates of users/sessions inserted in the same batch are folded into
    the insert, so a bulk load issues few UPDATEs. The foreign keys are DEFERRABLE INITIALLY
    DEFERRED, so log rows may precede the users they reference within the transaction.
    """
    stats = WriteStats()
    users: dict[int, list[Any]] = {}
    sessions: dict[int, list[Any]] = {}
    user_updates: list[tuple[UserUpdate, datetime]] = []
    session_updates: list[tuple[SessionUpdate, datetime]] = []
    conflicts: list[tuple[Any, ...]] = []
    user_index = {name: i for i, name in enumerate(_USER_COLUMNS)}
    by_type = stats.log_by_type
    dumps = json.dumps
    with conn.cursor() as cur:
        with cur.copy(_copy_sql("common_customersynclog", _LOG_COLUMNS),
                      writer=QueuedLibpqWriter(cur)) as copy:
            write_row = copy.write_row
            for op, ts in pairs:
                if type(op) is LogRow:
                    details = op.details
                    if any(v is STAMP for v in details.values()):
                        details = _stamped(details, ts)
                    write_row((
                        op.onec_id, op.operation_type, op.status, op.error_message,
                        dumps(details, ensure_ascii=False), ts, op.session,
                        op.correlation_id, op.customer_id, op.duration_ms, ts, None, "",
                    ))
                    by_type[(op.operation_type, op.status)] += 1
                    stats.log_rows += 1
                elif isinstance(op, UserRow):
                    users[op.id] = [
                        op.id, op.password, None, False, op.first_name, op.last_name, False,
                        op.is_active, ts, op.email, op.role, op.phone, op.company_name,
                        op.tax_id, op.is_verified, ts, ts, op.created_in_1c,
                        ts if op.synced else None, op.needs_1c_export, op.onec_id, "",
                        op.sync_status, None, None, op.verification_status, None, op.country,
                        op.onec_price_type_id, None, False,
                    ]
                elif isinstance(op, UserUpdate):
                    if op.id in users:
                        values = users[op.id]
                        for key, value in op.values.items():
                            values[user_index[key]] = _resolve(value, ts)
                        values[user_index["updated_at"]] = ts
                    else:
                        user_updates.append((op, ts))
                elif isinstance(op, SessionRow):
                    sessions[op.id] = [
                        op.id, op.import_type, op.status, ts, None, "{}", "", op.celery_task_id,
                        ts, "", ts, None,
                    ]
                elif isinstance(op, SessionUpdate):
                    if op.id in sessions:
                        values = sessions[op.id]
                        values[2], values[10] = op.status, ts
                        if op.finished:
                            values[4] = ts
                        if op.report_details is not None:
                            values[5] = dumps(op.report_details, ensure_ascii=False)
                        if op.error_message is not None:
                            values[6] = op.error_message
                    else:
                        session_updates.append((op, ts))
                elif isinstance(op, ConflictRow):
                    conflicts.append((
                        op.conflict_type, op.resolution_strategy, op.is_resolved,
                        ts if op.is_resolved else None, ts, op.customer_id,
                        dumps(_stamped(op.details, ts), ensure_ascii=False), ts,
                    ))
                else:
                    raise TypeError(f"not a traffic operation: {op!r}")
        _copy(cur, "users", _USER_COLUMNS, users.values())
        _copy(cur, "import_sessions", _SESSION_COLUMNS, sessions.values())
        _update_users(cur, user_updates)
        _update_sessions(cur, session_updates)
        _copy(cur, "common_syncconflict", _CONFLICT_COLUMNS, conflicts)
    stats.users = len(users)
    stats.user_updates = len(user_updates)
    stats.sessions = len(sessions)
    stats.session_updates = len(session_updates)
    stats.conflicts = len(conflicts)
    return stats


def _copy_sql(table: str, columns: Sequence[str]) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )


def _copy(
    cur: psycopg.Cursor[Any], table: str, columns: Sequence[str], rows: Any
) -> None:
    rows = list(rows)
    if not rows:
        return
    with cur.copy(_copy_sql(table, columns)) as copy:
        for row in rows:
            copy.write_row(row)


def _update_users(cur: psycopg.Cursor[Any], updates: list[tuple[UserUpdate, datetime]]) -> None:
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for op, ts in updates:
        keys = tuple(op.values)
        groups.setdefault(keys, []).append(
            (*(_resolve(op.values[k], ts) for k in keys), ts, op.id)
        )
    for keys, params in groups.items():
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = %s").format(sql.Identifier(k)) for k in (*keys, "updated_at")
        )
        cur.executemany(
            sql.SQL("UPDATE users SET {} WHERE id = %s").format(assignments), params
        )


def _update_sessions(
    cur: psycopg.Cursor[Any], updates: list[tuple[SessionUpdate, datetime]]
) -> None:
    if not updates:
        return
    cur.executemany(
        "UPDATE import_sessions SET status = %s, updated_at = %s,"
        " finished_at = CASE WHEN %s THEN %s ELSE finished_at END,"
        " report_details = COALESCE(%s::jsonb, report_details),"
        " error_message = COALESCE(%s, error_message) WHERE id = %s",
        [
            (
                op.status, ts, op.finished, ts,
                json.dumps(op.report_details, ensure_ascii=False)
                if op.report_details is not None else None,
                op.error_message, op.id,
            )
            for op, ts in updates
        ],
    )


# --- the live simulator ------------------------------------------------------------------------


@dataclass(frozen=True)
class OutageSchedule:
    """A 1C outage of ``duration`` seconds every ``every`` seconds, the first at ``first``."""

    first: float = 90.0
    every: float = 180.0
    duration: float = 40.0

    def active(self, t: float) -> bool:
        if self.every <= 0 or t < self.first:
            return False
        return (t - self.first) % self.every < self.duration


NO_OUTAGES = OutageSchedule(first=float("inf"))


class TrafficSimulator:
    """Keeps writing FREESPORT sync traffic at ``rate`` log rows per second.

    ``start()``/``stop()`` run it in a thread; ``step(n)`` writes exactly ``n`` log rows (and
    their side rows) now, for tests. ``on_outage(active)`` callbacks fire when the schedule
    enters or leaves a 1C outage; ``on_batch(ops)`` callbacks after each committed batch.
    """

    def __init__(
        self,
        dsn: str,
        rng: random.Random,
        rate: float = 5.0,
        *,
        mix: Mix | None = None,
        schedule: OutageSchedule = OutageSchedule(),
        tick: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dsn = dsn
        self.rate = rate
        self.schedule = schedule
        self.tick = tick
        self.clock = clock
        self.on_outage: list[Callable[[bool], None]] = []
        self.on_batch: list[Callable[[Sequence[Op]], None]] = []
        self.totals = WriteStats()
        self.failures = 0
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._forced: bool | None = None
        self._pending: list[Op] = []
        self._t0 = clock()
        self.ids = SequenceIds(self.connection)
        self.model = TrafficModel(rng, self.ids, mix)

    # -- connection --

    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.dsn, autocommit=True, application_name="freesport-demo-traffic"
            )
        return self._conn

    def load_state(self) -> None:
        """Pick up an earlier run's users; close sessions it left open (as the hourly
        ``cleanup_stale_import_sessions`` task would)."""
        conn = self.connection()
        conn.execute(
            "UPDATE import_sessions SET status = 'failed', finished_at = now(), updated_at = now(),"
            " error_message = 'Сессия прервана: процесс импорта остановлен'"
            " WHERE import_type = 'customers' AND status IN ('pending', 'started', 'in_progress')"
        )
        self.model.load(conn)

    # -- outage --

    @property
    def outage(self) -> bool:
        return self.model.outage

    def force_outage(self, active: bool | None) -> None:
        """Override the schedule (``None`` hands control back to it at the next step)."""
        with self._lock:
            self._forced = active
            if active is not None:
                self._apply_outage(active)

    def _apply_outage(self, active: bool) -> None:
        if active == self.model.outage:
            return
        self.model.outage = active
        log.info("1C outage " + ("started" if active else "ended"))
        for callback in self.on_outage:
            try:
                callback(active)
            except Exception:
                log.exception("outage callback failed")

    def _advance(self) -> None:
        t = self.clock() - self._t0
        self.model.t = t
        self._apply_outage(self._forced if self._forced is not None else self.schedule.active(t))

    # -- writing --

    def step(self, n: int) -> WriteStats:
        """Generate and write exactly ``n`` log rows (plus side rows) with created_at = now()."""
        with self._lock:
            self._advance()
            # Enough ids for any batch of n rows: generation itself never touches the database.
            self.ids.reserve(users=2 * n + self.model.mix.initial_catalog + 16, sessions=n + 2)
            ops = self._pending + self.model.take(n)
            self._pending = []
            return self.write_batch(ops)

    def write_batch(self, ops: Sequence[Op], times: Sequence[datetime] | None = None) -> WriteStats:
        """Write ``ops`` now in one transaction (retried by the thread if the DB is down)."""
        try:
            stats = write_ops(self.connection(), ops, times)
        except psycopg.OperationalError:
            self._pending = list(ops)  # the model already counts them as written
            if self._conn is not None:
                self._conn.close()
            raise
        self.totals.add(stats)
        for callback in self.on_batch:
            try:
                callback(ops)
            except Exception:
                log.exception("batch callback failed")
        return stats

    # -- the thread --

    def start(self) -> TrafficSimulator:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self) -> None:
        credit = 0.0
        last = self.clock()
        while not self._stop.wait(self.tick):
            now = self.clock()
            credit = min(credit + (now - last) * self.rate, self.rate * 10)
            last = now
            n = int(credit)
            if n <= 0:
                continue
            try:
                self.step(n)
                credit -= n
            except psycopg.Error as exc:
                self.failures += 1
                if self.failures % 20 == 1:
                    log.warning("traffic write failed", error=str(exc).splitlines()[0])
            except Exception:
                self.failures += 1
                log.exception("traffic step failed")


# --- history for the benchmark -----------------------------------------------------------------


def bulk_load(
    dsn: str,
    rng: random.Random,
    rows: int,
    start: datetime,
    end: datetime,
    *,
    mix: Mix | None = None,
    schedule: OutageSchedule = NO_OUTAGES,
    chunk: int = 100_000,
    progress: Callable[[int], None] | None = None,
) -> WriteStats:
    """Write ``rows`` historical log rows (plus users, sessions, conflicts) with ``created_at``
    spread evenly and monotonically over ``[start, end)``, by COPY in chunks of ``chunk`` rows.

    Uses the same model as the live demo, so the benchmark measures the same shapes.
    """
    if rows <= 0:
        return WriteStats()
    span = (end - start).total_seconds()
    mix = mix or Mix(import_size=(200, 600), initial_catalog=400, new_counterparties=(2, 8),
                     import_gap_seconds=span / max(rows, 1) * 50)
    totals = WriteStats()
    with psycopg.connect(dsn, autocommit=True, application_name="freesport-bulk-load") as conn:
        ids = SequenceIds(lambda: conn, chunk=4096)
        model = TrafficModel(rng, ids, mix)
        model.load(conn)

        def chunk_pairs(first: int, n: int) -> Iterator[tuple[Op, datetime]]:
            ts = start + timedelta(seconds=span * first / rows)
            logs = 0
            while logs < n:
                model.outage = schedule.active(model.t)
                op = model.next_op()
                if type(op) is LogRow:
                    offset = span * (first + logs + rng.random()) / rows
                    model.t = offset
                    ts = start + timedelta(seconds=offset)
                    logs += 1
                yield op, ts

        written = 0
        while written < rows:
            n = min(chunk, rows - written)
            ids.reserve(users=n // 4 + mix.initial_catalog, sessions=n // 50 + 8)
            with conn.transaction():
                totals.add(_write_stream(conn, chunk_pairs(written, n)))
            written += n
            if progress is not None:
                progress(written)
    return totals
