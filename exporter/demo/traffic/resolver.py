"""(d) ``CustomerConflictResolver``: a ``SyncConflict`` and one conflict_resolution row.

The resolver settles 1C data meeting a portal account (``customer_data``) and a registration
blocked by an existing 1C customer (``portal_registration_blocked``). Its log row has no
duration and no ``email_sent`` (DATA.md §3.3); the e-mail it sends after commit sometimes
fails, which writes a ``notification_failed`` warning.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from exporter.demo.traffic.rows import STAMP, ConflictRow, LogRow, Op, UserUpdate
from exporter.demo.traffic.state import Customer, Writer
from exporter.demo.traffic.values import NOTIFICATION_ERRORS


def _platform_data(user: Customer) -> dict[str, Any]:
    """The portal side of the conflict, as the resolver records it."""
    return {
        "id": user.id, "email": user.email or "", "first_name": user.first_name,
        "last_name": user.last_name, "phone": user.phone, "company_name": user.company_name,
        "tax_id": user.tax_id, "onec_id": user.onec_id,
        "onec_guid": str(user.onec_guid) if user.onec_guid else None,
        "verification_status": user.verification_status,
        "created_in_1c": user.created_in_1c, "last_sync_from_1c": None,
    }


class ConflictResolver(Writer):
    """Runs of the resolver; needs at least one 1C customer (the model checks)."""

    def run(self) -> Iterator[Op]:
        """SyncConflict + one conflict_resolution/success row (no email_sent, no duration)."""
        portal = [c for c in self.state.portal[-500:] if c.is_active]
        source = "data_import" if self.rng.random() < 0.5 else "portal_registration"
        if source == "data_import" and portal and self.rng.random() < 0.5:
            user = self.rng.choice(portal)  # 1C data meets an existing portal account
        else:
            user = self.rng.choice(self.state.customers_1c[-2000:])
        fields = self.rng.sample(["first_name", "last_name", "email", "phone", "company_name"],
                                 self.rng.randint(0, 3))
        platform_data = _platform_data(user)
        onec_data: dict[str, Any] = {"tax_id": user.tax_id, "email": user.email}
        if source == "data_import":
            yield self._give_guid(user)
            onec_data["onec_guid"] = str(user.onec_guid)
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
            "conflict_resolution", "success", self.draw.uuid4(), onec_id=user.onec_id or "",
            details={"conflict_source": source, "resolution_strategy": "onec_wins",
                     "conflicting_fields": fields},
            customer_id=user.id,
        )
        if self.rng.random() < 0.25:  # the e-mail after commit failed
            message = self.rng.choice(NOTIFICATION_ERRORS)
            yield LogRow(
                "notification_failed", "warning", self.draw.uuid4(), onec_id=user.onec_id or "",
                error_message=message, details={"error": message}, customer_id=user.id,
            )

    def _give_guid(self, user: Customer) -> UserUpdate:
        """1C data carries the customer's GUID: store it (once) so identification can use it."""
        if user.onec_guid is None:
            user.onec_guid = self.draw.unique_uuid(user.id)
            if user.id in self.state.by_customer:
                self.state.guided.append(self.state.by_customer[user.id])
        return UserUpdate(user.id, {"onec_guid": user.onec_guid, "last_sync_from_1c": STAMP})
