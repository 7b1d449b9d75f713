"""The plan catalogue: forms, tier order, files, and errors that name the plan and feature."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from flask import Flask
from gates_sample import PLANS

from feature_gates import Catalogue
from feature_gates import ConfigError
from feature_gates import FeatureGates
from feature_gates import UnknownFeature
from feature_gates import feature_required
from feature_gates import feature_tier


def test_values_become_limits():
    catalogue = Catalogue.parse(PLANS)
    free = catalogue.entitlement("free", "can_export_pdf")
    assert (free.kind, free.limit, free.granted) == ("boolean", 0, False)
    pro = catalogue.entitlement("pro", "can_export_pdf")
    assert (pro.limit, pro.granted) == (None, True)
    assert catalogue.entitlement("free", "chat_messages_monthly").limit == 3
    unlimited = catalogue.entitlement("enterprise", "chat_messages_monthly")
    assert (unlimited.kind, unlimited.limit, unlimited.period) == ("limit", None, "month")
    assert catalogue.tiers == ("free", "pro", "enterprise")


def test_a_feature_missing_from_a_plan_is_not_granted_by_it():
    catalogue = Catalogue.parse({"free": {}, "pro": {"sso": True, "seats": 10}})
    assert catalogue.entitlement("free", "sso").granted is False
    assert catalogue.entitlement("free", "seats").limit == 0
    assert catalogue.kinds == {"sso": "boolean", "seats": "limit"}


def test_booleans_and_limits_mix_in_one_feature():
    catalogue = Catalogue.parse({"free": {"api_calls": False}, "pro": {"api_calls": 1000}})
    assert catalogue.kinds["api_calls"] == "limit"
    assert catalogue.entitlement("free", "api_calls").limit == 0


def test_the_mapping_form_and_unlimited():
    catalogue = Catalogue.parse(
        {"free": {"exports": {"limit": 5, "period": "month"}}, "pro": {"exports": "unlimited"}}
    )
    assert catalogue.entitlement("free", "exports").limit == 5
    assert catalogue.entitlement("pro", "exports").limit is None


def test_tiers_reorder_the_plans():
    catalogue = Catalogue.parse(PLANS, ("free", "enterprise", "pro"))
    assert catalogue.tiers == ("free", "enterprise", "pro")
    assert catalogue.rank("pro") == 2
    assert catalogue.rank("gold") is None


def test_unknown_features_and_tiers_are_named():
    catalogue = Catalogue.parse(PLANS)
    with pytest.raises(UnknownFeature, match="feature 'sso' is not defined in any plan"):
        catalogue.entitlement("pro", "sso")
    with pytest.raises(UnknownFeature, match="tier 'gold' is not a plan"):
        catalogue.require_tier("gold")


@pytest.mark.parametrize(
    ("plans", "tiers", "message"),
    [
        ({"free": {"x": -1}}, None, "plan 'free', feature 'x': a limit must be zero or more"),
        ({"free": {"x": "lots"}}, None, "plan 'free', feature 'x': expected True, False"),
        ({"free": {"x": 1.5}}, None, "plan 'free', feature 'x'"),
        (
            {"free": {"x": {"limit": 5, "period": "fortnight"}}},
            None,
            "plan 'free', feature 'x': period must be one of hour, day, week, month, year, "
            "lifetime; got 'fortnight'",
        ),
        ({"free": {"x": {"max": 5}}}, None, "plan 'free', feature 'x': the mapping form"),
        (
            {"free": {"x": {"limit": 5, "window": "5h", "period": "day"}}},
            None,
            "plan 'free', feature 'x': 'period' and 'window' exclude each other",
        ),
        (
            {"free": {"x": {"limit": 5, "per_user": 2}}},
            None,
            "plan 'free', feature 'x': per_user caps a member's share",
        ),
        (
            {"pro": {"x": {"limit": 5, "alerts": [0.8, 1.5]}}},
            None,
            "plan 'pro', feature 'x': alerts: a threshold is a fraction of the limit above 0",
        ),
        (
            {"pro": {"x": {"limit": 5, "alerts": 0.8}}},
            None,
            "plan 'pro', feature 'x': alerts must be a list of fractions of the limit",
        ),
        (
            {"pro": {"x": {"limit": 5, "window": "1h", "rollover": 2}}},
            None,
            "plan 'pro', feature 'x': rollover carries a period's unused allowance",
        ),
        (
            {"pro": {"x": {"limit": None, "rollover": True}}},
            None,
            "plan 'pro', feature 'x': rollover carries a period's unused allowance",
        ),
        (
            {"pro": {"x": {"limit": 5, "rollover": 0}}},
            None,
            "plan 'pro', feature 'x': rollover is true .all the unused allowance. or the most",
        ),
        ({"free": {"Bad Name": True}}, None, "plan 'free': 'Bad Name' is not a valid feature"),
        ({"free": ["x"]}, None, "plan 'free' must map feature names"),
        ({"free": {}, "pro": {}}, ("free", "gold"), "FEATURE_GATES_TIERS: 'gold' is not a plan"),
        ({"free": {}, "pro": {}}, ("free",), "FEATURE_GATES_TIERS: plan 'pro' is missing"),
        ({"free": {}}, ("free", "free"), "'free' is listed twice"),
    ],
)
def test_catalogue_errors_name_the_plan_and_feature(plans, tiers, message):
    with pytest.raises(ConfigError, match=message):
        Catalogue.parse(plans, tiers)


def test_init_app_validates_the_catalogue():
    app = Flask(__name__)
    app.config.update(
        FEATURE_GATES_TRACKING="off", FEATURE_GATES_PLANS={"free": {"chat_messages": -5}}
    )
    with pytest.raises(ConfigError, match="plan 'free', feature 'chat_messages'"):
        FeatureGates(app)


@pytest.mark.parametrize(
    ("decorator", "message"),
    [
        (feature_required("sso"), "endpoint 'view': feature 'sso' is not defined in any plan"),
        (feature_tier("gold", feature="intel"), "endpoint 'view': tier 'gold' is not a plan"),
    ],
)
def test_init_app_checks_the_gates_of_registered_views(decorator, message):
    app = Flask(__name__)
    app.config.update(FEATURE_GATES_TRACKING="off", FEATURE_GATES_PLANS=PLANS)

    @app.get("/")
    @decorator
    def view():
        return ""

    with pytest.raises(ConfigError, match=message):
        FeatureGates(app)


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_the_catalogue_loads_from_a_file(tmp_path, suffix):
    path = tmp_path / f"plans{suffix}"
    if suffix == ".toml":
        path.write_text(
            "[free]\ncan_export_pdf = false\nchat_messages_monthly = 50\n\n"
            '[pro]\ncan_export_pdf = true\nchat_messages_monthly = "unlimited"\n'
        )
    else:
        path.write_text(
            json.dumps(
                {
                    "free": {"can_export_pdf": False, "chat_messages_monthly": 50},
                    "pro": {"can_export_pdf": True, "chat_messages_monthly": None},
                }
            )
        )
    app = Flask(__name__)
    app.config.update(FEATURE_GATES_TRACKING="off", FEATURE_GATES_PLANS=str(path))
    FeatureGates(app)
    catalogue = app.extensions["feature_gates"].catalogue
    assert catalogue.tiers == ("free", "pro")
    assert catalogue.entitlement("free", "chat_messages_monthly").limit == 50
    assert catalogue.entitlement("pro", "chat_messages_monthly").limit is None


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("plans.yaml", "", "must be a .toml or .json file"),
        ("plans.json", "{", "is not valid json"),
        ("plans.toml", "[free", "is not valid toml"),
        ("plans.json", "[1, 2]", "must hold a mapping of plans"),
        ("absent.json", None, "cannot read"),
    ],
)
def test_catalogue_file_errors(tmp_path, name, text, message):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=f"FEATURE_GATES_PLANS: .*{message}"):
        Catalogue.parse(path)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("FEATURE_GATES_PLANS", 42),
        ("FEATURE_GATES_TIERS", "free"),
        ("FEATURE_GATES_LIMIT_STATUS", 418),
        ("FEATURE_GATES_DENIAL_LOG_LEVEL", "LOUD"),
        ("FEATURE_GATES_USER_PLAN_SQL", ""),
    ],
)
def test_gate_settings_are_validated(key, value):
    app = Flask(__name__)
    app.config.update({"FEATURE_GATES_TRACKING": "off", key: value})
    with pytest.raises(ConfigError, match=key):
        FeatureGates(app)


def test_alert_thresholds_come_from_the_feature_or_the_default_of_every_limit():
    catalogue = Catalogue.parse(
        {
            "pro": {
                "reports": {"limit": 10, "alerts": [1.0, 0.8, 0.8]},
                "exports": 5,
                "quiet": {"limit": 5, "alerts": []},
                "sso": True,
            }
        },
        alerts=(Decimal("0.5"),),
    )
    assert catalogue.entitlement("pro", "reports").alerts == (Decimal("0.8"), Decimal("1"))
    assert catalogue.entitlement("pro", "exports").alerts == (Decimal("0.5"),)
    assert catalogue.entitlement("pro", "quiet").alerts == ()
    assert catalogue.entitlement("pro", "sso").alerts == ()
