"""Type checks of the decorators (mypy reads this file; pytest does not collect it).

A gated view keeps its parameters and its return type; an async view's wrapper
returns what the coroutine returned, since it awaits it through ``ensure_sync``.
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
