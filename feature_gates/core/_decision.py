"""The decision, pure: what a plan allows, judged from the subject, the gate, the
catalogue and a count. No I/O; the engine reads and writes counts around it.

One request through a gated view::

    admit()   the decision, and for a metered limit ONE atomic consume
              -> a Denial, or a Grant
    view runs
    settle()  success (no exception, status < 400): usage goes to the tracker
              failure: a metered consumption is refunded
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import replace
from datetime import datetime
from typing import Any
from typing import Literal

from ._config import FailMode
from ._counting import Key
from ._holds import Hold
from ._plans import Catalogue
from ._plans import Entitlement
from ._plans import UnknownFeature
from ._subject import Subject

__all__ = [
    "MAX_AMOUNT",
    "MAX_COUNT",
    "Decision",
    "Level",
    "Gate",
    "GateKind",
    "Grant",
    "amount",
    "before_count",
    "deciding",
    "entitlement_of",
    "gated_methods",
    "judge",
    "level",
    "limit_of",
    "refusing",
    "resolve",
    "tier_allows",
    "validate",
]

GateKind = Literal["feature", "tier", "metered", "stock"]
#: A value, or a callable taking the view's arguments and returning it.
Dynamic = Any

#: The most uses one consume takes (the SQL functions' amounts are integers).
MAX_AMOUNT = 2**31 - 1
#: The largest usage count (feature_usage.usage_count is a bigint).
MAX_COUNT = 2**63 - 1


@dataclass(frozen=True)
class Gate:
    """The rule one decorator puts on a view. Listed by ``flask feature-gates routes``."""

    kind: GateKind
    feature: str
    min_tier: str | None = None
    cost: Dynamic = 1
    limit: Dynamic = None
    usage_getter: Callable[..., int] | None = None
    track_usage: bool = True
    fail_mode: FailMode | None = None
    #: A metered gate that reserves: the uses held before the view runs (a value
    #: or a callable of the view's arguments), settled by the view.
    reserve: Dynamic = None
    #: The HTTP methods the gate checks and counts (upper case, HEAD with GET);
    #: None for every method. Requests of other methods pass through untouched.
    methods: frozenset[str] | None = None

    def gates(self, method: str) -> bool:
        """Whether a request of ``method`` goes through this gate."""
        return self.methods is None or method in self.methods


def gated_methods(methods: Iterable[str] | None) -> frozenset[str] | None:
    """A decorator's ``methods=`` checked and normalised: upper case, and HEAD with
    GET (a HEAD request runs the GET view). None stays None: every method."""
    if methods is None:
        return None
    if isinstance(methods, str):
        raise TypeError(
            f"methods must be a list of HTTP methods, like methods=[{methods!r}], got a string"
        )
    found = set()
    for method in methods:
        if not isinstance(method, str) or not method.strip():
            raise TypeError(f"methods must hold HTTP method names, got {method!r}")
        found.add(method.strip().upper())
    if not found:
        raise ValueError("methods is empty: list the methods to gate, or leave it out for all")
    if "GET" in found:
        found.add("HEAD")
    return frozenset(found)


@dataclass(frozen=True)
class Level:
    """One level a limit is judged at.

    ``scope`` is ``"org"`` for an organisation's pool, ``"user"`` for a user's own
    count or a member's share of a pool. ``limit`` and ``remaining`` are None
    when the level has no limit; ``reset_at`` is when its count starts again (for
    a rolling window: when enough of it frees up for the cost asked, or, when
    allowed, when its oldest use leaves), None when never.
    """

    scope: str
    limit: int | None
    used: int | None
    remaining: int | None
    reset_at: datetime | None


@dataclass(frozen=True)
class Decision:
    """The answer to "may this subject use this feature now?", without consuming.

    ``reason`` is None when allowed, else ``anonymous``, ``not-entitled``, ``limit``,
    ``unavailable`` (the database cannot be reached, fail mode closed) or ``error``
    (the database failed the read). ``limit``, ``used``, ``remaining`` and
    ``reset_at`` are those of the level that decided (the one that refused, else
    the one with the least left): ``limit`` and ``remaining`` are None when
    unlimited; ``reset_at`` is when the count starts again (limits only).

    ``scope`` (``"user"`` or ``"org"``), ``period`` or ``window`` say how the
    feature counts on the subject's plan, and ``levels`` every level checked: the
    user's own count, or an organisation's pool then the member's share.
    """

    allowed: bool
    reason: str | None
    feature: str
    plan: str | None
    limit: int | None = None
    used: int | None = None
    remaining: int | None = None
    reset_at: datetime | None = None
    scope: str | None = None
    period: str | None = None
    window: str | None = None
    levels: tuple[Level, ...] = ()


@dataclass
class Grant:
    """What an admitted request owes when it ends: a usage record or a refund.

    ``track`` uses go to the tracker when the request succeeds; with ``owed``
    they are uses a metered gate let through uncounted (fail open), which are the
    limit's count. ``consumed`` uses taken under ``key`` are refunded when it fails.
    """

    gate: Gate
    subject: Subject
    track: int = 0
    owed: bool = False
    consumed: int = 0
    #: What the uses count against (fixed when the request began); None for a gate
    #: that counts nothing of its own.
    key: Key | None = None
    limit: int | None = None
    remaining: int | None = None
    reset_at: datetime | None = None
    #: The hold of a gate that reserves, settled by the view (or when it ends).
    hold: Hold | None = None

    @property
    def held(self) -> bool:
        """Whether the request's end matters: something to record, refund or report."""
        return bool(
            self.track or self.consumed or self.remaining is not None or self.hold is not None
        )


