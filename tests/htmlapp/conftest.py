"""The blog's fixtures, as flaskr's conftest.py writes them, with feature-gates'
database from its pytest plugin. Plain pytest: no pytest-flask needed."""

from __future__ import annotations

import os
import tempfile

import pytest
from blog import create_app
from blog.db import get_db
from blog.db import init_db
from werkzeug.security import generate_password_hash


@pytest.fixture
def app(feature_gates_database_url):
    db_fd, db_path = tempfile.mkstemp()
    app = create_app(
        {
            "TESTING": True,
            "DATABASE": db_path,
            "FEATURE_GATES_DATABASE_URL": feature_gates_database_url,
            "FEATURE_GATES_TRACKING": "sync",
        }
    )
    with app.app_context():
        init_db()
        password = generate_password_hash("test", method="pbkdf2:sha256:1000")
        get_db().executemany(
            "INSERT INTO user (username, password, plan) VALUES (?, ?, ?)",
            [("test", password, "free"), ("paid", password, "pro")],
        )
        get_db().commit()
    yield app
    app.extensions["feature_gates"].close()
    os.close(db_fd)
    os.unlink(db_path)


@pytest.fixture
def client(app):
    return app.test_client()


class AuthActions:
    def __init__(self, client):
        self._client = client

    def login(self, username="test", password="test"):
        return self._client.post("/auth/login", data={"username": username, "password": password})


@pytest.fixture
def auth(client):
    return AuthActions(client)
