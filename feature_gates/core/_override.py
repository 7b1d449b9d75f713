"""A test's pin of the subject and of the gates, for every adapter's ``override()``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import replace
from typing import TYPE_CHECKING
from typing import Any

from ._subject import Subject

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["Override"]


@dataclass(frozen=True)
class Override:
    """Pins the plan and the user id of every subject, or switches the gates on or off.

    :param plan: every subject gets this plan.
    :param user_id: every subject gets this user id; with ``plan``, an anonymous
        caller becomes this subject too.
    :param enabled: False turns every gate into a pass-through, True on; None leaves
        the setting alone.
    """

    plan: str | None = None
    user_id: Any = None
    enabled: bool | None = None

    @classmethod
    def begin(
        cls,
        engine: Engine,
        plan: str | None = None,
        user_id: Any = None,
        usage: Mapping[str, int] | None = None,
        enabled: bool | None = None,
        *,
        plans_key: str = "FEATURE_GATES_PLANS",
    ) -> Override:
        """A test's pin, checked against ``engine``'s plans (``plans_key`` names their
        setting in errors), with ``usage`` written for ``user_id`` now."""
        if plan is not None and plan not in engine.catalogue.plans:
            raise ValueError(
                f"plan {plan!r} is not in {plans_key}; the plans are "
                f"{', '.join(engine.catalogue.tiers) or 'none'}"
            )
        if usage:
            if user_id is None:
                raise ValueError("override(usage=...) needs user_id= to know whose usage to set")
            counted = None if plan is None else Subject(user_id, plan)
            engine.set_counts(user_id, usage, counted)
        return cls(plan, user_id, enabled)

    def apply(self, subject: Subject | None) -> Subject | None:
        """``subject`` as the test pins it (its organisation, anchor and zone kept)."""
        if subject is None:
            if self.user_id is None or self.plan is None:
                return None
            return Subject(self.user_id, self.plan)
        return replace(
            subject,
            user_id=subject.user_id if self.user_id is None else self.user_id,
            plan=subject.plan if self.plan is None else self.plan,
        )