def resolve(value: Dynamic, args: dict[str, Any]) -> Any:
    """``value``, or what it returns for the view's arguments when it is a callable."""
    return value(**args) if callable(value) else value


def amount(value: Any, name: str, gate: Gate) -> int:
    """``value`` checked as a count of uses (a cost, a limit, a stock)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(
            f"{name} of the gate on {gate.feature!r} must be an integer of 0 or more, got {value!r}"
        )
    return value


def limit_of(gate: Gate, catalogue: Catalogue, plan: str, args: dict[str, Any]) -> int | None:
    """The limit ``gate`` puts on ``plan`` for this call: the gate's own (dynamic) one,
    else the plan's; None for no limit, 0 for not entitled."""
    return entitlement_of(gate, catalogue, plan, args).limit


def entitlement_of(
    gate: Gate, catalogue: Catalogue, plan: str, args: dict[str, Any]
) -> Entitlement:
    """What ``gate`` allows ``plan`` for this call: the plan's entitlement, its limit
    replaced by the gate's own (dynamic) one when it has one; how the feature counts
    is the catalogue's (a user's UTC month for a feature it does not name)."""
    if gate.limit is None:
        return catalogue.entitlement(plan, gate.feature)
    limit = resolve(gate.limit, args)
    if limit is not None:
        limit = amount(limit, "limit", gate)
        # A count is a bigint: it can never reach this limit.
        limit = None if limit >= MAX_COUNT else limit
    if gate.feature in catalogue:
        return replace(catalogue.entitlement(plan, gate.feature), kind="limit", limit=limit)
    return Entitlement(gate.feature, "limit", limit)


def tier_allows(catalogue: Catalogue, min_tier: str, plan: str) -> bool:
    """Whether ``plan`` ranks at least ``min_tier``."""
    required = catalogue.require_tier(min_tier)
    rank = catalogue.rank(plan)
    return rank is not None and rank >= required


def validate(gate: Gate, catalogue: Catalogue) -> None:
    """Raise :class:`~feature_gates.ConfigError` if ``gate`` cannot work with this
    catalogue."""
    if gate.kind == "tier":
        assert gate.min_tier is not None
        catalogue.require_tier(gate.min_tier)
        return
    if gate.limit is None and gate.feature not in catalogue:
        raise UnknownFeature(
            f"feature {gate.feature!r} is not defined in any plan; define it under "
            "FEATURE_GATES_PLANS"
        )


def before_count(
    entitlement: Entitlement | None, feature: str, subject: Subject | None, *, stock: bool
) -> Decision | None:
    """The decision when no count is needed (``entitlement`` is the subject's plan's
    of ``feature``), or None when it needs the count."""
    if subject is None or entitlement is None:
        return Decision(False, "anonymous", feature, None, remaining=0)
    limit = entitlement.limit
    if limit == 0:
        return Decision(False, "not-entitled", feature, subject.plan, limit=0, remaining=0)
    if entitlement.kind == "boolean":
        return Decision(True, None, feature, subject.plan)
    if stock:
        # A stock limit's count is the application's: without it, only the grant.
        return Decision(True, None, feature, subject.plan, limit)
    return None


def level(scope: str, limit: int | None, used: int, reset_at: datetime | None) -> Level:
    """A level with ``used`` counted against ``limit``."""
    remaining = None if limit is None else max(limit - used, 0)
    return Level(scope, limit, used, remaining, reset_at)


def refusing(levels: tuple[Level, ...], cost: int) -> Level | None:
    """The first level (a pool before its member) that ``cost`` more uses would pass."""
    for found in levels:
        if found.limit is not None and found.used is not None and found.used + cost > found.limit:
            return found
    return None


def deciding(levels: tuple[Level, ...], cost: int) -> Level | None:
    """The level a decision reports: the one that refuses, else the one with the
    least left (None when no level has a limit)."""
    refused = refusing(levels, cost)
    if refused is not None:
        return refused
    limited = [found for found in levels if found.remaining is not None]
    return min(limited, key=lambda found: found.remaining or 0) if limited else None


def judge(
    entitlement: Entitlement, subject: Subject, levels: tuple[Level, ...], cost: int
) -> Decision:
    """Whether ``cost`` more uses fit every level, with what each has counted."""
    refused = refusing(levels, cost)
    shown = deciding(levels, cost) or levels[0]
    return Decision(
        refused is None,
        None if refused is None else "limit",
        entitlement.feature,
        subject.plan,
        shown.limit,
        shown.used,
        shown.remaining,
        shown.reset_at,
        entitlement.rule.scope,
        entitlement.period,
        entitlement.window,
        levels,
    )
