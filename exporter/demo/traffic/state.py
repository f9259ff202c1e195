"""What the simulated shop remembers between operations, and the random draws every writer shares.

The writers (importer, portal, sync logger, resolvers) are separate classes, but they change one
shared world: the 1C catalog, the portal's customers, the export queue, the clock and the 1C
outage. :class:`TrafficState` is that world; :class:`Draws` makes its random values. Both take
all randomness from one seeded ``random.Random``, so a seed gives one stream whatever writer runs.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from exporter.demo.traffic.ids import IdSource
from exporter.demo.traffic.values import (
    BUYER_ROLES,
    COMPANY_WORDS,
    CUSTOMER_TYPES,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    NOT_BUYER_ROLES,
)


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


class Draws:
    """Random values in FREESPORT's formats, from the model's one generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._tax_ids: list[str] = []

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def unique_uuid(self, number: int) -> uuid.UUID:
        """A random-looking uuid whose low 48 bits are a sequence number, so it never repeats."""
        bits = (self.rng.getrandbits(128) & ~((1 << 48) - 1)) | (number & ((1 << 48) - 1))
        return uuid.UUID(int=bits, version=4)

    def guid(self, number: int) -> str:
        """A 1C-style GUID ``xxxxxxxx-xxxx-11xx-xxxx-<node>``; the node makes it unique."""
        r = self.rng.getrandbits(64)
        return (
            f"{r >> 32:08x}-{(r >> 16) & 0xFFFF:04x}-11{(r >> 8) & 0xFF:02x}-"
            f"{0x8000 | (r & 0x3FFF):04x}-{number & 0xFFFFFFFFFFFF:012x}"
        )

    def ms(self, median: float, sigma: float = 0.7) -> int:
        """A log-normal duration in milliseconds around ``median``."""
        return max(0, int(self.rng.lognormvariate(0, sigma) * median))

    def pick(self, values: Sequence[str], weights: Sequence[float] | None = None) -> str:
        return self.rng.choices(values, weights)[0]

    def phone(self) -> str:
        return f"+79{self.rng.randrange(10**9):09d}"

    def tax_id(self, customer_type: str) -> str:
        if customer_type == "individual":
            return ""
        if self._tax_ids and self.rng.random() < 0.05:  # INN is not unique in production
            return self.rng.choice(self._tax_ids)
        digits = 10 if customer_type == "legal_entity" else 12
        value = "".join(str(self.rng.randrange(10)) for _ in range(digits))
        self._tax_ids.append(value)
        return value

    def password(self) -> str:
        salt = "".join(self.rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=22))
        digest = "".join(self.rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh0123456789+/", k=43))
        return f"pbkdf2_sha256$870000${salt}${digest}="


class TrafficState:
    """The shared world. ``t`` (seconds, set by the driver) and ``outage`` steer every writer."""

    def __init__(self, rng: random.Random, ids: IdSource, mix: Mix | None = None) -> None:
        self.rng = rng
        self.draw = Draws(rng)
        self.ids = ids
        self.mix = mix or Mix()
        self.t = 0.0
        self.outage = False
        self.catalog: list[Counterparty] = []
        self.portal: list[Customer] = []
        self.export_queue: dict[int, Customer] = {}  # active users with needs_1c_export
        self.customers_1c: list[Customer] = []
        self.last_session_id: int | None = None
        self.by_customer: dict[int, Counterparty] = {}  # 1C customers' counterparties
        self.guided: list[Counterparty] = []  # ... whose customer got a onec_guid
        self._burst_until = -1.0
        self._next_burst = self.rng.uniform(*self.mix.burst_every)

    def error_rate(self) -> float:
        """The chance that a write fails now: higher during an error burst."""
        if self.t >= self._next_burst:
            self._burst_until = self.t + self.rng.uniform(*self.mix.burst_length)
            self._next_burst = self._burst_until + self.rng.uniform(*self.mix.burst_every)
        return self.mix.burst_error_rate if self.t < self._burst_until else self.mix.error_rate

    @property
    def in_burst(self) -> bool:
        return self.t < self._burst_until

    # -- the 1C catalog --

    def new_counterparty(self) -> Counterparty:
        """A counterparty a 1C user just entered (sometimes with a mistyped e-mail)."""
        number = self.ids.next_user_id()
        ctype = self.draw.pick(CUSTOMER_TYPES, (55, 30, 15))
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
            onec_id=self.draw.guid(number),
            onec_role=self.rng.choice(BUYER_ROLES if is_buyer else NOT_BUYER_ROLES),
            customer_type=ctype,
            name=name,
            email=email,
            tax_id=self.draw.tax_id(ctype),
            phone=f"8-9{self.rng.randrange(10**9):09d}",
            has_attributes=self.rng.random() < 0.9,
        )

    def fill_catalog(self) -> None:
        """The catalog as the first export finds it."""
        self.catalog.extend(self.new_counterparty() for _ in range(self.mix.initial_catalog))

    def sample_catalog(self, k: int) -> list[Counterparty]:
        """Up to ``k`` counterparties from the recent part of the catalog."""
        if not self.catalog:
            self.fill_catalog()
        pool = self.catalog[-2000:]
        return self.rng.sample(pool, min(k, len(pool)))


class Writer:
    """Base of the simulated writers: the shared state, its generator and its draws."""

    def __init__(self, state: TrafficState) -> None:
        self.state = state
        self.rng = state.rng
        self.draw = state.draw
