"""The Django adapter's tests run in the same session as the Flask ones.

Django is configured here once the whole suite is collected (so pytest-django,
which reorders a configured project's tests, leaves the order alone), with
``settings.configure()`` from gated_site.settings: in this process only, so the
subprocesses of other tests (pytester's, gunicorn's) never see a Django
settings module. pytest-django's fixtures work from then on. Each test's gates
get a fresh migrated database through the plugin's ``feature_gates_django``
fixture.
"""

from __future__ import annotations

import pytest


def pytest_collection_finish(session: pytest.Session) -> None:
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


@pytest.fixture(scope="session")
def django_db_modify_db_settings(feature_gates_server_url: str) -> None:
    """Django's test database on the session's PostgreSQL server (named test_gated_site)."""
    from django.conf import settings
    from django.db import connections
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(feature_gates_server_url)
    settings.DATABASES["default"].update(
        ENGINE="django.db.backends.postgresql",
        NAME="gated_site",
        USER=params.get("user", ""),
        PASSWORD=params.get("password", ""),
        HOST=params.get("host", ""),
        PORT=params.get("port", ""),
    )
    # The next use makes a connection of the new settings, not SQLite's.
    connections.close_all()
    del connections["default"]
