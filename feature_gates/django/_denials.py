"""Denials as Django responses: the core's problem document, or ``ON_DENIED``'s page.

The status, headers and body are those the Flask adapter answers: the core
builds them once (:class:`~feature_gates.core.Denial`).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.http import HttpResponseBase

from ..core import PROBLEM_CONTENT_TYPE
from ..core import Denial
from ._runtime import Runtime
from ._settings import ON_DENIED
from ._settings import key_name

__all__ = ["denied_response", "problem_response"]


def problem_response(denial: Denial) -> HttpResponse:
    """``denial`` as an ``application/problem+json`` response, with its headers."""
    response = HttpResponse(
        denial.body(), status=denial.status or 403, content_type=PROBLEM_CONTENT_TYPE
    )
    for name, value in denial.headers.items():
        response[name] = value
    return response


def denied_response(runtime: Runtime, request: Any, denial: Denial) -> HttpResponseBase:
    """What the view answers for ``denial``: ON_DENIED's response, else the problem."""
    hook = runtime.on_denied
    if hook is not None:
        answer = hook(request, denial)
        if answer is not None:
            if not isinstance(answer, HttpResponseBase):
                raise TypeError(
                    f"{key_name(ON_DENIED)} must return an HttpResponse or None, "
                    f"got {type(answer).__name__}"
                )
            return answer
    return problem_response(denial)
