"""A small application with every kind of gate, shared by the gate tests.

The caller is named by two request headers: ``X-User`` (the user id) and
``X-Plan``; without ``X-User`` the caller is anonymous.
"""

from __future__ import annotations

import pytest
from flask import Blueprint
from flask import Flask
from flask import abort
from flask import request

from feature_gates import FeatureGates
from feature_gates import Subject
from feature_gates import feature_limit
from feature_gates import feature_required
from feature_gates import feature_tier

PLANS = {
    "free": {"can_export_pdf": False, "chat_messages_monthly": 3, "itinerary_destinations": 5},
    "pro": {"can_export_pdf": True, "chat_messages_monthly": 10, "itinerary_destinations": 50},
    "enterprise": {
        "can_export_pdf": True,
        "chat_messages_monthly": None,
        "itinerary_destinations": None,
    },
}

#: Destinations per itinerary: the stock a stock limit reads.
DESTINATIONS = {1: 4, 2: 0}

bp = Blueprint("trips", __name__, url_prefix="/trips")


@bp.get("/pdf")
@feature_required("can_export_pdf")
def trip_pdf():
    return {"pdf": "trip"}


def usage(db, user_id=7, feature="chat_messages_monthly"):
    """The count of ``feature`` by ``user_id`` in every period, through connection ``db``."""
    row = db.execute(
        "SELECT coalesce(sum(usage_count), 0) FROM feature_usage "
        "WHERE user_id = %s AND feature = %s",
        (user_id, feature),
    ).fetchone()
    return row[0]


def headers(user=None, plan=None):
    """The request headers naming a caller."""
    found = {}
    if user is not None:
        found["X-User"] = str(user)
    if plan is not None:
        found["X-Plan"] = plan
    return found


def create_app(database_url, gates=None, **config):
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        FEATURE_GATES_DATABASE_URL=database_url,
        FEATURE_GATES_PLANS=PLANS,
        FEATURE_GATES_TRACKING="sync",
    )
    app.config.update(config)
    gates = gates or FeatureGates()

    @gates.subject_loader
    def load():
        user = request.headers.get("X-User")
        if user is None:
            return None
        return Subject(user_id=int(user), plan=request.headers.get("X-Plan", "free"))

    @app.route("/pdf", methods=["GET", "POST", "OPTIONS"])
    @feature_required("can_export_pdf")
    def export_pdf():
        return {"pdf": "ok"}

    @app.post("/messages")
    @feature_limit("chat_messages_monthly")
    def post_message():
        status = request.args.get("status", type=int, default=201)
        if request.args.get("raise"):
            raise RuntimeError("the view failed")
        return {"sent": True}, status

    @app.post("/itineraries/<int:itinerary_id>/destinations")
    @feature_limit(
        "itinerary_destinations",
        usage_getter=lambda itinerary_id: DESTINATIONS[itinerary_id],
        cost=lambda itinerary_id: len(request.get_json()["waypoints"]),
    )
    def add_destinations(itinerary_id):
        return {"itinerary": itinerary_id}, 201

    @app.get("/intel")
    @feature_tier("pro")
    def analyst_intelligence():
        return {"intel": "ok"}

    @app.post("/reports")
    @feature_tier("pro", feature="reports")
    @feature_limit("chat_messages_monthly", cost=2)
    def stacked_report():
        return {"report": "ok"}

    @app.post("/async-messages")
    @feature_limit("chat_messages_monthly")
    async def post_message_async():
        return {"sent": "async"}

    @app.get("/missing")
    @feature_required("can_export_pdf")
    def missing():
        abort(404)

    app.register_blueprint(bp)
    gates.init_app(app)
    return app


def close(app):
    app.extensions["feature_gates"].close()


@pytest.fixture
def make_app(feature_gates_database_url):
    """Builds the sample application with extra config; closes what it opened."""
    made = []

    def make(database_url=feature_gates_database_url, **config):
        made.append(create_app(database_url, **config))
        return made[-1]

    yield make
    for app in made:
        close(app)


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def gates(app):
    return app.extensions["feature_gates"].extension
