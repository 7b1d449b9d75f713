"""What a user holds now: the counts behind Sentinel's stock limits.

A stock limit caps what one holds (API tokens, saved searches, destinations in
one itinerary), not what one did this month, so ``feature_usage`` cannot say how
close a user is to it. The gates count it with their ``usage_getter``; the
pages that show a user's limits (``/me``, ``/me/usage``) count it here, with the
same queries, and pass it on: ``gates.check(feature, used=count)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .state import accounts
from .state import itinerary_manager

__all__ = ["HOLDINGS", "Holding", "held"]


@dataclass(frozen=True)
class Holding:
    """How to count one stock feature for a user, and how to say it."""

    label: str  # "3 held", "3 in your largest itinerary"
    count: Callable[[int], int]  # user id -> what they hold now


HOLDINGS = {
    "api_access_tokens": Holding("held", lambda user_id: accounts.count_tokens(user_id)),
    "saved_searches": Holding("saved", lambda user_id: accounts.count_searches(user_id)),
    # The limit is per itinerary: the fullest one is the closest to it.
    "itinerary_destinations": Holding(
        "in your largest itinerary",
        lambda user_id: itinerary_manager.largest_destinations_count(user_id),
    ),
}


def held(user_id: int) -> dict[str, int]:
    """What ``user_id`` holds now of each stock feature."""
    return {feature: holding.count(user_id) for feature, holding in HOLDINGS.items()}
