"""Type checks of the decorators (mypy reads this file; pytest does not collect it).

A gated view keeps its parameters and its return type; a Flask async view's wrapper
returns what the coroutine returned, since it awaits it through ``ensure_sync``; a
Django async view stays a coroutine function.
"""

from __future__ import annotations

from typing_extensions import assert_type

from feature_gates import feature_limit
from feature_gates import feature_required
from feature_gates import feature_tier


@feature_required("can_export_pdf")
def export(thread_id: int) -> str:
    return str(thread_id)


@feature_tier("pro")
@feature_limit("chat_messages_monthly", cost=lambda thread_id: 2)
async def post(thread_id: int) -> dict[str, int]:
    return {"thread_id": thread_id}


@feature_limit("posts_monthly", methods=["POST"])
@feature_required("can_post", methods=("post", "put"))
def create() -> tuple[str, int]:
    return "", 201


assert_type(export(1), str)
assert_type(create(), tuple[str, int])
assert_type(post(1), dict[str, int])


# -- the Django decorators: an async view stays a coroutine function -------------------

import inspect  # noqa: E402

from feature_gates.django import feature_limit as django_limit  # noqa: E402
from feature_gates.django import feature_required as django_required  # noqa: E402
from feature_gates.django import feature_tier as django_tier  # noqa: E402


@django_required("can_export_pdf")
def django_export(request: object, thread_id: int) -> str:
    return str(thread_id)


@django_tier("pro")
@django_limit("chat_messages_monthly", cost=lambda thread_id: 2)
async def django_post(request: object, thread_id: int) -> dict[str, int]:
    return {"thread_id": thread_id}


assert_type(django_export(None, 1), str)
assert inspect.iscoroutinefunction(django_post)


async def awaits_django_post() -> None:
    assert_type(await django_post(None, 1), dict[str, int])
