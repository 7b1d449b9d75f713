"""Sentinel's JSON API. Each paid feature is one endpoint under one gate.

Read the decorators from the top down: the route, then who is calling
(``login_required``; the downloads the usage page links to also take a signed-in
browser's cookie), then the feature gate, then the view. The gate runs before
the view and counts the call when the view succeeds; a metered gate consumes up
front and gives the uses back when the view fails (an exception or a status of
400 or more), so a 404 or a 400 never costs anything.

======================  =============================================  =========
feature                 endpoint                                       gate
======================  =============================================  =========
chat_messages_monthly   POST /threads/<id>/messages                    metered
itinerary_destinations  POST /itineraries, PATCH /itineraries/<id>,    stock
                        POST /itineraries/<id>/destinations
can_export_pdf          GET /threads/<id>/export.pdf,                  required
                        GET /itineraries/<id>/export.pdf
route_analysis          POST /itineraries/<id>/route-analysis          metered
route_legs              POST /itineraries/<id>/leg-analysis            metered, held
briefing_package        POST /itineraries/<id>/briefing                metered
monthly_briefing        GET /briefings/monthly                         required
custom_reports          POST /reports                                  metered
safe_zones              GET /itineraries/<id>/safe-zones               required
alerts_export           GET /itineraries/<id>/alerts.csv               required
team_invite             POST /team/invites                             metered
api_access_tokens       POST /tokens                                   stock
analyst_intelligence    GET /intel                                     tier pro
saved_searches          POST /searches                                 stock
======================  =============================================  =========

``route_legs`` costs what is known only at the end: the legs whose distance could
be computed. The gate holds one per leg of the itinerary before the view runs and
the view commits the legs it computed (``current_hold().commit(n)``). ``POST
/billing/top-up`` sells credits for it (a demo: no payment), added once per
``Idempotency-Key``.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any
from typing import TypeVar

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import g
from flask import jsonify
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from werkzeug.routing import IntegerConverter
from werkzeug.routing import Map

from feature_gates import FeatureLimitExceeded
from feature_gates import Subject
from feature_gates import current_hold
from feature_gates import feature_limit
from feature_gates import feature_required
from feature_gates import feature_tier

from . import intel
from .accounts import HoldingLimitReached
from .auth import current_user
from .auth import load_user
from .auth import login_required
from .holdings import held
from .itineraries import DestinationLimitReached
from .itineraries import Itinerary
from .pdf import PdfDocument
from .problems import InvalidInput
from .problems import Problem
from .problems import items
from .problems import obj
from .problems import read_json
from .problems import text
from .state import accounts
from .state import gates
from .state import itinerary_manager
from .state import sentinel
from .state import thread_manager
from .threads import Thread
from .threads import ThreadFull
from .threads import ThreadNotFound

__all__ = ["IdConverter", "bp"]

bp = Blueprint("api", __name__)

T = TypeVar("T")

MAX_MESSAGES_PER_REQUEST = 50
MAX_MESSAGE_LENGTH = 4000
MAX_WAYPOINTS_PER_REQUEST = 100
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}$")


class IdConverter(IntegerConverter):
    """A row id in a URL: a positive integer that fits PostgreSQL's bigint.

    A larger number matches no route (404) instead of failing in the database.
    """

    def __init__(self, map: Map) -> None:
        super().__init__(map, min=1, max=2**63 - 1)


@gates.subject_loader
def subject() -> Subject | None:
    """Who is asking, for the gates: the token's user on their plan, in their
    organisation, with their subscription's start and time zone."""
    user = load_user()
    return None if user is None else user.subject()


def not_found(what: str, ident: int) -> Problem:
    # The same answer whether it does not exist or belongs to someone else:
    # a 403 would tell a stranger that the id exists.
    return Problem(404, "Not found", f"{what} {ident} does not exist")


def owned_thread(thread_id: int) -> Thread:
    thread = thread_manager.get_thread(thread_id, current_user().id)
    if thread is None:
        raise not_found("thread", thread_id)
    return thread


