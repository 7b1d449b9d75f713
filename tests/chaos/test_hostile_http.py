"""Hostile requests to every endpoint of Sentinel's JSON API, found in its url_map
(a new endpoint is covered without touching this file, or the test says what
it needs to know about it): malformed, oversized and wrongly typed bodies get a
400 or 413 problem+json, never a 500; and one user never reads or changes what
another owns."""

from __future__ import annotations

import json
from contextlib import ExitStack
from typing import Any

import psycopg
import pytest
from chaos_support import iter_rules
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

pytestmark = pytest.mark.chaos

PROBLEM = "application/problem+json"
BODY_METHODS = ("POST", "PATCH", "PUT")
LIMIT = 64 * 1024

#: A body each endpoint takes, for the calls that must succeed (default: {}).
VALID_BODIES: dict[str, Any] = {
    "api.create_thread": {"title": "mine"},
    "api.post_messages": {"messages": [{"content": "hello"}]},
    "api.create_itinerary": {"data": {"title": "trip", "waypoints": [{"name": "Oslo"}]}},
    "api.update_itinerary": {
        "data": {"title": "changed", "waypoints": [{"name": "Lima"}, {"name": "Oslo"}]},
        "alerts_config": {"min_level": 3},
    },
    "api.add_destinations": {"waypoints": [{"name": "Cairo", "country": "EG"}]},
    "api.custom_report": {"kind": "destinations_by_country"},
    "api.invite": {"email": "friend@example.com"},
    "api.create_token": {"name": "ci"},
    "api.save_search": {"name": "kenya", "query": "country:KE"},
}

MALFORMED = [
    b"",
    b"{",
    b"not json",
    b"[1, 2]",
    b'"text"',
    b"null",
    b"42",
    b'{"a": NaN}',
    b'{"a": -Infinity}',
    b'{"a": 1e999}',
    b"[" * 20_000,
    b'{"a": "\\ud800"}',
    b'{"a": "x\\u0000y"}',
    b"\xff\xfe{}",
    b'{"a": 1,}',
]


@pytest.fixture
def sentinel(feature_gates_database_url, make_sentinel):
    # Not named `app`: pytest-flask would push a request context around the test.
    return make_sentinel(
        feature_gates_database_url, SENTINEL_DEMO_DATA=False, FEATURE_GATES_TRACKING="sync"
    )


@pytest.fixture
def owner(sentinel):
    return Caller(sentinel, "owner")


class Caller:
    """A user of a plan with a token, calling through the app's test client."""

    def __init__(self, app, name: str, plan: str = "enterprise") -> None:
        accounts = app.extensions["sentinel"].accounts
        self.user = accounts.create_user(f"{name}@hostile.example", name, plan)
        self.token = f"sntl_hostile_{name}"
        accounts.add_token(self.user.id, "hostile", self.token)
        self.client = app.test_client()

    def call(self, method: str, path: str, body: bytes | None = None, **kwargs: Any):
        headers = {"Authorization": f"Bearer {self.token}"}
        return self.client.open(path, method=method, data=body, headers=headers, **kwargs)

    def make(self) -> dict[str, int]:
        """One of each thing with an id, owned by this caller: the URL arguments."""
        thread = self.json("POST", "/threads", {"title": f"{self.user.name}'s thread"})
        self.json("POST", f"/threads/{thread['id']}/messages", {"messages": [{"content": "x"}]})
        itinerary = self.json("POST", "/itineraries", VALID_BODIES["api.create_itinerary"])
        token = self.json("POST", "/tokens", {"name": "spare"})
        search = self.json("POST", "/searches", VALID_BODIES["api.save_search"])
        return {
            "thread_id": thread["id"],
            "itinerary_id": itinerary["id"],
            "token_id": token["id"],
            "search_id": search["id"],
        }

    def json(self, method: str, path: str, body: Any) -> Any:
        reply = self.call(method, path, json.dumps(body).encode())
        assert reply.status_code < 300, (method, path, reply.get_data())
        return reply.get_json()


def api_routes(app) -> list[tuple[str, str, Any]]:
    """(method, endpoint, rule) of every route of the JSON API."""
    routes = []
    for rule in iter_rules(app):
        if rule.endpoint.startswith("api."):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                routes.append((method, rule.endpoint, rule))
    return routes


def path_of(rule, ids: dict[str, int]) -> str:
    unknown = set(rule.arguments) - set(ids)
    assert not unknown, f"{rule.rule}: teach Caller.make to create {sorted(unknown)}"
    return rule.build({name: ids[name] for name in rule.arguments})[1]


