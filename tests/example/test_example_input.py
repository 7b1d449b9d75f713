"""Bad input is a 400 (or 413, 404) problem+json, never a 500."""

from __future__ import annotations

import pytest


@pytest.fixture
def caller(make_caller):
    caller = make_caller("enterprise")
    caller.thread = caller.post("/threads", json={"title": "t"}).get_json()["id"]
    caller.itinerary = caller.post("/itineraries", json={"data": {}}).get_json()["id"]
    return caller


BAD_BODIES = [
    b"",
    b"not json",
    b"[1, 2]",
    b'"text"',
    b"{",
    b'{"messages": NaN}',
    b'{"messages": [{"content": 1e999}]}',
    b"[" * 50_000,
    b'{"messages": [{"content": "\\ud800"}]}',
    b'{"messages": [{"content": "a\\u0000b"}]}',
    b'{"messages": "hello"}',
    b'{"messages": []}',
    b'{"messages": [{"content": ""}]}',
    b'{"messages": [{"content": "x", "role": "system"}]}',
    b'{"messages": ["just text"]}',
    b'{"messages": [{"content": "' + b"x" * 4001 + b'"}]}',
    b'{"messages": [' + b",".join([b'{"content": "x"}'] * 51) + b"]}",
    b'{"mess\\u0000ages": [{"content": "x"}]}',
    b"\xff\xfe{}",
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_bad_message_bodies_are_400(caller, body):
    response = caller.post(f"/threads/{caller.thread}/messages", data=body)
    assert response.status_code == 400, response.get_data(as_text=True)[:200]
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 400


BAD_ITINERARIES = [
    {},
    {"data": []},
    {"data": {"waypoints": "Paris"}},
    {"data": {"waypoints": [{"country": "FR"}]}},
    {"data": {"waypoints": [{"name": "Paris", "country": "FRA"}]}},
    {"data": {"waypoints": [{"name": "Paris", "lat": 91}]}},
    {"data": {"waypoints": [{"name": "Paris", "lon": True}]}},
    {"data": {"waypoints": [{"name": "Paris", "arrive": "tomorrow"}]}},
    {"data": {"waypoints": [{"name": "Paris", "colour": "red"}]}},
    {"data": {"title": 5}},
    {"data": {}, "alerts_config": [1]},
    {"data": {}, "alerts_config": {"min_level": 9}},
    {"data": {}, "alerts_config": {"min_level": None}},
]


@pytest.mark.parametrize("body", BAD_ITINERARIES, ids=range(len(BAD_ITINERARIES)))
def test_bad_itineraries_are_400(caller, body):
    response = caller.post("/itineraries", json=body)
    assert response.status_code == 400, response.get_json()
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/threads", {}),
        ("post", "/threads", {"title": "x" * 201}),
        ("patch", "/itineraries/{i}", {}),
        ("patch", "/itineraries/{i}", {"data": {"waypoints": {"a": 1}}}),
        ("patch", "/itineraries/{i}", {"alerts_config": {"min_level": None}}),
        ("post", "/itineraries/{i}/destinations", {"waypoints": []}),
        ("post", "/itineraries/{i}/destinations", {"waypoints": [{"name": "x"}] * 101}),
        ("post", "/reports", {"kind": "everything"}),
        ("post", "/team/invites", {"email": "not an email"}),
        ("post", "/tokens", {"name": ""}),
        ("post", "/searches", {"name": "n"}),
    ],
)
def test_missing_or_wrong_fields_are_400(caller, method, path, body):
    response = getattr(caller, method)(path.format(i=caller.itinerary), json=body)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["detail"]


def test_a_body_over_64_kib_is_413(caller):
    body = b'{"messages": [{"content": "' + b"x" * 70_000 + b'"}]}'
    response = caller.post(f"/threads/{caller.thread}/messages", data=body)
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("ident", ["0", "-1", "abc", "9223372036854775808", "1" * 40])
def test_ids_out_of_range_are_404(caller, ident):
    response = caller.get(f"/threads/{ident}")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_no_or_a_wrong_token_is_401(sentinel_app):
    client = sentinel_app.test_client()
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eDp5"}):
        response = client.get("/threads", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.mimetype == "application/problem+json"


def test_a_wrong_method_is_405_problem(caller):
    response = caller.delete("/threads")
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert "GET" in response.headers["Allow"]
