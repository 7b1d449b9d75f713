"""The Django adapter's tests run in the same session as the Flask ones.

Django is configured here, when pytest collects this folder, with
``settings.configure()`` from gated_site.settings: in this process only, so the
subprocesses of other tests (pytester's, gunicorn's) never see a Django
settings module, and the Flask tests are untouched. pytest-django's fixtures
work from then on. Each test's gates get a fresh migrated database through the
plugin's ``feature_gates_django`` fixture.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    import django
    from django.conf import settings

    if settings.configured:
        return
    from gated_site import settings as project

    settings.configure(**{name: getattr(project, name) for name in dir(project) if name.isupper()})
    django.setup()


def caller(user: int | None = None, plan: str | None = None) -> dict[str, str]:
    """The request headers naming a caller (Django's test client takes them as keywords)."""
    found = {}
    if user is not None:
        found["X-User"] = str(user)
    if plan is not None:
        found["X-Plan"] = plan
    return {"headers": found}  # type: ignore[dict-item]
