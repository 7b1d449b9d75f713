"""Settings of the test project. The databases come from the environment:

``GATED_SITE_GATES_URL``
    feature-gates' database (FEATURE_GATES["DATABASE_URL"]).
``GATED_SITE_DJANGO_URL``
    Django's own database (PostgreSQL); an in-memory SQLite when not set.
``GATED_SITE_FLUSH_INTERVAL``
    FEATURE_GATES["FLUSH_INTERVAL"]: 0.05 seconds by default.
"""

from __future__ import annotations

import os
from pathlib import Path

from gates_sample import PLANS as SAMPLE_PLANS
from psycopg.conninfo import conninfo_to_dict

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "gated_site.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
    "feature_gates.django",
    "gated_site",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}


def _database(url: str | None) -> dict[str, object]:
    if not url:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    params = conninfo_to_dict(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.get("dbname"),
        "USER": params.get("user", ""),
        "PASSWORD": params.get("password", ""),
        "HOST": params.get("host", ""),
        "PORT": params.get("port", ""),
    }


DATABASES = {"default": _database(os.environ.get("GATED_SITE_DJANGO_URL"))}

# The plans of the Flask sample app (tests/gates_sample.py): the two adapters'
# tests gate the same features.
PLANS = SAMPLE_PLANS

FEATURE_GATES = {
    "DATABASE_URL": os.environ.get("GATED_SITE_GATES_URL"),
    "PLANS": PLANS,
    "SUBJECT_LOADER": "gated_site.gates.load_subject",
    "ON_DENIED": "gated_site.gates.on_denied",
    "FLUSH_INTERVAL": float(os.environ.get("GATED_SITE_FLUSH_INTERVAL", "0.05")),
}