def owned_itinerary(itinerary_id: int) -> Itinerary:
    itinerary = itinerary_manager.get_itinerary(itinerary_id, current_user().id)
    if itinerary is None:
        raise not_found("itinerary", itinerary_id)
    return itinerary


def destinations_count(itinerary_id: int) -> int:
    """The stock an itinerary_destinations gate checks: read from the counter column,
    once per request (the gate's usage_getter and its cost both ask)."""

    def read() -> int:
        count = itinerary_manager.destinations_count(itinerary_id, current_user().id)
        if count is None:
            raise not_found("itinerary", itinerary_id)
        return count

    return _cached(f"sentinel_destinations_{itinerary_id}", read)


def plan_limit(feature: str) -> int | None:
    """The caller's limit of a stock ``feature`` (None: unlimited), from the plans.

    Given ``used``, ``check`` reads nothing from the database; the count itself
    does not matter here, only the plan's limit.
    """
    return gates.check(feature, used=0).limit


# -- request bodies -----------------------------------------------------------------


def _cached(name: str, parse: Callable[[], T]) -> T:
    """Compute once per request: the gate's cost and the view both need the body."""
    if name not in g:
        setattr(g, name, parse())
    value: T = getattr(g, name)
    return value


def messages_in_body() -> list[dict[str, str]]:
    def parse() -> list[dict[str, str]]:
        body = read_json()
        messages = []
        for index, item in enumerate(items(body, "messages", max_items=MAX_MESSAGES_PER_REQUEST)):
            field = f"messages[{index}]"
            if not isinstance(item, dict):
                raise InvalidInput(f"'{field}' must be an object with 'content'", field)
            content = text(item, "content", max_length=MAX_MESSAGE_LENGTH)
            role = item.get("role", "user")
            if role not in ("user", "assistant"):
                raise InvalidInput(f"'{field}.role' must be 'user' or 'assistant'", field)
            messages.append({"role": role, "content": content})
        return messages

    return _cached("sentinel_messages", parse)


def waypoint(item: Any, field: str) -> dict[str, Any]:
    """One destination: a name, optionally a country code and coordinates."""
    if not isinstance(item, dict):
        raise InvalidInput(f"'{field}' must be an object with a 'name'", field)
    unknown = sorted(set(item) - {"name", "country", "lat", "lon", "arrive", "depart"})
    if unknown:
        raise InvalidInput(f"'{field}' has unknown members: {', '.join(unknown)}", field)
    result: dict[str, Any] = {"name": text(item, "name", max_length=120)}
    country = item.get("country")
    if country is not None:
        if not isinstance(country, str) or not re.fullmatch(r"[A-Za-z]{2}", country):
            raise InvalidInput(f"'{field}.country' must be a two-letter country code", field)
        result["country"] = country.upper()
    for name, bound in (("lat", 90), ("lon", 180)):
        value = item.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) > bound:
            raise InvalidInput(f"'{field}.{name}' must be a number within ±{bound}", field)
        result[name] = value
    for name in ("arrive", "depart"):
        value = item.get(name)
        if value is not None:
            result[name] = _date(value, f"{field}.{name}")
    return result


def _date(value: Any, field: str) -> str:
    try:
        return datetime.strptime(value, "%Y-%m-%d").date().isoformat()
    except (TypeError, ValueError):
        raise InvalidInput(f"'{field}' must be a date like 2025-06-30", field) from None


