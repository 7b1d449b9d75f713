"""Every denial has a short message for the end user beside the developer's detail,
worded by templates the application may replace per feature, and translate."""

from __future__ import annotations

from datetime import datetime
from datetime import timezone

import pytest
from gates_sample import headers

from feature_gates import ConfigError
from feature_gates import FeatureLimitExceeded
from feature_gates.core import Denial
from feature_gates.core._messages import Messages
from feature_gates.core._messages import display_name

DECEMBER = datetime(2026, 12, 1, tzinfo=timezone.utc)


def problem_of(app, method, path, plan="free", **kwargs):
    response = app.test_client().open(path, method=method, headers=headers(7, plan), **kwargs)
    assert response.status_code >= 400
    return response.get_json()


@pytest.mark.parametrize(
    ("name", "plan", "shown"),
    [
        ("chat_messages_monthly", False, "chat messages"),
        ("can_export_pdf", False, "export pdf"),
        ("route-analysis_per_month", False, "route analysis"),
        ("itinerary_destinations", False, "itinerary destinations"),
        ("monthly", False, "monthly"),
        ("pro", True, "Pro"),
        ("team_plus", True, "Team plus"),
    ],
)
def test_names_are_spelt_out_for_people(name, plan, shown):
    assert display_name(name, {}, plan=plan) == shown


def test_each_denial_of_the_sample_app_tells_the_user_in_plain_words(make_app):
    app = make_app()
    pdf = problem_of(app, "GET", "/pdf")
    assert pdf["message"] == "Your Free plan doesn't include export pdf."
    assert pdf["detail"].startswith("plan 'free' does not include 'can_export_pdf'")
    assert (
        problem_of(app, "GET", "/intel")["message"]
        == "Upgrade to the Pro plan or higher to use analyst intelligence."
    )
    anonymous = app.test_client().get("/pdf").get_json()
    assert anonymous["message"] == "Sign in to use export pdf."
    stock = problem_of(app, "POST", "/itineraries/1/destinations", json={"waypoints": [1, 2]})
    assert stock["message"] == (
        "Your Free plan allows 5 itinerary destinations; you have 4 and this needs 2 more."
    )


def test_a_used_up_monthly_limit_says_when_it_renews(make_app):
    app = make_app()
    client = app.test_client()
    for _ in range(3):
        assert client.post("/messages", headers=headers(7, "free")).status_code == 201
    refused = client.post("/messages", headers=headers(7, "free"))
    reset = datetime.fromisoformat(refused.get_json()["reset_at"].replace("Z", "+00:00"))
    assert refused.get_json()["message"] == (
        f"You've used all 3 chat messages this month; they renew on {reset.day} {reset:%B}."
    )


def test_the_message_is_an_attribute_of_the_denial_a_handler_gets(make_app):
    app = make_app()
    seen = []
    gates = app.extensions["feature_gates"].extension

    @gates.on_denied
    def remember(denial):
        seen.append(denial)

    with app.extensions["feature_gates"].override(
        plan="free", user_id=7, usage={"chat_messages_monthly": 3}
    ):
        app.test_client().post("/messages", headers=headers(7, "free"))
    (denial,) = seen
    assert isinstance(denial, FeatureLimitExceeded)
    assert denial.message.startswith("You've used all 3 chat messages this month")
    assert denial.problem()["message"] == denial.message


def test_templates_by_key_and_by_feature_and_display_names_replace_the_defaults(make_app):
    app = make_app(
        FEATURE_GATES_DENIAL_MESSAGES={
            "not-entitled": "{name} comes with a paid plan.",
            "chat_messages_monthly": {"limit": "No {name} left until {reset_at:%d.%m.}"},
        },
        FEATURE_GATES_DISPLAY_NAMES={
            "can_export_pdf": "PDF export",
            "chat_messages_monthly": "messages",
            "pro": "Professional",
        },
    )
    assert problem_of(app, "GET", "/pdf")["message"] == "PDF export comes with a paid plan."
    assert problem_of(app, "GET", "/intel")["message"] == (
        "Upgrade to the Professional plan or higher to use analyst intelligence."
    )
    state = app.extensions["feature_gates"]
    with state.override(plan="free", user_id=7, usage={"chat_messages_monthly": 3}):
        message = problem_of(app, "POST", "/messages")["message"]
    assert message.startswith("No messages left until 01.")


def test_a_translation_function_translates_templates_and_names(make_app):
    french = {
        "Your {plan} plan doesn't include {name}.": "Votre offre {plan} n'inclut pas {name}.",
        "export pdf": "l'export PDF",
        "Free": "Gratuite",
    }
    app = make_app(FEATURE_GATES_TRANSLATE=lambda text: french.get(text, text))
    assert problem_of(app, "GET", "/pdf")["message"] == (
        "Votre offre Gratuite n'inclut pas l'export PDF."
    )


def test_a_database_refusal_asks_to_try_again():
    messages = Messages()
    for reason in ("unavailable", "error"):
        denial = Denial(reason, status=503, feature="route_analysis", subject=None, detail="x")
        assert messages.of(denial) == (
            "We can't check your route analysis right now; please try again in a moment."
        )


def test_a_limit_with_too_little_left_says_what_is_left():
    denial = Denial(
        "limit",
        status=429,
        feature="chat_messages_monthly",
        subject=None,
        detail="x",
        limit=50,
        used=48,
        cost=5,
        reset_at=DECEMBER,
    )
    assert denial.message == (
        "You have 2 chat messages left this month and this needs 5; they renew on 1 December."
    )


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("FEATURE_GATES_DENIAL_MESSAGES", {"limits": "x"}, "'limits' is not a message key"),
        ("FEATURE_GATES_DENIAL_MESSAGES", {"limit": "{nmae} used"}, "{nmae} is not a field"),
        ("FEATURE_GATES_DENIAL_MESSAGES", {"limit": "{name"}, "is not a template"),
        ("FEATURE_GATES_DENIAL_MESSAGES", {"posts": {"limit": ""}}, "\\['posts'\\]\\['limit'\\]"),
        ("FEATURE_GATES_DENIAL_MESSAGES", "You shall not pass", "must map message keys"),
        ("FEATURE_GATES_DISPLAY_NAMES", {"pro": 3}, "must map feature and plan keys"),
        ("FEATURE_GATES_TRANSLATE", "gettext", "must be a function"),
    ],
)
def test_wrong_message_settings_name_the_key(make_app, key, value, error):
    with pytest.raises(ConfigError, match=error) as raised:
        make_app(**{key: value})
    assert str(raised.value).startswith(key)
