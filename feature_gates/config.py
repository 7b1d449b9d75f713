"""Typed settings, parsed and validated from an application's ``FEATURE_GATES_*`` keys.

Every key has a default and is documented in docs/configuration.md. A wrong value
stops ``init_app`` with a :class:`ConfigError` that names the key.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields
from pathlib import Path
from typing import Any
from typing import Literal

from .migrate import MigrationError
from .migrate import MigrationSettings
from .migrate.settings import MIGRATION_KEYS

__all__ = ["PREFIX", "ConfigError", "Settings"]

PREFIX = "FEATURE_GATES_"

FailMode = Literal["open", "closed"]
TrackingMode = Literal["background", "sync", "off"]


class ConfigError(ValueError):
    """A ``FEATURE_GATES_*`` setting has a value the extension cannot use."""


def _key(name: str) -> str:
    return PREFIX + name.upper()


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def parse(key: str, value: Any) -> str:
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise ConfigError(f"{key} must be one of {allowed}, got {value!r}")
        return str(value)

    return parse


def _boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in (
        "1",
        "true",
        "yes",
        "on",
        "0",
        "false",
        "no",
        "off",
    ):
        return value.lower() in ("1", "true", "yes", "on")
    raise ConfigError(f"{key} must be True or False, got {value!r}")


def _number(minimum: float, *, integer: bool = False) -> Callable[[str, Any], Any]:
    def parse(key: str, value: Any) -> Any:
        kind = "an integer" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float) if not integer else int):
            raise ConfigError(f"{key} must be {kind}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        if value < minimum:
            raise ConfigError(f"{key} must be at least {minimum}, got {value!r}")
        return value

    return parse


def _optional_text(key: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string, got {type(value).__name__}")
    return value


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _names(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value or ()):
        raise ConfigError(f"{key} must be a list of names, got {value!r}")
    return tuple(value)


def _optional_names(key: str, value: Any) -> tuple[str, ...] | None:
    return None if value is None else _names(key, value)


def _plans(key: str, value: Any) -> Mapping[str, Any] | Path | None:
    if value is None or isinstance(value, Mapping):
        return value
    if isinstance(value, (str, Path)):
        return Path(value)
    raise ConfigError(
        f"{key} must be a mapping of plans or the path of a TOML or JSON file, got {value!r}"
    )


def _limit_status(key: str, value: Any) -> int:
    if value not in (402, 403, 429):
        raise ConfigError(f"{key} must be 402, 403 or 429, got {value!r}")
    return int(value)


def _log_level(key: str, value: Any) -> int:
    if isinstance(value, str) and isinstance(logging.getLevelName(value.upper()), int):
        return int(logging.getLevelName(value.upper()))
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ConfigError(f"{key} must be a logging level such as 'INFO' or 'DEBUG', got {value!r}")


def _statement_timeout(key: str, value: Any) -> float:
    # PostgreSQL's statement_timeout is an int of milliseconds.
    seconds = _number(0)(key, value)
    if seconds > 2_147_483.647:
        raise ConfigError(f"{key} must be a number of seconds up to 2147483.647, got {value!r}")
    return float(seconds)


def _option(default: Any, parse: Callable[[str, Any], Any]) -> Any:
    return field(default=default, metadata={"parse": parse})


@dataclass(frozen=True)
class Settings:
    """The extension's settings. Attribute ``x`` comes from key ``FEATURE_GATES_X``."""

    #: Gates check and count; False turns every gate into a pass-through
    #: (read again on every request, so tests and operators can flip it).
    enabled: bool = _option(True, _boolean)
    #: The PostgreSQL URL of the application's database.
    database_url: str | None = _option(None, _optional_text)
    #: The URL the migration commands use instead, when the application's goes
    #: through a connection pooler in transaction mode (read by the CLI only).
    migration_database_url: str | None = _option(None, _optional_text)
    #: The plan catalogue: a mapping, or the path of a TOML or JSON file.
    plans: Mapping[str, Any] | Path | None = _option(None, _plans)
    #: Plans from lowest to highest tier; the order of ``plans`` when not set.
    tiers: tuple[str, ...] | None = _option(None, _optional_names)
    #: Connections the pool keeps open, and at most.
    pool_min_size: int = _option(1, _number(0, integer=True))
    pool_max_size: int = _option(10, _number(1, integer=True))
    #: Seconds a metered check waits for a database connection before the fail
    #: mode applies.
    db_timeout: float = _option(0.25, _number(0.001))
    #: Seconds after which the server cancels a statement of the extension's pool
    #: (0: the server's own setting); a cancelled metered check follows the fail mode.
    statement_timeout: float = _option(5.0, _statement_timeout)
    #: What a metered check does when the database is unreachable.
    fail_mode: FailMode = _option("open", _choice("open", "closed"))
    #: Status of a limit denial: 429 (default), 402 or 403.
    limit_status: int = _option(429, _limit_status)
    #: Add limit, remaining and reset headers to allowed limited responses.
    headers_enabled: bool = _option(False, _boolean)
    #: How tracked usage is written: ``background``, ``sync`` or ``off``.
    tracking: TrackingMode = _option("background", _choice("background", "sync", "off"))
    #: Seconds between background writes.
    flush_interval: float = _option(1.0, _number(0.001))
    #: A background write starts early when this many keys are pending.
    flush_max_keys: int = _option(1000, _number(1, integer=True))
    #: Pending keys kept at most while the database is away; beyond, new keys are
    #: dropped and reported.
    max_pending_keys: int = _option(100_000, _number(1, integer=True))
    #: The longest wait, in seconds, between two background write attempts while
    #: the database is unreachable (the wait doubles from the flush interval).
    flush_max_backoff: float = _option(30.0, _number(0.001))
    #: Seconds the last write waits for the database when the application is
    #: closed or the interpreter exits; what is still pending after is lost.
    shutdown_flush_timeout: float = _option(10.0, _number(0))
    #: Level of the ``feature_denied`` log record written for every denial.
    denial_log_level: int = _option(logging.INFO, _log_level)
    #: Query mapping an email to a user id (one %s parameter).
    user_lookup_sql: str = _option("SELECT id FROM users WHERE email = %s", _text)
    #: Query mapping user ids to their plans, for ``usage --near-limit``: one %s
    #: parameter (an array of ids), rows of (user id, plan name).
    user_plan_sql: str = _option("SELECT id, plan FROM users WHERE id = ANY(%s)", _text)
    #: Seconds an email -> user id answer is cached.
    user_cache_ttl: float = _option(300.0, _number(0))
    #: Name of the command group on ``app.cli``; empty to not register it.
    command_name: str = _option("feature-gates", _optional_text)

    #: The migration runner's settings (schema, user id type, sets, folders, lock
    #: timeouts, batch size): their keys are read by MigrationSettings.from_config.
    migration: MigrationSettings = field(default_factory=MigrationSettings)

    @property
    def schema(self) -> str:
        """The schema holding feature_usage and its functions."""
        return self.migration.schema

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Read and validate every ``FEATURE_GATES_*`` key of ``config``."""
        known = {_key(f.name) for f in fields(cls) if "parse" in f.metadata} | set(MIGRATION_KEYS)
        unknown = sorted(k for k in config if k.startswith(PREFIX) and k not in known)
        if unknown:
            raise ConfigError(
                f"unknown setting {unknown[0]}; the known FEATURE_GATES_* keys are "
                "listed in docs/configuration.md"
            )
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = _key(f.name)
            if key in config and "parse" in f.metadata:
                values[f.name] = f.metadata["parse"](key, config[key])
        try:
            values["migration"] = MigrationSettings.from_config(config)
        except MigrationError as exc:
            raise ConfigError(str(exc)) from exc
        settings = cls(**values)
        if settings.pool_min_size > settings.pool_max_size:
            raise ConfigError(
                f"FEATURE_GATES_POOL_MIN_SIZE ({settings.pool_min_size}) is larger than "
                f"FEATURE_GATES_POOL_MAX_SIZE ({settings.pool_max_size})"
            )
        return settings
