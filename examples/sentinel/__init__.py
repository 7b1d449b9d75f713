"""Sentinel: a travel-safety assistant, and the example app of feature-gates.

Run it with ``python -m examples.sentinel`` (or ``flask --app examples.sentinel
run``); serve it with ``gunicorn 'examples.sentinel:create_app()'`` (see
docs/deployment.md). Every paid feature is an endpoint gated by a feature-gates
decorator in api.py; the plans are in plans.toml; docs/example.md walks through it.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import migrate

from . import api
from . import auth
from . import csrf
from . import demo
from . import problems
from . import usage_views
from . import webhooks
from .accounts import Accounts
from .database import DEFAULT_DATA_DIR
from .database import MIGRATION_FOLDER
from .database import ProcessPool
from .database import start_embedded
from .itineraries import ItineraryManager
from .pdf import DEFAULT_FONT
from .state import Sentinel
from .state import gates
from .threads import ThreadManager

__all__ = ["Sentinel", "create_app"]

logger = logging.getLogger("sentinel")

HERE = Path(__file__).resolve().parent

DEFAULTS: dict[str, Any] = {
    # feature-gates: the plans, and the migrations `migrate` applies, in order:
    # Sentinel's own tables first, then the package's core and counters sets.
    "FEATURE_GATES_PLANS": HERE / "plans.toml",
    "FEATURE_GATES_MIGRATION_SETS": ["sentinel", "core", "counters"],
    "FEATURE_GATES_MIGRATION_FOLDERS": {"sentinel": MIGRATION_FOLDER},
    # The admin dashboard's "closest to their limits" reads each user's plan
    # with this query (it is the default, spelled out here for the reader).
    "FEATURE_GATES_USER_PLAN_SQL": "SELECT id, plan FROM users WHERE id = ANY(%s)",
    # Usage alerts at 80 % and 100 % of every limit (plans.toml may say otherwise
    # per feature), delivered as signals and, when FEATURE_GATES_WEBHOOK_URL is set
    # (`python -m examples.sentinel` points it at Sentinel's own /hooks/feature-gates),
    # as webhooks signed with this secret. A demo's secret: set your own.
    "FEATURE_GATES_ALERT_THRESHOLDS": [0.8, 1.0],
    "FEATURE_GATES_WEBHOOK_SECRET": os.environ.get(
        "FEATURE_GATES_WEBHOOK_SECRET", "sentinel-demo-webhook-secret"
    ),
    # Allowed limited responses say how much is left (X-Feature-* headers).
    "FEATURE_GATES_HEADERS_ENABLED": True,
    # Requests larger than this are refused with 413 before they are read.
    "MAX_CONTENT_LENGTH": 64 * 1024,
    # Sentinel's own settings.
    "SENTINEL_DATA_DIR": DEFAULT_DATA_DIR,  # the embedded server's data folder
    "SENTINEL_THREAD_MESSAGE_LIMIT": 500,  # messages one thread can hold
    "SENTINEL_POOL_MAX_SIZE": 10,  # connections of the app's own pool, per process
    "SENTINEL_PDF_FONT": DEFAULT_FONT,  # a TrueType font for PDF exports (pdf.py)
    # Two more, whose default depends on the database (see create_app):
    # SENTINEL_AUTO_MIGRATE, apply pending migrations when the app is made, and
    # SENTINEL_DEMO_DATA, create the demo accounts in an empty database then.
}

#: Read from the environment when the app is made (``config`` still wins).
ENVIRONMENT_KEYS = (
    "FEATURE_GATES_DATABASE_URL",
    "FEATURE_GATES_MIGRATION_DATABASE_URL",
    "SENTINEL_DATA_DIR",
)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Make a Sentinel app. Opens no connection to a database named by a URL: each
    process opens its own pool on first use (fork-safe under gunicorn ``--preload``).

    The database is ``FEATURE_GATES_DATABASE_URL`` (``config``, else the
    environment), else ``DATABASE_URL`` from the environment, else an embedded
    PostgreSQL in ``SENTINEL_DATA_DIR`` (examples/sentinel/.pgdata by default).
    ``FEATURE_GATES_MIGRATION_DATABASE_URL`` (the same way) is the direct URL
    ``flask --app examples.sentinel feature-gates migrate`` uses when the other goes
    through a transaction pooler.

    On a database named by a URL, migrating is a deploy step, run once before the
    workers start; ``SENTINEL_AUTO_MIGRATE`` and ``SENTINEL_DEMO_DATA`` (both off
    there by default) migrate and create the demo accounts as the app is made,
    which only one process at a time may do (``python -m examples.sentinel``). On
    the embedded database, which lives in this process, both are on by default.
    """
    app = Flask(__name__)
    app.config.from_mapping(DEFAULTS)
    app.config.from_mapping({key: os.environ[key] for key in ENVIRONMENT_KEYS if key in os.environ})
    app.config.from_mapping(config or {})

    server = None
    url = app.config.get("FEATURE_GATES_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not url:
        server, url = start_embedded(app.config["SENTINEL_DATA_DIR"])
    app.config["FEATURE_GATES_DATABASE_URL"] = url
    app.config.setdefault("SENTINEL_AUTO_MIGRATE", server is not None)
    app.config.setdefault("SENTINEL_DEMO_DATA", server is not None)

    if app.config["SENTINEL_AUTO_MIGRATE"]:
        migration_url = app.config.get("FEATURE_GATES_MIGRATION_DATABASE_URL") or url
        applied = migrate(migration_url, MigrationSettings.from_config(app.config))
        for migration in applied:
            logger.info("applied migration %s", migration.label)

    pool = ProcessPool(
        url, max_size=app.config["SENTINEL_POOL_MAX_SIZE"], application_name="sentinel"
    )
    sentinel = Sentinel(pool, Accounts(pool), ThreadManager(pool), ItineraryManager(pool), server)
    app.extensions["sentinel"] = sentinel
    atexit.register(sentinel.close)

    problems.register(app)
    app.after_request(csrf.store)
    app.teardown_request(auth.forget_request)
    app.url_map.converters["id"] = api.IdConverter
    app.register_blueprint(api.bp)
    app.register_blueprint(usage_views.bp)
    app.register_blueprint(webhooks.bp)
    # After the blueprints: init_app checks that every gated view names a feature
    # of the plans (a typo fails here, at start, not on the first request).
    gates.init_app(app)
    sentinel.features = usage_views.gated_features(app)

    if app.config["SENTINEL_DEMO_DATA"] and sentinel.accounts.count_users() == 0:
        with app.app_context():
            demo.seed(sentinel.accounts, sentinel.thread_manager, sentinel.itinerary_manager, gates)
        logger.info("created the demo accounts")
    return app
