"""Typed settings, parsed and validated once from a mapping of keys.

Every setting has a default, one parser and a line in docs/configuration.md. Flask
reads them from ``app.config`` with the ``FEATURE_GATES_`` prefix; another adapter
may pass its own mapping and prefix. A wrong value raises :class:`ConfigError`
naming the key. The migration runner reads its keys with the same parsers
(:func:`read_settings`).
"""

from __future__ import annotations

import logging
import math
import re
import sys
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields
from decimal import Decimal
from pathlib import Path
from typing import Any
from typing import Literal
from zoneinfo import ZoneInfo
from zoneinfo import ZoneInfoNotFoundError

from ._messages import MESSAGE_FIELDS
from ._messages import MESSAGES
from ._messages import Translate
from ._messages import template_fields

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # pragma: no cover - Python 3.10
    from importlib.abc import Traversable

__all__ = ["PREFIX", "USER_ID_TYPES", "ConfigError", "Settings", "parse_setting", "read_settings"]

#: The prefix of every key in a Flask application's configuration.
PREFIX = "FEATURE_GATES_"

FailMode = Literal["open", "closed"]
TrackingMode = Literal["background", "sync", "off"]
UserIdType = Literal["bigint", "uuid"]
USER_ID_TYPES: tuple[UserIdType, ...] = ("bigint", "uuid")
#: A folder of migration files: a path, or a folder inside an installed package.
Folder = Traversable | Path

_SET_NAME = re.compile(r"[a-z][a-z0-9_]*")


class ConfigError(ValueError):
    """A setting has a value feature-gates cannot use; the message names the key."""


Parser = Callable[[str, Any], Any]


def _choice(*choices: str) -> Parser:
    def parse(key: str, value: Any) -> str:
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise ConfigError(f"{key} must be one of {allowed}, got {value!r}")
        return str(value)

    return parse


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise ConfigError(f"{key} must be True or False, got {value!r}")


def _number(
    minimum: float, *, integer: bool = False, maximum: float | None = None, unit: str = ""
) -> Parser:
    if integer:
        kind = "a positive integer" if minimum >= 1 else "an integer of 0 or more"
    else:
        kind = "a positive number" if minimum > 0 else "a number of 0 or more"
    kind += unit + ("" if maximum is None else f" up to {maximum}")

    def parse(key: str, value: Any) -> Any:
        number = isinstance(value, int if integer else (int, float))
        if (
            isinstance(value, bool)
            or not number
            or not math.isfinite(value)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            raise ConfigError(f"{key} must be {kind}, got {value!r}")
        return value

    return parse


def _seconds(minimum: float, maximum: float | None = None) -> Parser:
    number = _number(minimum, maximum=maximum, unit=" of seconds")
    return lambda key, value: float(number(key, value))


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


def _optional_names(key: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(v, str) for v in value or ()):
        raise ConfigError(f"{key} must be a list of names, got {value!r}")
    return tuple(value)


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


def _connect_options(key: str, value: Any) -> Mapping[str, str | int]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, (str, int)) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        raise ConfigError(
            f"{key} must map libpq connection parameters to strings or integers, "
            f'like {{"sslmode": "require"}}, got {value!r}'
        )
    # The runtime's own choices: a pooler must be able to run any transaction on
    # any server connection, and connections are in autocommit.
    taken = sorted(
        set(value) & {"autocommit", "prepare_threshold", "options", "dbname", "application_name"}
    )
    if taken:
        raise ConfigError(f"{key}: {taken[0]!r} is set by feature-gates itself; leave it out")
    return dict(value)


