"""settings.FEATURE_GATES is checked at start-up by Django's system checks, naming the key."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from feature_gates.django.checks import check_settings


def errors_with(**changes):
    config = {**settings.FEATURE_GATES, "DATABASE_URL": "postgresql:///unused", **changes}
    config = {k: v for k, v in config.items() if v is not None}
    with override_settings(FEATURE_GATES=config):
        return [(e.id, e.msg) for e in check_settings()]


def test_valid_settings_pass():
    assert errors_with() == []


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"POOL_MIN_SIZE": -1}, 'FEATURE_GATES["POOL_MIN_SIZE"] must be'),
        ({"FAIL_MODE": "ajar"}, 'FEATURE_GATES["FAIL_MODE"] must be one of'),
        ({"PLAN": {}}, 'FEATURE_GATES["PLAN"] is no setting of feature-gates'),
        ({"COMMAND_NAME": "gates"}, 'FEATURE_GATES["COMMAND_NAME"] means nothing in Django'),
        ({"PLANS": {"free": {"Bad Name": True}}}, 'FEATURE_GATES["PLANS"]: plan'),
    ],
)
def test_a_wrong_setting_is_an_error_naming_its_key(changes, named):
    ((code, message),) = errors_with(**changes)
    assert code == "feature_gates.E001"
    assert named in message
    assert "FEATURE_GATES_" not in message


def test_without_a_database_url_the_checks_warn_that_nothing_is_recorded():
    ((code, message),) = errors_with(DATABASE_URL=None)
    assert code == "feature_gates.W001"
    assert 'FEATURE_GATES["DATABASE_URL"] is not set' in message


def test_a_subject_loader_that_cannot_be_imported():
    ((code, message),) = errors_with(SUBJECT_LOADER="gated_site.gates.no_such_loader")
    assert code == "feature_gates.E002"
    assert 'FEATURE_GATES["SUBJECT_LOADER"]' in message


def test_no_subject_loader():
    config = {k: v for k, v in settings.FEATURE_GATES.items() if k != "SUBJECT_LOADER"}
    with override_settings(FEATURE_GATES={**config, "DATABASE_URL": "postgresql:///unused"}):
        assert [e.id for e in check_settings()] == ["feature_gates.E002"]


def test_a_gate_naming_an_unknown_feature_or_tier_names_its_route():
    with override_settings(ROOT_URLCONF="gated_site.bad_urls"):
        found = errors_with()
    assert [code for code, _ in found] == ["feature_gates.E003"] * 2
    assert "'/messages'" in found[0][1] and "chat_mesages_monthly" in found[0][1]
    assert "'/insights'" in found[1][1] and "platinum" in found[1][1]


def test_manage_py_check_fails_at_start_up():
    config = {**settings.FEATURE_GATES, "DATABASE_URL": "postgresql:///x", "TRACKING": "often"}
    with override_settings(FEATURE_GATES=config), pytest.raises(SystemCheckError) as raised:
        call_command("check")
    assert 'FEATURE_GATES["TRACKING"] must be one of' in str(raised.value)
