"""Demo data: users on each plan with known tokens, and some history to look at.

The pro accounts share a team (an organisation: custom reports come from its
pool), every subscription renews on the 17th, and the demo accounts have time
zones of their own (route analyses count per day there).

Made once, on the first start with an empty ``users`` table. The four demo
accounts start the current month with no usage, so the walk-through in
docs/example.md shows round numbers; a dozen other accounts carry six months of
usage so that the dashboard has something to show.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date
from datetime import datetime
from datetime import timezone
from zoneinfo import ZoneInfo

from feature_gates import FeatureGates

from .accounts import Accounts
from .itineraries import ItineraryManager
from .threads import ThreadManager

__all__ = ["DEMO_USERS", "DemoUser", "seed"]


@dataclass(frozen=True)
class DemoUser:
    email: str
    name: str
    plan: str
    token: str
    is_admin: bool = False
    #: The user's time zone: route analyses are counted per day there.
    timezone: str | None = None


#: Demo accounts. Their tokens are public: this is a demo, keep it on loopback.
DEMO_USERS = (
    DemoUser(
        "free@sentinel.example", "Farah Free", "free", "sntl_demo_free", False, "Africa/Cairo"
    ),
    DemoUser("pro@sentinel.example", "Paulo Pro", "pro", "sntl_demo_pro", False, "Europe/Lisbon"),
    DemoUser(
        "enterprise@sentinel.example",
        "Erin Enterprise",
        "enterprise",
        "sntl_demo_enterprise",
        False,
        "America/New_York",
    ),
    DemoUser("admin@sentinel.example", "Ada Admin", "enterprise", "sntl_demo_admin", True),
)

#: The team the pro accounts share: custom reports come from its pool, at most
#: 10 each (plans.toml).
TEAM = "Acme Travel"
#: Pro subscriptions renew on this day of the month (briefings count from it).
RENEWAL_DAY = 17

#: Accounts that only exist to give the dashboard a history.
_POPULATION = (
    ("Noor", "free"), ("Kwame", "free"), ("Lena", "free"), ("Tomás", "free"),
    ("Mei", "free"), ("Ravi", "pro"), ("Sofia", "pro"), ("Jonas", "pro"),
    ("Amara", "pro"), ("Hugo", "enterprise"), ("Yuki", "enterprise"), ("Ines", "free"),
)  # fmt: skip

#: Typical monthly uses per feature for a busy account, by plan.
_HABITS = {
    "free": {"chat_messages_monthly": 42, "route_analysis": 3, "safe_zones": 6,
             "itinerary_destinations": 4, "saved_searches": 2, "api_access_tokens": 1},
    "pro": {"chat_messages_monthly": 640, "route_analysis": 55, "briefing_package": 14,
            "monthly_briefing": 2, "custom_reports": 7, "safe_zones": 18, "alerts_export": 6,
            "team_invite": 3, "can_export_pdf": 9, "analyst_intelligence": 20,
            "itinerary_destinations": 30, "saved_searches": 12, "api_access_tokens": 2},
    "enterprise": {"chat_messages_monthly": 2400, "route_analysis": 160,
                   "briefing_package": 45, "monthly_briefing": 3, "custom_reports": 30,
                   "safe_zones": 40, "alerts_export": 15, "team_invite": 9,
                   "can_export_pdf": 25, "analyst_intelligence": 60,
                   "itinerary_destinations": 80, "saved_searches": 30, "api_access_tokens": 4},
}  # fmt: skip

#: Monthly limits the near-limit accounts press against (from plans.toml; the
#: features counted per day, from the subscription or per team are left out:
#: their history is kept by calendar month).
_MONTHLY_LIMITS = {
    "free": {"chat_messages_monthly": 50},
    "pro": {"chat_messages_monthly": 1000, "team_invite": 5},
}  # fmt: skip


def _months_back(today: date, count: int) -> list[date]:
    months = []
    year, month = today.year, today.month
    for _ in range(count):
        months.append(date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months[::-1]


def seed(
    accounts: Accounts, threads: ThreadManager, itineraries: ItineraryManager, gates: FeatureGates
) -> None:
    """Create the demo accounts and their history (call on an empty database, in an
    application context: the history is recorded through ``gates``)."""
    team = accounts.create_organisation(TEAM)
    renewed = _subscribed(datetime.now(timezone.utc))
    for demo in DEMO_USERS:
        user = accounts.create_user(
            demo.email,
            demo.name,
            demo.plan,
            is_admin=demo.is_admin,
            org_id=team if demo.plan == "pro" else None,
            subscribed_at=renewed,
            timezone=demo.timezone,
        )
        accounts.add_token(user.id, "demo token", demo.token)
        if demo.is_admin:
            continue
        thread = threads.create_thread(user.id, "Packing for Nairobi")
        threads.add_messages(
            thread.id,
            [
                {"role": "user", "content": "Is it safe to walk in central Nairobi at night?"},
                {
                    "role": "assistant",
                    "content": "Take a registered taxi after dark, and avoid the central "
                    "business district on protest days (Tuesdays and Thursdays).",
                },
            ],
            limit=500,
            user_id=user.id,
        )
        itineraries.create_itinerary(
            user.id,
            {
                "title": "East Africa loop",
                "waypoints": [
                    {"name": "Nairobi", "country": "KE", "lat": -1.292, "lon": 36.822},
                    {"name": "Mombasa", "country": "KE", "lat": -4.043, "lon": 39.668},
                    {"name": "Cairo", "country": "EG", "lat": 30.044, "lon": 31.236},
                ],
            },
            alerts_config={"min_level": 2, "email": True},
        )
    _history(accounts, gates, team)


def _subscribed(now: datetime) -> datetime:
    """A subscription started on the RENEWAL_DAY a few months ago, at 09:30 in Paris."""
    year, month = (now.year, now.month - 3) if now.month > 3 else (now.year - 1, now.month + 9)
    return datetime(year, month, RENEWAL_DAY, 9, 30, tzinfo=ZoneInfo("Europe/Paris"))


def _history(accounts: Accounts, gates: FeatureGates, team: int) -> None:
    rng = random.Random(2024)
    months = _months_back(datetime.now(timezone.utc).date(), 6)
    this_month = months[-1]
    usage: dict[tuple[int, str, date], int] = {}
    for name, plan in _POPULATION:
        user = accounts.create_user(
            f"{name.lower()}@travellers.example",
            name,
            plan,
            org_id=team if plan == "pro" else None,
        )
        limits = _MONTHLY_LIMITS.get(plan, {})
        for age, month in enumerate(reversed(months)):
            # Older months are quieter, and some accounts skip a month.
            if age and rng.random() < 0.12 * age:
                continue
            for feature, typical in _HABITS[plan].items():
                amount = round(typical * rng.uniform(0.35, 1.0) * (1 - 0.09 * age))
                amount = min(amount, limits.get(feature, amount))
                if amount > 0:
                    usage[(user.id, feature, month)] = amount
        # Some accounts are at the edge of this month's quota.
        for feature, limit in limits.items():
            if rng.random() < 0.35:
                usage[(user.id, feature, this_month)] = limit - rng.randint(0, 3)
    for (user_id, feature, month), amount in sorted(usage.items()):
        gates.track(user_id, feature, amount, period=month)
    gates.flush(timeout=60)
    # feature_usage_summary is refreshed when the dashboard first opens.
