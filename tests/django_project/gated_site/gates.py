"""The project's subject loader and denial pages."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.http import HttpResponse
from django.shortcuts import render

from feature_gates.django import Denial
from feature_gates.django import Subject


def load_subject(request: HttpRequest) -> Subject | None:
    user = request.headers.get("X-User")
    if user is None:
        return None
    return Subject(int(user), request.headers.get("X-Plan", "free"))


def on_denied(request: Any, denial: Denial) -> HttpResponse | None:
    """Pages under /pages/ answer a denial with a page; the API keeps problem+json."""
    if not request.path.startswith("/pages/"):
        return None
    return render(request, "denied.html", {"denial": denial}, status=denial.status)
