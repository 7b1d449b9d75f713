"""The plan catalogue: plans, their tier order, and what each plan grants.

Parsed and validated once, at ``init_app``, into lookups that a gate reads in
microseconds: ``catalogue.entitlement(plan, feature)`` is two dictionary reads.

A plan maps feature names to one of:

* ``True`` / ``False``: a boolean entitlement;
* an int: a limit per period (``0`` means not entitled);
* ``None`` (or ``"unlimited"``, for TOML which has no null): no limit;
* ``{"limit": 50, "period": "day", ...}``: a limit counted another way: by period
  or rolling window, from a subscription's anchor, per organisation with a cap
  per member (:mod:`._counting`).

Underneath, every entitlement is a limit: ``True`` is no limit and ``False`` is a
limit of 0, so a boolean feature can be metered and a limited feature can be
required.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from typing import Literal

from ._config import ConfigError
from ._config import parse_thresholds
from ._counting import Rule
from ._counting import RuleError
from ._counting import parse_rule
from ._periods import PERIODS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "FEATURE_NAME",
    "PERIODS",
    "Catalogue",
    "Entitlement",
    "Plan",
    "UnknownFeature",
    "check_feature_name",
]

#: The names the database accepts for a feature (the feature_usage check constraint).
FEATURE_NAME = re.compile(r"[a-z][a-z0-9_.:-]{0,63}")

#: How a bare integer counts: per user, per calendar month in UTC.
DEFAULT_RULE = Rule()

Kind = Literal["boolean", "limit"]

_PLANS = "FEATURE_GATES_PLANS"
_TIERS = "FEATURE_GATES_TIERS"


class UnknownFeature(ConfigError):
    """A gate names a feature that no plan defines, or a tier that is not a plan."""


def check_feature_name(name: object, hint: str = "") -> str:
    """``name`` if the database accepts it as a feature name, else ValueError saying
    what a name is (and ``hint``: what to do about it)."""
    if isinstance(name, str) and FEATURE_NAME.fullmatch(name):
        return name
    raise ValueError(
        f"{name!r} is not a valid feature name (1 to 64 characters of a-z, 0-9, _ . : - "
        f"starting with a letter){'; ' + hint if hint else ''}"
    )


@dataclass(frozen=True)
class Entitlement:
    """What one plan grants of one feature.

    :param limit: uses allowed per period (or window); ``None`` is no limit, ``0``
        not entitled. For an organisation pool, the pool's.
    :param period: the period the limit counts over (``"month"``, ``"day"``...);
        None for a rolling window.
    :param rule: how the feature counts on this plan (:class:`~._counting.Rule`).
    :param per_user: for an organisation pool, the most one member may use of it.
    :param alerts: the alert thresholds, fractions of the limit in force at each
        level, ascending (the feature's ``alerts``, else FEATURE_GATES_ALERT_THRESHOLDS).
    :param rollover: what of a period's unused allowance becomes a grant expiring at
        the end of the next period: ``False`` nothing, ``True`` all of it, an int at
        most that much.
    """

    feature: str
    kind: Kind
    limit: int | None
    period: str | None = "month"
    rule: Rule = DEFAULT_RULE
    per_user: int | None = None
    alerts: tuple[Decimal, ...] = ()
    rollover: int | bool = False

    @property
    def granted(self) -> bool:
        return self.limit != 0

    @property
    def window(self) -> str | None:
        """The rolling window the limit counts over (``"5h"``), None for a period."""
        return None if self.rule.window is None else self.rule.window.label

    @property
    def metered(self) -> bool:
        """Whether a use must be counted to be judged: some level has a limit."""
        return self.limit is not None or self.per_user is not None


@dataclass(frozen=True)
class Plan:
    """A plan: its name, its rank in the tier order (0 is lowest) and its entitlements."""

    name: str
    rank: int
    entitlements: Mapping[str, Entitlement]


class Catalogue:
    """Every plan, in tier order, and every feature the plans name."""

    def __init__(self, plans: Mapping[str, Plan], kinds: Mapping[str, Kind]) -> None:
        self.plans = dict(plans)
        #: Plan names from the lowest tier to the highest.
        self.tiers = tuple(sorted(self.plans, key=lambda name: self.plans[name].rank))
        #: Every feature named by some plan, with its kind.
        self.kinds = dict(kinds)
        self._missing = {name: Entitlement(name, kind, 0) for name, kind in self.kinds.items()}

    def __contains__(self, feature: object) -> bool:
        return feature in self.kinds

    def entitlement(self, plan: str, feature: str) -> Entitlement:
        """What ``plan`` grants of ``feature``; not entitled when the plan is unknown."""
        found = self.plans.get(plan)
        if found is not None:
            entitlement = found.entitlements.get(feature)
            if entitlement is not None:
                return entitlement
        missing = self._missing.get(feature)
        if missing is None:
            raise UnknownFeature(
                f"feature {feature!r} is not defined in any plan; define it under {_PLANS}"
            )
        return missing

    def rank(self, plan: str) -> int | None:
        """The rank of ``plan`` (0 is the lowest tier), None when it is not a plan."""
        found = self.plans.get(plan)
        return None if found is None else found.rank

    def require_tier(self, tier: str) -> int:
        rank = self.rank(tier)
        if rank is None:
            raise UnknownFeature(
                f"tier {tier!r} is not a plan; the plans are {', '.join(self.tiers) or 'none'}"
            )
        return rank

    @classmethod
    def parse(
        cls,
        source: Mapping[str, Any] | Path | None,
        tiers: tuple[str, ...] | None = None,
        alerts: tuple[Decimal, ...] = (),
    ) -> Catalogue:
        """Validate a catalogue given as a mapping or as the path of a TOML or JSON file.

        ``alerts`` are the thresholds of every limited feature that declares none
        (FEATURE_GATES_ALERT_THRESHOLDS).

        Raises :class:`~feature_gates.config.ConfigError` naming the plan and the
        feature at fault.
        """
        raw = _read(source) if isinstance(source, Path) else (source or {})
        order = _tier_order(raw, tiers)
        kinds: dict[str, Kind] = {}
        parsed: dict[str, dict[str, tuple[bool, Entitlement]]] = {}
        for plan, features in raw.items():
            if not isinstance(features, Mapping):
                raise ConfigError(
                    f"{_PLANS}: plan {plan!r} must map feature names to True, False, a limit "
                    f"or None, got {type(features).__name__}"
                )
            parsed[plan] = {}
            for feature, value in features.items():
                try:
                    check_feature_name(feature)
                except ValueError as exc:
                    raise ConfigError(f"{_PLANS}: plan {plan!r}: {exc}") from None
                is_limit, entitlement = _entitlement(plan, feature, value, alerts)
                parsed[plan][feature] = (is_limit, entitlement)
                if is_limit or feature not in kinds:
                    kinds[feature] = "limit" if is_limit else "boolean"
        plans = {
            name: Plan(
                name,
                order[name],
                {
                    feature: replace(entitlement, kind=kinds[feature])
                    for feature, (_, entitlement) in parsed[name].items()
                },
            )
            for name in raw
        }
        return cls(plans, kinds)


def _read(path: Path) -> Mapping[str, Any]:
    name = str(path)
    if path.suffix not in (".toml", ".json"):
        raise ConfigError(f"{_PLANS}: {name!r} must be a .toml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{_PLANS}: cannot read {name!r}: {exc.strerror}") from None
    try:
        data: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except ValueError as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise ConfigError(f"{_PLANS}: {name!r} is not valid {path.suffix[1:]}: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_PLANS}: {name!r} must hold a mapping of plans")
    return data


def _tier_order(raw: Mapping[str, Any], tiers: tuple[str, ...] | None) -> dict[str, int]:
    for plan in raw:
        if not isinstance(plan, str) or not plan:
            raise ConfigError(f"{_PLANS}: plan names must be non-empty strings, got {plan!r}")
    if tiers is None:
        return {plan: rank for rank, plan in enumerate(raw)}
    for plan in tiers:
        if plan not in raw:
            raise ConfigError(f"{_TIERS}: {plan!r} is not a plan of {_PLANS}")
        if tiers.count(plan) > 1:
            raise ConfigError(f"{_TIERS}: {plan!r} is listed twice")
    for plan in raw:
        if plan not in tiers:
            raise ConfigError(
                f"{_TIERS}: plan {plan!r} is missing; list every plan from the lowest tier "
                "to the highest"
            )
    return {plan: rank for rank, plan in enumerate(tiers)}


def _entitlement(
    plan: str, feature: str, value: Any, alerts: tuple[Decimal, ...]
) -> tuple[bool, Entitlement]:
    """(is a limit, what it grants) for one value of the catalogue; ``alerts`` are
    the thresholds of a limit that declares none."""
    where = f"{_PLANS}: plan {plan!r}, feature {feature!r}"
    if isinstance(value, bool):
        return False, Entitlement(feature, "boolean", None if value else 0)
    if not isinstance(value, Mapping):
        return True, Entitlement(feature, "limit", _limit(where, value), alerts=alerts)
    try:
        rule, per_user = parse_rule(value)
    except RuleError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    limit = _limit(where, value["limit"])
    if "alerts" in value:
        alerts = parse_thresholds(value["alerts"], f"{where}: alerts")
    rollover = _rollover(where, value.get("rollover", False), rule, limit)
    return True, Entitlement(feature, "limit", limit, rule.period, rule, per_user, alerts, rollover)


def _rollover(where: str, value: Any, rule: Rule, limit: int | None) -> int | bool:
    """A feature's ``rollover``: False, True (no cap) or a cap of 1 or more."""
    if value is False:
        return False
    if value is not True and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(
            f"{where}: rollover is true (all the unused allowance) or the most carried "
            f"over (an integer of 1 or more), got {value!r}"
        )
    if rule.period is None or rule.period == "lifetime" or limit is None:
        raise ConfigError(
            f"{where}: rollover carries a period's unused allowance into the next one; "
            "it needs a limit counted by period (not a rolling window, a lifetime or no limit)"
        )
    return value


def _limit(where: str, value: Any) -> int | None:
    if value is None or value == "unlimited":
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"{where}: expected True, False, a limit (an integer, 0 for not entitled) "
            f"or None (unlimited), got {value!r}"
        )
    if value < 0:
        raise ConfigError(f"{where}: a limit must be zero or more, got {value}")
    if value >= 2**63 - 1:
        raise ConfigError(
            f"{where}: a limit must be below {2**63 - 1} (counts are bigints), got {value}; "
            "write None or 'unlimited' for no limit"
        )
    return value