def waypoints_of(value: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise InvalidInput(f"'{field}' must be a list of destinations", field)
    if len(value) > MAX_WAYPOINTS_PER_REQUEST:
        raise InvalidInput(f"'{field}' takes at most {MAX_WAYPOINTS_PER_REQUEST} items", field)
    return [waypoint(item, f"{field}[{i}]") for i, item in enumerate(value)]


def itinerary_data(value: dict[str, Any], field: str = "data") -> dict[str, Any]:
    """An itinerary's data: a title and waypoints, plus any other notes the client keeps."""
    data = dict(value)
    title = data.get("title")
    if title is not None and (not isinstance(title, str) or len(title) > 200):
        raise InvalidInput(f"'{field}.title' must be a string of at most 200 characters", field)
    data["waypoints"] = waypoints_of(data.get("waypoints", []), f"{field}.waypoints")
    return data


def alerts_config(body: dict[str, Any]) -> dict[str, Any] | None:
    config = obj(body, "alerts_config")
    if config is None:
        return None
    if "min_level" in config:
        # null too is refused: the alerts export compares levels with it.
        level = config["min_level"]
        if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 4:
            raise InvalidInput(
                "'alerts_config.min_level' must be an integer from 1 to 4", "alerts_config"
            )
    return config


def new_itinerary_body() -> tuple[dict[str, Any], dict[str, Any] | None]:
    def parse() -> tuple[dict[str, Any], dict[str, Any] | None]:
        body = read_json()
        return itinerary_data(obj(body, "data", required=True) or {}), alerts_config(body)

    return _cached("sentinel_new_itinerary", parse)


def itinerary_patch() -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    def parse() -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        body = read_json()
        data = obj(body, "data")
        config = alerts_config(body)
        if data is None and config is None:
            raise InvalidInput("send 'data', 'alerts_config' or both")
        return (itinerary_data(data) if data is not None else None), config

    return _cached("sentinel_itinerary_patch", parse)


def waypoints_in_body() -> list[dict[str, Any]]:
    def parse() -> list[dict[str, Any]]:
        body = read_json()
        items(body, "waypoints", max_items=MAX_WAYPOINTS_PER_REQUEST)
        return waypoints_of(body["waypoints"], "waypoints")

    return _cached("sentinel_waypoints", parse)


def added_by_patch(itinerary_id: int) -> int:
    """Destinations a PATCH adds: the new count minus the current one, never below 0."""
    data, _ = itinerary_patch()
    if data is None:
        return 0
    return max(0, len(data["waypoints"]) - destinations_count(itinerary_id))


# -- service ------------------------------------------------------------------------


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """200 when this worker and its database answer (through the app's own pool, as
    every request needs it); 503 otherwise. The gates' view of the database and the
    uses waiting to be written are shown, not judged: the gates fail open or closed
    on their own, and a worker is no less healthy for it."""
    try:
        with sentinel().pool.connection(timeout=2) as conn:
            row = conn.execute("SELECT current_setting('server_version')").fetchone()
    except Exception as exc:  # any failure to reach the database means "not healthy"
        return Problem(
            503, "Service unavailable", f"the database does not answer: {exc}"
        ).get_response()
    away_since = gates.storage_stats().unavailable_since
    return jsonify(
        status="ok",
        database="up",
        postgres=row[0] if row else None,
        gates_database="up" if away_since is None else f"away since {away_since.isoformat()}",
        usage_pending=gates.tracking_stats().pending,
    )


@bp.get("/")
def index() -> ResponseReturnValue:
    """What this API offers, for a first look."""
    return jsonify(
        name="Sentinel",
        docs="docs/example.md",
        endpoints=sorted(
            f"{' '.join(sorted((rule.methods or set()) - {'HEAD', 'OPTIONS'}))} {rule.rule}"
            for rule in current_app.url_map.iter_rules()
            if rule.endpoint != "static"
        ),
    )


@bp.get("/me")
@login_required()
def me() -> ResponseReturnValue:
    user = current_user()
    entitlements = gates.entitlements()
    # A stock limit counts what the user holds now, which feature_usage (this
    # month's uses) does not know: count it and let the gates judge that count.
    for feature, count in held(user.id).items():
        entitlements[feature] = gates.check(feature, used=count)
    return jsonify(
        user=user.to_json(),
        features={
            name: {"allowed": d.allowed, "limit": d.limit, "used": d.used, "remaining": d.remaining}
            for name, d in sorted(entitlements.items())
        },
    )


# -- threads and messages ------------------------------------------------------------


@bp.get("/threads")
@login_required()
def list_threads() -> ResponseReturnValue:
    return jsonify(threads=[t.to_json() for t in thread_manager.list_threads(current_user().id)])


@bp.post("/threads")
@login_required()
def create_thread() -> ResponseReturnValue:
    title = text(read_json(), "title", max_length=200)
    assert title is not None
    thread = thread_manager.create_thread(current_user().id, title)
    return jsonify(thread.to_json()), 201, {"Location": url_for(".get_thread", thread_id=thread.id)}


@bp.get("/threads/<id:thread_id>")
@login_required()
def get_thread(thread_id: int) -> ResponseReturnValue:
    thread = owned_thread(thread_id)
    messages = thread_manager.list_messages(thread_id, current_user().id)
    return jsonify(thread=thread.to_json(), messages=[m.to_json() for m in messages])


@bp.post("/threads/<id:thread_id>/messages")
@login_required()
@feature_limit("chat_messages_monthly", cost=lambda thread_id: len(messages_in_body()))
def post_messages(thread_id: int) -> ResponseReturnValue:
    messages = messages_in_body()
    limit = current_app.config["SENTINEL_THREAD_MESSAGE_LIMIT"]
    try:
        thread, added = thread_manager.add_messages(
            thread_id, messages, limit, user_id=current_user().id
        )
    except ThreadNotFound:
        raise not_found("thread", thread_id) from None
    except ThreadFull as full:
        raise Problem(
            409,
            "Thread full",
            f"this thread holds {full.count} of at most {full.limit} messages; start a new thread",
            limit=full.limit,
            used=full.count,
        ) from None
    return jsonify(thread=thread.to_json(), added=[m.to_json() for m in added]), 201


@bp.get("/threads/<id:thread_id>/export.pdf")
@login_required(allow_cookie=True)
@feature_required("can_export_pdf")
def export_thread(thread_id: int) -> ResponseReturnValue:
    thread = owned_thread(thread_id)
    doc = pdf_document(
        thread.title, f"Sentinel conversation · {thread.thread_messages_count} messages"
    )
    for message in thread_manager.list_messages(thread_id, current_user().id):
        doc.heading(f"{message.role.title()} · {message.created_at:%Y-%m-%d %H:%M} UTC")
        doc.paragraph(message.content)
    return pdf_response(doc, f"thread-{thread_id}.pdf")


def pdf_document(title: str, subtitle: str) -> PdfDocument:
    """A PDF export in the font of ``SENTINEL_PDF_FONT``."""
    return PdfDocument(title, subtitle, font=Path(current_app.config["SENTINEL_PDF_FONT"]))


def pdf_response(doc: PdfDocument, filename: str) -> Response:
    return Response(
        doc.render(),
        mimetype="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# -- itineraries ---------------------------------------------------------------------


@bp.get("/itineraries")
@login_required()
def list_itineraries() -> ResponseReturnValue:
    mine = itinerary_manager.list_itineraries(current_user().id)
    return jsonify(itineraries=[i.to_json() for i in mine])


@bp.post("/itineraries")
@login_required()
@feature_limit(
    "itinerary_destinations",
    usage_getter=lambda: 0,  # a new itinerary has no destinations yet
    cost=lambda: len(new_itinerary_body()[0]["waypoints"]),
)
def create_itinerary() -> ResponseReturnValue:
    data, config = new_itinerary_body()
    itinerary = itinerary_manager.create_itinerary(current_user().id, data, config)
    location = url_for(".get_itinerary", itinerary_id=itinerary.id)
    return jsonify(itinerary.to_json()), 201, {"Location": location}


@bp.get("/itineraries/<id:itinerary_id>")
@login_required()
def get_itinerary(itinerary_id: int) -> ResponseReturnValue:
    return jsonify(owned_itinerary(itinerary_id).to_json())


@bp.patch("/itineraries/<id:itinerary_id>")
@login_required()
@feature_limit("itinerary_destinations", usage_getter=destinations_count, cost=added_by_patch)
def update_itinerary(itinerary_id: int) -> ResponseReturnValue:
    data, config = itinerary_patch()
    limit = plan_limit("itinerary_destinations") if data is not None else None
    try:
        itinerary = itinerary_manager.update_itinerary(
            itinerary_id, current_user().id, data, config, max_destinations=limit
        )
    except DestinationLimitReached as reached:
        raise destination_limit(reached) from None
    if itinerary is None:
        raise not_found("itinerary", itinerary_id)
    return jsonify(itinerary.to_json())


def destination_limit(reached: DestinationLimitReached) -> FeatureLimitExceeded:
    # Reached only when another request added destinations between the gate's
    # check and this write: the database refused, so the limit still holds.
    return limit_reached(
        "itinerary_destinations",
        reached.held,
        reached.count - reached.held,
        reached.limit,
        f"this itinerary would have {reached.count} destinations; your plan allows {reached.limit}",
    )


def limit_reached(
    feature: str, held: int, cost: int, limit: int, detail: str
) -> FeatureLimitExceeded:
    """The gates' own limit denial, for a stock limit the database refused under its
    row lock (another request took the last place after the gate checked)."""
    return FeatureLimitExceeded.for_status(
        current_app.config.get("FEATURE_GATES_LIMIT_STATUS", 429),
        feature=feature,
        subject=gates.current_subject(),
        limit=limit,
        used=held,
        cost=cost,
        reset_at=None,
        detail=detail,
    )


@bp.post("/itineraries/<id:itinerary_id>/destinations")
@login_required()
@feature_limit(
    "itinerary_destinations",
    usage_getter=destinations_count,
    cost=lambda itinerary_id: len(waypoints_in_body()),
)
def add_destinations(itinerary_id: int) -> ResponseReturnValue:
    waypoints = waypoints_in_body()
    limit = plan_limit("itinerary_destinations")
    try:
        itinerary = itinerary_manager.add_destinations(
            itinerary_id, current_user().id, waypoints, limit
        )
    except DestinationLimitReached as reached:
        raise destination_limit(reached) from None
    if itinerary is None:
        raise not_found("itinerary", itinerary_id)
    return jsonify(itinerary.to_json()), 201


@bp.get("/itineraries/<id:itinerary_id>/export.pdf")
@login_required(allow_cookie=True)
@feature_required("can_export_pdf")
def export_itinerary(itinerary_id: int) -> ResponseReturnValue:
    itinerary = owned_itinerary(itinerary_id)
    route = intel.route_analysis(itinerary.waypoints)
    doc = pdf_document(
        itinerary.title,
        f"Sentinel itinerary · {itinerary.destinations_count} destinations · "
        f"{route['total_km']:,.0f} km",
    )
    for number, stop in enumerate(itinerary.waypoints, 1):
        doc.heading(f"{number}. {stop['name']}")
        advisory = intel.advisory(stop.get("country"))
        if advisory:
            doc.field("Advisory", f"level {advisory['level']}: {advisory['advice']}")
            doc.paragraph(advisory["summary"])
            doc.field("Emergency number", advisory["emergency_number"])
        for zone in intel.nearest_safe_zones(stop, 1):
            doc.field("Nearest safe place", f"{zone['name']} ({zone['distance_km']} km)")
    return pdf_response(doc, f"itinerary-{itinerary_id}.pdf")


@bp.post("/itineraries/<id:itinerary_id>/route-analysis")
@login_required()
@feature_limit("route_analysis")
def route_analysis(itinerary_id: int) -> ResponseReturnValue:
    return jsonify(intel.route_analysis(owned_itinerary(itinerary_id).waypoints))


def legs_at_most(itinerary_id: int) -> int:
    """What a leg analysis of the itinerary may cost: one per leg (at least 1)."""
    return max(len(owned_itinerary(itinerary_id).waypoints) - 1, 1)


@bp.post("/itineraries/<id:itinerary_id>/leg-analysis")
@login_required()
@feature_limit("route_legs", reserve=legs_at_most)
def leg_analysis(itinerary_id: int) -> ResponseReturnValue:
    analysis = intel.route_analysis(owned_itinerary(itinerary_id).waypoints)
    computed = sum(1 for leg in analysis["legs"] if leg["distance_km"] is not None)
    current_hold().commit(computed)
    return jsonify({**analysis, "legs_charged": computed})


@bp.post("/billing/top-up")
@login_required()
def top_up() -> ResponseReturnValue:
    """Sell ``legs`` route legs on top of the plan (a demo: nothing is charged), once
    per Idempotency-Key (a retried payment callback adds nothing more)."""
    body = request.get_json(silent=True) or {}
    legs = body.get("legs", 100)
    if isinstance(legs, bool) or not isinstance(legs, int) or not 1 <= legs <= 10_000:
        raise InvalidInput("'legs' must be a whole number from 1 to 10000", "legs")
    key = request.headers.get("Idempotency-Key")
    subject = current_user().subject()
    granted = gates.grant("route_legs", legs, subject=subject, reason="top-up", idempotency_key=key)
    balance = gates.balance("route_legs", subject=subject)
    return jsonify(added=granted.added, legs=legs, available=balance.available), (
        201 if granted.added else 200
    )


@bp.post("/itineraries/<id:itinerary_id>/briefing")
@login_required()
@feature_limit("briefing_package")
def briefing_package(itinerary_id: int) -> ResponseReturnValue:
    itinerary = owned_itinerary(itinerary_id)
    return jsonify(intel.briefing(itinerary.title, itinerary.waypoints, itinerary.alerts_config))


@bp.get("/itineraries/<id:itinerary_id>/safe-zones")
@login_required()
@feature_required("safe_zones")
def safe_zones(itinerary_id: int) -> ResponseReturnValue:
    itinerary = owned_itinerary(itinerary_id)
    return jsonify(
        stops=[
            {"name": stop["name"], "safe_zones": intel.nearest_safe_zones(stop, 2)}
            for stop in itinerary.waypoints
        ]
    )


@bp.get("/itineraries/<id:itinerary_id>/alerts.csv")
@login_required(allow_cookie=True)
@feature_required("alerts_export")
def alerts_export(itinerary_id: int) -> ResponseReturnValue:
    itinerary = owned_itinerary(itinerary_id)
    threshold = itinerary.alerts_config.get("min_level", 2)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["stop", "country", "advisory_level", "advice", "alert", "emergency_number"])
    for stop in itinerary.waypoints:
        advisory = intel.advisory(stop.get("country")) or {}
        level = advisory.get("level")
        writer.writerow(
            [
                stop["name"],
                stop.get("country", ""),
                level or "",
                advisory.get("advice", "unknown"),
                "yes" if level is not None and level >= threshold else "no",
                advisory.get("emergency_number", ""),
            ]
        )
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="alerts-{itinerary_id}.csv"'},
    )