def assert_problem(reply, *statuses: int) -> None:
    assert reply.status_code in statuses, (reply.status_code, reply.get_data()[:300])
    assert reply.mimetype == PROBLEM
    assert reply.get_json()["status"] == reply.status_code


def test_malformed_and_oversized_bodies_get_400_or_413_on_every_endpoint(sentinel, owner):
    ids = owner.make()
    tried = 0
    for method, endpoint, rule in api_routes(sentinel):
        if method not in BODY_METHODS:
            continue
        path = path_of(rule, ids)
        oversized = json.dumps({**VALID_BODIES.get(endpoint, {}), "pad": "x" * LIMIT}).encode()
        assert_problem(owner.call(method, path, oversized), 413)
        takes_body = owner.call(method, path, b"").status_code == 400
        for body in MALFORMED:
            reply = owner.call(method, path, body)
            if takes_body:
                assert_problem(reply, 400)
            else:  # an endpoint that reads no body answers as without one
                assert reply.status_code < 400, (endpoint, body[:40], reply.get_data()[:200])
            tried += 1
    assert tried >= len(MALFORMED) * 10


#: JSON of any shape, for the members the endpoints read and a few they do not.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
members = st.sampled_from(
    ["title", "messages", "content", "role", "data", "waypoints", "name", "country", "lat",
     "lon", "arrive", "alerts_config", "min_level", "email", "query", "kind", "other"]
)  # fmt: skip
bodies = st.dictionaries(members, json_values, max_size=4)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_wrongly_typed_bodies_get_a_4xx_problem_never_a_500(sentinel, owner, data):
    # The owner's things are made once (the fixture outlives the examples).
    ids = owner.ids if hasattr(owner, "ids") else owner.make()
    owner.ids = ids
    routes = [r for r in api_routes(sentinel) if r[0] in BODY_METHODS]
    method, endpoint, rule = data.draw(st.sampled_from(routes))
    body = data.draw(bodies)
    reply = owner.call(method, path_of(rule, ids), json.dumps(body).encode())
    if reply.status_code >= 400:
        assert_problem(reply, 400, 404, 409, 413, 429)


OWNED = """
SELECT (SELECT json_agg(t ORDER BY t.id) FROM chat_threads t WHERE t.user_id = %(u)s),
       (SELECT json_agg(m ORDER BY m.id) FROM chat_messages m
        JOIN chat_threads t ON t.id = m.thread_id WHERE t.user_id = %(u)s),
       (SELECT json_agg(i ORDER BY i.id) FROM travel_itineraries i WHERE i.user_id = %(u)s),
       (SELECT json_agg(k.id ORDER BY k.id) FROM api_tokens k WHERE k.user_id = %(u)s),
       (SELECT json_agg(s ORDER BY s.id) FROM saved_searches s WHERE s.user_id = %(u)s)
"""


@pytest.mark.parametrize("outer_context", [False, True], ids=["alone", "in-app-context"])
def test_one_user_never_reads_or_changes_what_another_owns(
    sentinel, owner, feature_gates_database_url, outer_context
):
    """Tried alone, and inside an application context that outlives each request
    (as a test or a CLI command pushes), where ``g`` is shared between requests."""
    stranger = Caller(sentinel, "stranger")
    stranger.make()  # the stranger has things of their own, with other ids
    checked = []
    with ExitStack() as stack:
        if outer_context:
            stack.enter_context(sentinel.app_context())
        conn = stack.enter_context(psycopg.connect(feature_gates_database_url, autocommit=True))
        for method, endpoint, rule in api_routes(sentinel):
            if not rule.arguments:
                continue
            ids = owner.make()
            path = path_of(rule, ids)
            body = json.dumps(VALID_BODIES.get(endpoint, {})).encode()
            before = conn.execute(OWNED, {"u": owner.user.id}).fetchone()
            reply = stranger.call(method, path, body)
            assert_problem(reply, 404)
            assert "owner" not in reply.get_data(as_text=True)
            assert conn.execute(OWNED, {"u": owner.user.id}).fetchone() == before, endpoint
            # The same call by the owner works: the 404 was about whose it is.
            mine = owner.call(method, path, body)
            assert mine.status_code < 300, f"{endpoint}: add a body it takes to VALID_BODIES"
            checked.append(endpoint)
    assert len(checked) >= 12, checked
