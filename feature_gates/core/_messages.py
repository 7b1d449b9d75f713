"""What a person reads when a gate refuses them: one short sentence per denial.

A denial's ``detail`` is written for the developer ("plan 'free' allows 50 uses
of 'chat_messages_monthly' per month and 50 are used; ..."); its ``message`` for
the end user ("You've used all 50 chat messages this month; they renew on
1 December."). Messages come from templates, by message key and optionally by
feature (FEATURE_GATES_DENIAL_MESSAGES); features and plans are named by their
display names (FEATURE_GATES_DISPLAY_NAMES, else the name spelt out); and
FEATURE_GATES_TRANSLATE, a gettext-style callable, translates each template and
display name before the message is put together.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from collections.abc import Mapping
from datetime import datetime
from datetime import timezone
from typing import Any
from typing import Protocol

__all__ = [
    "MESSAGE_FIELDS",
    "MESSAGES",
    "Messages",
    "display_name",
    "message_key",
    "template_fields",
]

#: The default template of each message key.
MESSAGES: Mapping[str, str] = {
    "anonymous": "Sign in to use {name}.",
    "not-entitled": "Your {plan} plan doesn't include {name}.",
    "tier": "Upgrade to the {tier} plan or higher to use {name}.",
    "limit": "You've used all {limit} {name} this month; they renew on {reset_date}.",
    "limit-cost": (
        "You have {remaining} {name} left this month and this needs {cost}; "
        "they renew on {reset_date}."
    ),
    "stock": "You've reached your {plan} plan's limit of {limit} {name}.",
    "stock-cost": (
        "Your {plan} plan allows {limit} {name}; you have {used} and this needs {cost} more."
    ),
    "unavailable": "We can't check your {name} right now; please try again in a moment.",
    "error": "We can't check your {name} right now; please try again in a moment.",
    "denied": "You can't use {name} right now.",
}

#: What a template may name, and what it holds.
MESSAGE_FIELDS: Mapping[str, str] = {
    "name": "the feature's display name",
    "feature": "the feature's key",
    "plan": "the display name of the caller's plan",
    "tier": "the display name of the lowest plan that passes (tier denials)",
    "limit": "the limit",
    "used": "the count now",
    "remaining": "what is left",
    "cost": "what the request needed",
    "reset_at": "when the count starts again (a datetime in UTC)",
    "reset_date": "the same as '1 December'",
}

#: Words of a feature key that say nothing to a person: the limit's period is in
#: the message, and a boolean's "can" is implied.
_PREFIX = re.compile(r"^can[_-]")
_SUFFIX = re.compile(r"[_-](monthly|per[_-]month)$")

Translate = Callable[[str], str]


class Refusal(Protocol):
    """What a message is made of: the members of a denial."""

    @property
    def reason(self) -> str: ...
    @property
    def feature(self) -> str: ...
    @property
    def plan(self) -> str | None: ...
    @property
    def required_tier(self) -> str | None: ...
    @property
    def limit(self) -> int | None: ...
    @property
    def used(self) -> int | None: ...
    @property
    def remaining(self) -> int | None: ...
    @property
    def cost(self) -> int | None: ...
    @property
    def reset_at(self) -> datetime | None: ...


def display_name(name: str, names: Mapping[str, str], *, plan: bool = False) -> str:
    """What people read for a feature or plan key: its entry in ``names``, else the key
    spelt out: ``chat_messages_monthly`` -> ``chat messages``, ``can_export_pdf`` ->
    ``export pdf``, the plan ``team_plus`` -> ``Team plus``."""
    found = names.get(name)
    if found is not None:
        return found
    if plan:
        return name.replace("_", " ").replace("-", " ").capitalize()
    words = _SUFFIX.sub("", _PREFIX.sub("", name)) or name
    return re.sub(r"[_\-.:]+", " ", words).strip()


def message_key(refusal: Refusal) -> str:
    """The message a denial gets: its reason, and for a limit whether it resets
    (``limit``) or not (``stock``) and whether nothing was left or too little."""
    if refusal.reason != "limit":
        return refusal.reason
    key = "limit" if refusal.reset_at is not None else "stock"
    remaining = refusal.remaining
    return key if not remaining else f"{key}-cost"


def template_fields(template: str) -> set[str]:
    """The fields ``template`` names (ValueError when it is no template: a lone brace)."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


class Messages:
    """The end-user message of each denial, as the settings say.

    :param templates: FEATURE_GATES_DENIAL_MESSAGES, parsed.
    :param names: FEATURE_GATES_DISPLAY_NAMES: display names of features and plans.
    :param translate: FEATURE_GATES_TRANSLATE: a gettext-style callable, or None.
    """

    def __init__(
        self,
        templates: Mapping[str, Any] | None = None,
        names: Mapping[str, str] | None = None,
        translate: Translate | None = None,
    ) -> None:
        self.templates: Mapping[str, Any] = templates or {}
        self.names: Mapping[str, str] = names or {}
        self.translate: Translate = translate or str

    def template(self, feature: str, key: str) -> str:
        """The template of ``key`` for ``feature``: the feature's own, else the
        application's, else the default."""
        own = self.templates.get(feature)
        if isinstance(own, Mapping) and key in own:
            return str(own[key])
        found = self.templates.get(key)
        return found if isinstance(found, str) else MESSAGES[key]

    def of(self, refusal: Refusal) -> str:
        """The message of ``refusal``, in the words of the settings."""
        key = message_key(refusal)
        translate = self.translate
        reset_at = refusal.reset_at
        if reset_at is not None and reset_at.tzinfo is not None:
            reset_at = reset_at.astimezone(timezone.utc)
        tier = refusal.required_tier
        return translate(self.template(refusal.feature, key)).format(
            name=translate(display_name(refusal.feature, self.names)),
            feature=refusal.feature,
            plan=translate(display_name(refusal.plan or "", self.names, plan=True)),
            tier=None if tier is None else translate(display_name(tier, self.names, plan=True)),
            limit=refusal.limit,
            used=refusal.used,
            remaining=refusal.remaining,
            cost=refusal.cost,
            reset_at=reset_at,
            reset_date="" if reset_at is None else f"{reset_at.day} {reset_at:%B}",
        )