# -- reports and intelligence --------------------------------------------------------


@bp.get("/briefings/monthly")
@login_required()
@feature_required("monthly_briefing")
def monthly_briefing() -> ResponseReturnValue:
    user = current_user()
    mine = itinerary_manager.list_itineraries(user.id)
    codes = sorted({str(w.get("country")) for i in mine for w in i.waypoints if w.get("country")})
    now = datetime.now(timezone.utc)
    return jsonify(
        month=now.strftime("%Y-%m"),
        itineraries=len(mine),
        destinations=sum(i.destinations_count for i in mine),
        threads=len(thread_manager.list_threads(user.id)),
        advisories=[intel.advisory(code) for code in codes if intel.advisory(code)],
        usage=gates.get_user_usage(user.id),
    )


REPORT_KINDS = ("destinations_by_country", "destinations_by_risk", "messages_by_thread")


@bp.post("/reports")
@login_required()
@feature_limit("custom_reports")
def custom_report() -> ResponseReturnValue:
    kind = text(read_json(), "kind", max_length=64)
    if kind not in REPORT_KINDS:
        raise InvalidInput(f"'kind' must be one of {', '.join(REPORT_KINDS)}", "kind")
    user = current_user()
    rows: Counter[str] = Counter()
    if kind == "messages_by_thread":
        for thread in thread_manager.list_threads(user.id):
            rows[thread.title] += thread.thread_messages_count
    else:
        for itinerary in itinerary_manager.list_itineraries(user.id):
            for stop in itinerary.waypoints:
                advisory = intel.advisory(stop.get("country"))
                if kind == "destinations_by_country":
                    rows[advisory["name"] if advisory else "unknown"] += 1
                else:
                    rows[f"level {advisory['level']}" if advisory else "unknown"] += 1
    return jsonify(kind=kind, rows=[{"key": k, "count": n} for k, n in rows.most_common()])


