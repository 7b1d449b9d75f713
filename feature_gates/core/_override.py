"""A test's pin of the subject and of the gates, for every adapter's ``override()``."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace
from typing import Any

from ._subject import Subject

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
