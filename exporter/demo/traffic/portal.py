"""(b) The portal: registrations and a manager linking a 1C record to an account.

Neither writes a sync-log row (registration writes none, DATA.md §3); they create the users the
other writers find, queue B2B accounts for export to 1C and give linked 1C customers a password,
so the importer's role outcomes change.
"""

from __future__ import annotations

from collections.abc import Iterator

from exporter.demo.traffic.rows import Op, UserRow, UserUpdate
from exporter.demo.traffic.state import Customer, Writer
from exporter.demo.traffic.values import (
    COMPANY_WORDS,
    COUNTRIES,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    PORTAL_ROLE_WEIGHTS,
    PORTAL_ROLES,
)


class Portal(Writer):
    """The shop's own side: customers register, managers link accounts."""

    def registration(self) -> Iterator[Op]:
        uid = self.state.ids.next_user_id()
        role = self.draw.pick(PORTAL_ROLES, PORTAL_ROLE_WEIGHTS)
        b2b = role != "retail"
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        ctype = "legal_entity" if b2b else "individual"
        user = Customer(
            id=uid, email=f"user{uid}@{self.rng.choice(EMAIL_DOMAINS)}",
            tax_id=self.draw.tax_id(ctype), role=role, created_in_1c=False,
            first_name=first, last_name=last, phone=self.draw.phone(),
            company_name=f'ООО "{self.rng.choice(COMPANY_WORDS)}"' if b2b else "",
            needs_export=self.rng.random() < (0.7 if b2b else 0.2),
            is_active=self.rng.random() < 0.95,
            verification_status=self.draw.pick(("pending", "unverified"), (3, 1)) if b2b
            else "verified",
        )
        self.state.portal.append(user)
        if user.needs_export and user.is_active:
            self.state.export_queue[uid] = user
        yield UserRow(
            id=uid, email=user.email, role=role, created_in_1c=False,
            password=self.draw.password(), first_name=first, last_name=last, phone=user.phone,
            company_name=user.company_name, tax_id=user.tax_id, is_active=user.is_active,
            is_verified=user.verification_status == "verified",
            needs_1c_export=user.needs_export, verification_status=user.verification_status,
            country=self.rng.choice(COUNTRIES),
        )

    def link(self) -> Iterator[Op]:
        """A manager links a 1C record to a portal account (link_1c_customer): no log row."""
        candidates = [
            c for c in self.state.catalog[-500:] if c.customer is not None and not c.linked
        ]
        if not candidates:
            return
        cp = self.rng.choice(candidates)
        cp.linked = True
        assert cp.customer is not None
        cp.customer.verification_status = "verified"
        yield UserUpdate(
            cp.customer.id,
            {"password": self.draw.password(), "verification_status": "verified",
             "is_verified": True},
        )