@bp.get("/intel")
@login_required()
@feature_tier("pro", feature="analyst_intelligence")
def analyst_intelligence() -> ResponseReturnValue:
    country = request.args.get("country")
    if country is not None:
        codes = [country]
    else:
        mine = itinerary_manager.list_itineraries(current_user().id)
        codes = [str(w.get("country")) for i in mine for w in i.waypoints if w.get("country")]
    return jsonify(notes=intel.analyst_notes(codes))


# -- team, tokens, searches ----------------------------------------------------------


@bp.get("/team/invites")
@login_required()
def list_invites() -> ResponseReturnValue:
    return jsonify(invites=accounts.list_invites(current_user().id))


@bp.post("/team/invites")
@login_required()
@feature_limit("team_invite")
def invite() -> ResponseReturnValue:
    email = text(read_json(), "email", max_length=254)
    if email is None or not EMAIL.match(email):
        raise InvalidInput("'email' must be an email address", "email")
    invited = accounts.invite(current_user().id, email.lower())
    if invited is None:
        raise Problem(409, "Already invited", f"{email} is already invited")
    return jsonify(invited), 201


@bp.get("/tokens")
@login_required()
def list_tokens() -> ResponseReturnValue:
    return jsonify(tokens=[t.to_json() for t in accounts.list_tokens(current_user().id)])


