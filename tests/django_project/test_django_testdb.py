"""The pytest plugin's part for pytest-django: feature-gates in Django's test database."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client

PRO = {"X-User": "7", "X-Plan": "pro"}


@pytest.mark.django_db(transaction=True)
def test_the_test_database_holds_djangos_tables_and_feature_gates(feature_gates_django_db):
    assert connection.settings_dict["NAME"] == "test_gated_site"
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('auth_user'), to_regclass('feature_usage')")
        assert cursor.fetchone() == ("auth_user", "feature_usage")
    assert Client().post("/messages", headers=PRO).status_code == 201
    with connection.cursor() as cursor:
        cursor.execute("SELECT sum(usage_count) FROM feature_usage WHERE user_id = 7")
        assert cursor.fetchone() == (1,)


@pytest.mark.django_db(transaction=True)
@pytest.mark.feature_gates(plan="free", user_id=7, usage={"chat_messages_monthly": 3})
def test_the_marker_sets_usage_in_the_test_database(feature_gates_django_db):
    assert Client().post("/messages", headers=PRO).status_code == 429


@pytest.mark.django_db(transaction=True)
def test_counters_reserve_runs_on_djangos_own_connection(feature_gates_django_db):
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE projects (id bigint PRIMARY KEY, tasks_count int NOT NULL)")
        cursor.execute("INSERT INTO projects VALUES (1, 0)")
    try:
        statuses = [Client().post("/projects/1/tasks").status_code for _ in range(3)]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE projects")
    assert statuses == [201, 201, 409]
