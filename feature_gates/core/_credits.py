"""Credits: grants that add to a level's allowance, and the balance they make.

A grant belongs to a level (a user, or an organisation for its pool) and a
feature, not to a period: a period's uses take its allowance first, then the
level's live grants in order of earliest expiry (then oldest). No I/O here: the
engine sends the statements; this says what their answers mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from datetime import timezone
from typing import Any

__all__ = ["Balance", "CreditGrant", "balance_of"]


@dataclass(frozen=True)
class CreditGrant:
    """One grant: ``amount`` added, ``remaining`` of it left, until ``expires_at``
    (None: never). ``added`` says whether the call that returned it added it (False:
    its idempotency key had added it before)."""

    grant_id: int
    feature: str
    amount: int
    remaining: int
    expires_at: datetime | None
    reason: str = ""
    added: bool = True


@dataclass(frozen=True)
class Balance:
    """What a subject has of a feature in the current period.

    ``allowance`` is the plan's limit of the period (None: unlimited); ``used`` the
    uses committed in it (those drawn on grants included); ``held`` what live holds
    take; ``grants`` the live grants of the level, in the order they are drawn on;
    ``available`` what a use may still take: the allowance left, plus what the
    grants have left, within a member's ``per_user`` cap (None: unlimited).
    """

    feature: str
    scope: str
    allowance: int | None
    used: int
    held: int
    grants: tuple[CreditGrant, ...]
    available: int | None

    @property
    def granted(self) -> int:
        """What the live grants have left, in all."""
        return sum(grant.remaining for grant in self.grants)


def balance_of(
    feature: str,
    scope: str,
    allowance: int | None,
    per_user: int | None,
    row: Any,
) -> Balance:
    """The balance from the answer of the BALANCE statement (``row``)."""
    grants = tuple(
        CreditGrant(
            grant_id,
            feature,
            amount,
            remaining,
            None if expiry is None else expiry.astimezone(timezone.utc),
            reason,
        )
        for grant_id, amount, remaining, expiry, reason in zip(
            row.grant_ids, row.amounts, row.remainings, row.expiries, row.reasons, strict=True
        )
    )
    counted, held = row.used, row.held
    available: int | None = None
    if allowance is not None:
        # The row's count holds the live holds; the uses beyond the allowance drew on grants.
        available = max(allowance + row.credit_used - counted, 0) + sum(
            grant.remaining for grant in grants
        )
    if per_user is not None and row.member_used is not None:
        left = max(per_user - row.member_used, 0)
        available = left if available is None else min(available, left)
    return Balance(feature, scope, allowance, counted - held, held, grants, available)
