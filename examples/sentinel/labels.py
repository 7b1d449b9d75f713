"""What people read instead of the plan keys: a display name per feature and plan."""

from __future__ import annotations

__all__ = ["FEATURE_NAMES", "feature_name", "plan_name"]

#: Each feature of plans.toml (and the tier-gated ones) as a person calls it.
FEATURE_NAMES = {
    "alerts_export": "Alerts export",
    "analyst_intelligence": "Analyst intelligence",
    "api_access_tokens": "API tokens",
    "briefing_package": "Briefing packages",
    "can_export_pdf": "PDF export",
    "chat_messages_monthly": "Chat messages",
    "custom_reports": "Custom reports",
    "itinerary_destinations": "Destinations per itinerary",
    "monthly_briefing": "Monthly briefing",
    "route_analysis": "Route analyses",
    "route_legs": "Route legs analysed",
    "safe_zones": "Safe zones",
    "saved_searches": "Saved searches",
    "team_invite": "Team invites",
}


def feature_name(feature: str) -> str:
    """``chat_messages_monthly`` -> ``Chat messages``; a key without a name is spelt out."""
    return FEATURE_NAMES.get(feature) or feature.replace("_", " ").capitalize()


def plan_name(plan: str) -> str:
    """``pro`` -> ``Pro``."""
    return plan.title()
