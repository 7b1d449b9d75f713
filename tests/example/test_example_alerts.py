"""Sentinel's usage alerts: "80% used" banners on /me/usage at the plans'
thresholds, and its own signed webhooks received on /hooks/feature-gates (over
real HTTP), verified, recorded once per id and listed on the admin dashboard."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from werkzeug.serving import make_server

from examples.sentinel.state import gates
from feature_gates.webhooks import sign


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


PORT = _free_port()
SECRET = "a test secret"


@pytest.fixture
def sentinel_config():
    return {
        "FEATURE_GATES_WEBHOOK_URL": f"http://127.0.0.1:{PORT}/hooks/feature-gates",
        "FEATURE_GATES_WEBHOOK_SECRET": SECRET,
        "FEATURE_GATES_WEBHOOK_RETRIES": [0.05],
    }


@pytest.fixture
def served(sentinel_app):
    """Sentinel served over HTTP on loopback, where its webhooks go."""
    server = make_server("127.0.0.1", PORT, sentinel_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield sentinel_app
    server.shutdown()
    server.server_close()


def test_my_usage_shows_a_banner_at_each_threshold_reached(make_caller, sentinel_app):
    free = make_caller("free")
    with sentinel_app.app_context():
        gates.track_use("chat_messages_monthly", 40, subject=free.user.subject())  # 80% of 50
        gates.track_use("route_analysis", 3, subject=free.user.subject())  # alerts = [1.0]
        gates.flush()
    banners = free.get("/me/usage").get_json()["banners"]
    assert [(b["feature"], b["threshold"]) for b in banners] == [
        ("chat_messages_monthly", 0.8),
        ("route_analysis", 1.0),
    ]
    assert banners[0]["text"].endswith("80% used (10 of 50 left this month)")
    assert "limit reached (0 of 3 left today)" in banners[1]["text"]
    page = free.get("/me/usage", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert page.count('class="banner') == 2 and "80% used" in page


def test_sentinel_receives_its_own_alerts_and_lists_them_on_the_dashboard(make_caller, served):
    pro, admin = make_caller("pro"), make_caller("enterprise", admin=True)
    for _ in range(8):  # a member's share of the team's reports: 8 of 10 per member
        assert pro.post("/reports", json={"kind": "destinations_by_country"}).status_code == 200
    deadline = time.monotonic() + 30
    while not admin.get("/admin/usage").get_json()["received_alerts"]:
        assert time.monotonic() < deadline, "the webhook did not arrive"
        with served.app_context():
            gates.deliver_alerts()
        time.sleep(0.05)
    (alert,) = admin.get("/admin/usage").get_json()["received_alerts"]
    assert (alert["who"], alert["feature"], alert["threshold"]) == (
        pro.user.name,
        "custom_reports",
        0.8,
    )
    assert (alert["used"], alert["limit"], alert["deliveries"]) == (8, 10, 1)
    page = admin.get("/admin/usage", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "Usage alerts received" in page and "80%" in page


def test_the_webhook_route_refuses_a_bad_signature_and_records_a_repeat_once(
    make_caller, sentinel_app
):
    admin = make_caller("enterprise", admin=True)
    client = sentinel_app.test_client()
    event = {
        "id": "5b0c3f43-5a43-4a43-9d43-2a4b1e1f0c01",
        "type": "usage.threshold_crossed",
        "feature": "team_invite",
        "scope": "user",
        "user_id": admin.user.id,
        "org_id": None,
        "plan": "pro",
        "threshold": 0.8,
        "used": 4,
        "limit": 5,
        "period_start": None,
        "reset_at": None,
        "occurred_at": "2026-03-01T00:00:00Z",
    }
    body = json.dumps(event).encode()
    header = {"Feature-Gates-Signature": sign(body, SECRET), "Content-Type": "application/json"}
    tampered = body.replace(b'"used": 4', b'"used": 1')
    assert client.post("/hooks/feature-gates", data=tampered, headers=header).status_code == 400
    assert client.post("/hooks/feature-gates", data=body).status_code == 400
    for _ in range(2):
        assert client.post("/hooks/feature-gates", data=body, headers=header).status_code == 204
    (alert,) = admin.get("/admin/usage").get_json()["received_alerts"]
    assert (alert["id"], alert["deliveries"]) == (event["id"], 2)
