"""A small blog in the shape of Flask's tutorial app (flaskr): an application factory,
SQLite for its own data, HTML forms under ``login_required``, and feature-gates
limiting a free user to three posts a month (docs/tutorial-flaskr.md)."""

from __future__ import annotations

import os

from flask import Flask


def create_app(test_config=None):
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        SECRET_KEY="dev",
        DATABASE=os.path.join(app.instance_path, "blog.sqlite"),
        # feature-gates keeps its counts in PostgreSQL (None: gates without metering).
        FEATURE_GATES_DATABASE_URL=os.environ.get("DATABASE_URL"),
        FEATURE_GATES_PLANS="plans.toml",
    )
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
    else:
        app.config.update(test_config)
    os.makedirs(app.instance_path, exist_ok=True)

    from . import auth
    from . import db
    from . import posts
    from .gates import gates

    db.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(posts.bp)
    app.add_url_rule("/", endpoint="index")
    gates.init_app(app)
    return app