def _set_names(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(f'{key} must be a list of set names, like ["core"], got {value!r}')
    for name in value:
        if not isinstance(name, str) or not _SET_NAME.fullmatch(name):
            raise ConfigError(
                f"{key}: {name!r} is not a set name (lowercase letters, digits and _)"
            )
    return tuple(value)


def _folders(key: str, value: Any) -> Mapping[str, Folder] | None:
    if not value:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(
            f'{key} must map set names to folders, like {{"app": "migrations/app"}}, got {value!r}'
        )
    return {k: v if isinstance(v, (Traversable, Path)) else Path(v) for k, v in value.items()}


def _schema(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a schema name, got {value!r}")
    return value


def _template(where: str, template: Any) -> str:
    if not isinstance(template, str) or not template.strip():
        raise ConfigError(f"{where} must be a non-empty template string, got {template!r}")
    try:
        unknown = sorted(template_fields(template) - set(MESSAGE_FIELDS))
    except ValueError as exc:  # a lone brace
        raise ConfigError(f"{where}: {template!r} is not a template ({exc})") from None
    if unknown:
        raise ConfigError(
            f"{where}: {{{unknown[0]}}} is not a field of a message; the fields are "
            f"{', '.join(MESSAGE_FIELDS)}"
        )
    return template


def _templates(where: str, templates: Mapping[Any, Any]) -> dict[str, str]:
    checked = {}
    for key, template in templates.items():
        if key not in MESSAGES:
            raise ConfigError(
                f"{where}: {key!r} is not a message key; the keys are {', '.join(MESSAGES)}"
            )
        checked[key] = _template(f"{where}[{key!r}]", template)
    return checked


def _denial_messages(key: str, value: Any) -> Mapping[str, Any]:
    """Templates by message key, and by feature: a feature's key mapping to its own
    templates by message key."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{key} must map message keys (and features) to templates, like "
            f'{{"limit": "No {{name}} left this month."}}, got {value!r}'
        )
    parsed: dict[str, Any] = {}
    for name, entry in value.items():
        if isinstance(entry, Mapping):
            parsed[name] = _templates(f"{key}[{name!r}]", entry)
        else:
            parsed.update(_templates(key, {name: entry}))
    return parsed


def _display_names(key: str, value: Any) -> Mapping[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in value.items()
    ):
        raise ConfigError(
            f"{key} must map feature and plan keys to the names people read, like "
            f'{{"can_export_pdf": "PDF export"}}, got {value!r}'
        )
    return dict(value)


def _translate(key: str, value: Any) -> Translate | None:
    if value is not None and not callable(value):
        raise ConfigError(
            f"{key} must be a function taking a text and returning its translation "
            f"(gettext), or None, got {value!r}"
        )
    return value  # type: ignore[no-any-return]


def _timezone(key: str, value: Any) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(
            f"{key} must be an IANA time zone name, like 'UTC' or 'Europe/Paris', got {value!r}"
        ) from None
    return str(value)


def _thresholds(key: str, value: Any) -> tuple[Decimal, ...]:
    """Alert thresholds: fractions of a limit, 0 < t <= 1, returned ascending."""
    return parse_thresholds(value, key)


def parse_thresholds(value: Any, where: str) -> tuple[Decimal, ...]:
    """``value`` (a list of fractions of a limit) as exact, ascending thresholds.

    :raises ConfigError: naming ``where`` (the setting, or the plan and feature).
    """
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigError(
            f"{where} must be a list of fractions of the limit, like [0.8, 1.0], got {value!r}"
        )
    found = set()
    for t in value:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1:
            raise ConfigError(
                f"{where}: a threshold is a fraction of the limit above 0 and at most 1 "
                f"(1.0 is the limit reached), got {t!r}"
            )
        # Exact as written: 0.8 of a limit of 10 is 8, not 8.000000000000000444.
        found.add(Decimal(repr(float(t))).normalize())
    return tuple(sorted(found))


def _url(key: str, value: Any) -> str | None:
    text = _optional_text(key, value)
    if text is not None and not text.startswith(("http://", "https://")):
        raise ConfigError(f"{key} must be an http:// or https:// URL, got {text!r}")
    return text


def _schedule(key: str, value: Any) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(
            f"{key} must be a non-empty list of seconds between attempts, like [10, 60, 600], "
            f"got {value!r}"
        )
    return tuple(_seconds(0)(key, v) for v in value)


#: Seconds before each retry of a webhook: about 12 hours of attempts in all.
DEFAULT_WEBHOOK_RETRIES = (10.0, 30.0, 60.0, 300.0, 900.0, 1800.0) + (3600.0,) * 11


def _option(default: Any, parse: Parser) -> Any:
    if isinstance(default, dict):
        return field(default_factory=default.copy, metadata={"parse": parse})
    return field(default=default, metadata={"parse": parse})


@dataclass(frozen=True)
class Settings:
    """feature-gates' settings. Attribute ``x`` is read from key ``FEATURE_GATES_X``."""

    #: Gates check and count; False turns every gate into a pass-through.
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
    #: Seconds the usage writer and the reads wait for a pooled connection.
    pool_timeout: float = _option(5.0, _seconds(0.001))
    #: Extra libpq connection parameters (sslmode, connect_timeout, ...).
    connect_options: Mapping[str, str | int] = _option({}, _connect_options)
    #: The application_name of every connection the package opens.
    application_name: str = _option("feature-gates", _text)
    #: Seconds a metered check waits for a pooled connection.
    db_timeout: float = _option(0.25, _seconds(0.001))
    #: Seconds after which the server cancels a statement of the package (0: the
    #: server's own setting). PostgreSQL's statement_timeout is an int of milliseconds.
    statement_timeout: float = _option(5.0, _seconds(0, 2_147_483.647))
    #: What a metered check does when the database cannot be reached.
    fail_mode: FailMode = _option("open", _choice("open", "closed"))
    #: Status of a limit denial: 429 (default), 402 or 403.
    limit_status: int = _option(429, _limit_status)
    #: The zone of the calendar periods a plan counts in (days, weeks, months, years
    #: of the mapping form), for a subject without a time zone of its own.
    timezone: str = _option("UTC", _timezone)
    #: Seconds a hold (gates.reserve) keeps its capacity when it is not settled.
    hold_ttl: float = _option(300.0, _seconds(0.001))
    #: Add limit, remaining and reset headers to allowed limited responses.
    headers_enabled: bool = _option(False, _boolean)
    #: How tracked usage is written: ``background``, ``sync`` or ``off``.
    tracking: TrackingMode = _option("background", _choice("background", "sync", "off"))
    #: Seconds between background writes.
    flush_interval: float = _option(1.0, _seconds(0.001))
    #: The most keys one statement of the background writer carries.
    flush_max_keys: int = _option(1000, _number(1, integer=True))
    #: Keys kept at most while writes fail; beyond, new keys are dropped and reported.
    #: A background write starts early when half of them are pending.
    max_pending_keys: int = _option(100_000, _number(1, integer=True))
    #: The longest wait, in seconds, between two write attempts while writes fail.
    flush_max_backoff: float = _option(30.0, _seconds(0.001))
    #: Seconds the last write waits for the database when the application closes.
    shutdown_flush_timeout: float = _option(10.0, _seconds(0))
    #: The end-user message templates of denials, by message key and by feature.
    denial_messages: Mapping[str, Any] = _option({}, _denial_messages)
    #: The names people read for feature and plan keys in those messages.
    display_names: Mapping[str, str] = _option({}, _display_names)
    #: A gettext-style callable translating each template and display name.
    translate: Translate | None = _option(None, _translate)
    #: Level of the ``feature_denied`` log record written for every denial.
    denial_log_level: int = _option(logging.INFO, _log_level)
    #: Query mapping an email to a user id (one %s parameter).
    user_lookup_sql: str = _option("SELECT id FROM users WHERE email = %s", _text)
    #: Query mapping user ids (one %s parameter, an array) to (user id, plan) rows.
    user_plan_sql: str = _option("SELECT id, plan FROM users WHERE id = ANY(%s)", _text)
    #: Seconds an email -> user id answer is cached.
    user_cache_ttl: float = _option(300.0, _seconds(0))
    #: Name of the command group on ``app.cli``; empty to not register it.
    command_name: str | None = _option("feature-gates", _optional_text)
    #: Alert thresholds (fractions of the limit) of every limited feature that
    #: does not declare its own ``alerts``; none by default.
    alert_thresholds: tuple[Decimal, ...] = _option((), _thresholds)
    #: Seconds between two looks of the alert sender for alerts to deliver.
    alerts_interval: float = _option(1.0, _seconds(0.01))
    #: Where each alert is POSTed as a signed JSON event; None for signals only.
    webhook_url: str | None = _option(None, _url)
    #: The secret that signs the webhooks (HMAC-SHA256); needed with a URL.
    webhook_secret: str | None = _option(None, _optional_text)
    #: Seconds a webhook request may take.
    webhook_timeout: float = _option(5.0, _seconds(0.01))
    #: Seconds to wait before each retry of a failed delivery; after the last,
    #: the alert is dead.
    webhook_retries: tuple[float, ...] = _option(DEFAULT_WEBHOOK_RETRIES, _schedule)

    # -- read by the migration runner too ------------------------------------------------

    #: The schema holding feature_usage and its functions.
    schema: str = _option("public", _schema)
    #: The type of user ids: ``bigint`` or ``uuid``; fixed by the first migrate.
    user_id_type: UserIdType = _option("bigint", _choice(*USER_ID_TYPES))
    #: The migration sets, in order.
    migration_sets: tuple[str, ...] = _option(("core",), _set_names)
    #: Folders of an application's own sets, by set name.
    migration_folders: Mapping[str, Folder] | None = _option(None, _folders)
    #: Seconds a migration step waits for a table lock before it retries.
    migration_lock_timeout: float = _option(0.2, _seconds(0.001))
    #: Retries of a step that hit the lock timeout.
    migration_lock_retries: int = _option(12, _number(0, integer=True))
    #: Seconds to wait for another runner's migration lock.
    migration_lock_wait: float = _option(300.0, _seconds(0.001))
    #: Rows per transaction of a batched backfill.
    migration_batch_size: int = _option(1000, _number(1, integer=True))
    #: Seconds a migration step run in a transaction may take (0: no limit).
    migration_statement_timeout: float = _option(60.0, _seconds(0))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, prefix: str = PREFIX) -> Settings:
        """Read and validate every key of ``mapping`` that starts with ``prefix``.

        A key with the prefix that is no setting is refused (a typo); with an empty
        prefix, every key of the mapping must be a setting.
        """
        settings = cls(**read_settings(mapping, prefix=prefix))
        if settings.webhook_url is not None and not settings.webhook_secret:
            raise ConfigError(
                f"{prefix}WEBHOOK_URL is set and {prefix}WEBHOOK_SECRET is not: set the "
                "secret the receiver verifies the signatures with"
            )
        if settings.pool_min_size > settings.pool_max_size:
            raise ConfigError(
                f"{prefix}POOL_MIN_SIZE ({settings.pool_min_size}) is larger than "
                f"{prefix}POOL_MAX_SIZE ({settings.pool_max_size})"
            )
        return settings

    @classmethod
    def keys(cls, prefix: str = PREFIX) -> list[str]:
        """Every key, in the order of the fields."""
        return [prefix + f.name.upper() for f in fields(cls)]


_PARSERS: dict[str, Parser] = {f.name: f.metadata["parse"] for f in fields(Settings)}


def parse_setting(name: str, value: Any, *, prefix: str = PREFIX) -> Any:
    """``value`` of the setting ``name`` (a :class:`Settings` field), parsed and checked."""
    return _PARSERS[name](prefix + name.upper(), value)


def read_settings(
    mapping: Mapping[str, Any], *, prefix: str = PREFIX, only: Collection[str] | None = None
) -> dict[str, Any]:
    """The parsed value of every setting present in ``mapping``, by field name.

    With ``only`` (field names), just those are read and other keys are left alone;
    without it, a key with the prefix that is no setting raises :class:`ConfigError`.
    """
    known = {prefix + name.upper(): name for name in _PARSERS}
    if only is None:
        unknown = sorted(k for k in mapping if k.startswith(prefix) and k not in known)
        if unknown:
            raise ConfigError(
                f"unknown setting {unknown[0]}; the known {prefix}* keys are listed in "
                "docs/configuration.md"
            )
    return {
        name: _PARSERS[name](key, mapping[key])
        for key, name in known.items()
        if key in mapping and (only is None or name in only)
    }
