"""``settings.FEATURE_GATES``: one dict, read by the core's settings parser.

Its keys are those of the Flask settings without ``FEATURE_GATES_`` (``DATABASE_URL``,
``PLANS``, ``FAIL_MODE``...), plus Django's own: ``SUBJECT_LOADER`` and ``ON_DENIED``,
dotted paths of callables. A key that means nothing in Django is refused, and every
error names the key as it is written in settings.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..core import PREFIX
from ..core import Catalogue
from ..core import ConfigError
from ..core import Settings

__all__ = ["SETTING", "DjangoSettings", "import_callable", "in_django_words", "key_name", "read"]

#: The name of the dict in Django's settings.
SETTING = "FEATURE_GATES"

#: The keys of the dict that are Django's own (not core settings).
SUBJECT_LOADER = "SUBJECT_LOADER"
ON_DENIED = "ON_DENIED"

_FLASK_KEY = re.compile(PREFIX + r"([A-Z][A-Z0-9_]*)")

#: Said by the system checks and at the first gated request when DATABASE_URL is missing.
NO_DATABASE = (
    'FEATURE_GATES["DATABASE_URL"] is not set: feature and tier gates decide from the '
    "plans, usage is not recorded, and a metered limit or a usage read raises "
    "ConfigError until it is set"
)

#: Core keys that mean nothing in a Django project, and why.
REFUSED: Mapping[str, str] = {
    "COMMAND_NAME": "the commands run as 'python manage.py feature_gates'; leave it out",
}


def key_name(key: str) -> str:
    """How a key is written in settings.py: ``FEATURE_GATES["PLANS"]``."""
    return f'{SETTING}["{key}"]'


@dataclass(frozen=True)
class DjangoSettings:
    """The parsed ``FEATURE_GATES`` dict."""

    core: Settings
    catalogue: Catalogue
    #: Dotted path of ``load_subject(request) -> Subject | None``.
    subject_loader: str | None
    #: Dotted path of ``on_denied(request, denial) -> HttpResponse | None``.
    on_denied: str | None
    #: No DATABASE_URL and tracking not switched off: usage goes unrecorded.
    unrecorded: bool = False


def read(value: Any, *, base_dir: Any = None) -> DjangoSettings:
    """Parse ``settings.FEATURE_GATES``. Raises :class:`ConfigError` naming the key.

    :param base_dir: where a relative ``PLANS`` path is read from (``settings.BASE_DIR``);
        the working directory when None.

    Without ``DATABASE_URL`` the settings still load, as the Flask extension starts
    without one: tracking is off, feature and tier gates decide from the plans, and a
    metered limit or a usage read raises :class:`ConfigError` naming the key.
    """
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{SETTING} must be a dict of settings, like "
            f'{{"DATABASE_URL": ..., "PLANS": ..., "SUBJECT_LOADER": ...}}, got {value!r}'
        )
    mapping = dict(value)
    loader = _dotted_path(mapping.pop(SUBJECT_LOADER, None), SUBJECT_LOADER)
    on_denied = _dotted_path(mapping.pop(ON_DENIED, None), ON_DENIED)
    for key, why in REFUSED.items():
        if key in mapping:
            raise ConfigError(f"{key_name(key)} means nothing in Django: {why}")
    known = set(Settings.keys(prefix=""))
    unknown = sorted(str(k) for k in mapping if k not in known)
    if unknown:
        raise ConfigError(
            f"{key_name(unknown[0])} is no setting of feature-gates; the keys are those of "
            "docs/configuration.md without their prefix, and SUBJECT_LOADER and ON_DENIED"
        )
    try:
        # The Flask names, so that the core's messages name the key; then said
        # the way settings.py writes it.
        settings = Settings.from_mapping({PREFIX + k: v for k, v in mapping.items()})
    except ConfigError as exc:
        raise in_django_words(exc) from None
    unrecorded = settings.database_url is None and settings.tracking != "off"
    if settings.database_url is None:
        settings = replace(settings, tracking="off")
    plans = settings.plans
    if isinstance(plans, Path) and not plans.is_absolute() and base_dir is not None:
        plans = Path(base_dir) / plans
    try:
        catalogue = Catalogue.parse(plans, settings.tiers)
    except ConfigError as exc:
        raise in_django_words(exc) from None
    return DjangoSettings(settings, catalogue, loader, on_denied, unrecorded)


def in_django_words(error: ConfigError) -> ConfigError:
    """``error`` naming its keys as settings.py writes them: ``FEATURE_GATES_PLANS``
    becomes ``FEATURE_GATES["PLANS"]``."""
    message = _FLASK_KEY.sub(lambda found: key_name(found[1]), str(error))
    return type(error)(message)


def _dotted_path(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or "." not in value:
        raise ConfigError(
            f"{key_name(key)} must be the dotted path of a function, like "
            f'"myapp.gates.{key.lower()}", got {value!r}'
        )
    return value


def import_callable(path: str, key: str) -> Callable[..., Any]:
    """The callable at ``path``; a :class:`ConfigError` naming ``key`` when there is none."""
    from django.utils.module_loading import import_string

    try:
        found = import_string(path)
    except ImportError as exc:
        raise ConfigError(f"{key_name(key)}: cannot import {path!r} ({exc})") from None
    if not callable(found):
        raise ConfigError(f"{key_name(key)}: {path!r} is not callable")
    return found  # type: ignore[no-any-return]