@bp.post("/tokens")
@login_required()
@feature_limit("api_access_tokens", usage_getter=lambda: accounts.count_tokens(current_user().id))
def create_token() -> ResponseReturnValue:
    name = text(read_json(), "name", max_length=100)
    assert name is not None
    user = current_user()
    limit = plan_limit("api_access_tokens")
    try:
        record, token = accounts.add_token(user.id, name, limit=limit)
    except HoldingLimitReached as reached:
        raise holding_limit("api_access_tokens", reached) from None
    # The token is shown this once; only its digest is stored.
    return jsonify({**record.to_json(), "token": token}), 201


def holding_limit(feature: str, reached: HoldingLimitReached) -> FeatureLimitExceeded:
    return limit_reached(
        feature,
        reached.held,
        1,
        reached.limit,
        f"you hold {reached.held}; your plan allows {reached.limit}",
    )


@bp.delete("/tokens/<id:token_id>")
@login_required()
def delete_token(token_id: int) -> ResponseReturnValue:
    if not accounts.delete_token(token_id, current_user().id):
        raise not_found("token", token_id)
    return "", 204


@bp.get("/searches")
@login_required()
def list_searches() -> ResponseReturnValue:
    return jsonify(searches=[s.to_json() for s in accounts.list_searches(current_user().id)])


@bp.post("/searches")
@login_required()
@feature_limit("saved_searches", usage_getter=lambda: accounts.count_searches(current_user().id))
def save_search() -> ResponseReturnValue:
    body = read_json()
    name = text(body, "name", max_length=100)
    query = text(body, "query", max_length=500)
    assert name is not None and query is not None
    try:
        search = accounts.save_search(
            current_user().id, name, query, limit=plan_limit("saved_searches")
        )
    except HoldingLimitReached as reached:
        raise holding_limit("saved_searches", reached) from None
    return jsonify(search.to_json()), 201


@bp.delete("/searches/<id:search_id>")
@login_required()
def delete_search(search_id: int) -> ResponseReturnValue:
    if not accounts.delete_search(search_id, current_user().id):
        raise not_found("saved search", search_id)
    return "", 204
