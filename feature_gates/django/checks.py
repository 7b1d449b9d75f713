"""System checks: ``settings.FEATURE_GATES`` and the gates of the URLconf's views.

Run by ``manage.py check``, ``runserver`` and ``migrate`` at start-up, so a wrong
setting fails there, naming the key, not on the first gated request. Nothing
connects to the database.
"""

from __future__ import annotations

from typing import Any

from django.core import checks

from ..core import ConfigError
from ..core import validate_gate
from ._runtime import django_settings
from ._runtime import url_gates
from ._settings import NO_DATABASE
from ._settings import ON_DENIED
from ._settings import SUBJECT_LOADER
from ._settings import import_callable
from ._settings import in_django_words

__all__ = ["check_settings"]


@checks.register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``feature_gates.E001``: the settings; ``E002``: a callback; ``E003``: a view's
    gate; ``W001``: no database, so nothing is recorded."""
    try:
        parsed = django_settings()
    except ConfigError as exc:
        return [checks.Error(str(exc), id="feature_gates.E001")]
    errors: list[checks.CheckMessage] = []
    for key, path in ((SUBJECT_LOADER, parsed.subject_loader), (ON_DENIED, parsed.on_denied)):
        if path is None and key == SUBJECT_LOADER:
            errors.append(
                checks.Error(
                    f'FEATURE_GATES["{SUBJECT_LOADER}"] is not set',
                    hint="set it to the dotted path of a function taking the request and "
                    "returning Subject(user_id=..., plan=...) or None",
                    id="feature_gates.E002",
                )
            )
        elif path is not None:
            try:
                import_callable(path, key)
            except ConfigError as exc:
                errors.append(checks.Error(str(exc), id="feature_gates.E002"))
    if parsed.unrecorded:
        errors.append(checks.Warning(NO_DATABASE, id="feature_gates.W001"))
    for route, gate in url_gates():
        try:
            validate_gate(gate, parsed.catalogue)
        except ConfigError as exc:
            message = str(in_django_words(exc))
            errors.append(checks.Error(f"view at {route!r}: {message}", id="feature_gates.E003"))
    return errors
