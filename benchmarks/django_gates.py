"""What a gate costs in Django, beside the same gates in Flask, in one run.

    python -m benchmarks.django_gates [--quick | --smoke] [--database-url URL] [--json PATH]

Prints one JSON object. Six views are called in turns (blocks of calls, the order
rotating), in one process: an ungated view, the same under ``feature_required`` and
under a metered ``feature_limit``, once in a Django project (through Django's test
client: the whole handler, its middleware and URL resolution) and once in a Flask
application (through Flask's test client), both on the same database. Tracking is
on (background), as in production.

``django_gate_overhead_us_p50`` / ``flask_gate_overhead_us_p50``
    Median latency ``feature_required`` adds to the framework's ungated view.
``django_metered_limit_us_p50`` / ``flask_metered_limit_us_p50``
    The same for a metered ``feature_limit``: its one round trip plus Python.
``django_vs_flask_gate_overhead`` / ``django_vs_flask_metered_limit``
    Django's figure divided by Flask's.
``django_plain_us_p50`` / ``flask_plain_us_p50``
    The ungated views themselves: what each framework costs around a gate.

Without ``--database-url`` a private durable PostgreSQL is started; either way the
measurements run in a fresh migrated database of their own.
"""

from __future__ import annotations

from typing import Any

from feature_gates.migrate import MigrationSettings
from feature_gates.testing import DatabaseFactory

from . import harness
from .gates import LIMIT
from .gates import SIZES
from .gates import make_app

#: The Django project's URL configuration is this module's ``urlpatterns``.
urlpatterns: list[Any] = []

#: Each side of the comparison: (framework, view).
SIDES = [
    (framework, view)
    for framework in ("django", "flask")
    for view in ("plain", "required", "metered")
]


def load_subject(request: Any) -> Any:
    from feature_gates.django import Subject

    return Subject(1, "pro")


def configure_django(database_url: str) -> None:
    """A minimal Django project in this process: no database of its own, the gates on
    ``database_url``, three views."""
    import django
    from django.conf import settings
    from django.http import HttpRequest
    from django.http import HttpResponse
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    from feature_gates.django import feature_limit
    from feature_gates.django import feature_required

    settings.configure(
        SECRET_KEY="benchmark",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["feature_gates.django"],
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
        USE_TZ=True,
        FEATURE_GATES={
            "DATABASE_URL": database_url,
            "PLANS": {"pro": {"export": True, "messages": LIMIT}},
            "SUBJECT_LOADER": f"{__name__}.load_subject",
        },
    )
    django.setup()

    def plain(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    @feature_required("export")
    def required(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    @feature_limit("messages")
    def metered(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    urlpatterns[:] = [
        path(name, csrf_exempt(view))
        for name, view in (("plain", plain), ("required", required), ("metered", metered))
    ]


def run(server_url: str | None = None, *, scale: harness.Scale = "full") -> dict[str, Any]:
    """Run the measurement and return the figures (what ``main`` prints)."""
    sizes = SIZES[scale]
    with harness.server(server_url) as url:
        databases = DatabaseFactory(url)
        try:
            return _run(databases.create(MigrationSettings()), sizes)
        finally:
            databases.close()


def _run(database_url: str, sizes: dict[str, int]) -> dict[str, Any]:
    from django.test import Client

    from feature_gates.django import gates

    configure_django(database_url)
    django_client = Client()
    app, flask_gates = make_app(database_url)
    flask_client = app.test_client()

    def side(framework: str, view: str) -> Any:
        if framework == "django":
            return lambda: django_client.post(f"/{view}").close()
        return lambda: flask_client.post(f"/{view}").close()

    try:
        times = harness.alternate(
            {f"{framework}_{view}": side(framework, view) for framework, view in SIDES},
            blocks=sizes["blocks"],
            per_block=sizes["per_block"],
            warmup=sizes["warmup"],
        )
    finally:
        gates.close()
        flask_gates.close(app)
    median = {name: harness.p50(values) for name, values in times.items()}
    figures: dict[str, Any] = {"calls_per_view": len(times["django_plain"])}
    for framework in ("django", "flask"):
        plain = median[f"{framework}_plain"]
        figures[f"{framework}_plain_us_p50"] = round(plain, 1)
        figures[f"{framework}_gate_overhead_us_p50"] = round(
            median[f"{framework}_required"] - plain, 1
        )
        figures[f"{framework}_metered_limit_us_p50"] = round(
            median[f"{framework}_metered"] - plain, 1
        )
    for figure in ("gate_overhead", "metered_limit"):
        figures[f"django_vs_flask_{figure}"] = harness.ratio(
            figures[f"django_{figure}_us_p50"], figures[f"flask_{figure}_us_p50"]
        )
    return figures


def main(argv: list[str] | None = None) -> None:
    harness.cli("python -m benchmarks.django_gates", __doc__, run, argv)


if __name__ == "__main__":
    main()
