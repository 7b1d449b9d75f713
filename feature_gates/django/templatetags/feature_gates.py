"""Template tags: ``{% load feature_gates %}``.

.. code-block:: django

    {% has_feature "can_export_pdf" %}<button>Export</button>{% else %}Upgrade{% endhas_feature %}
    {% has_tier "pro" %}...{% endhas_tier %}
    {% feature_remaining "exports_monthly" %} left
    {% feature_remaining "exports_monthly" as left %}

They read the request from the context (``django.template.context_processors.request``)
and the plan catalogue in memory; ``feature_remaining`` reads the count (one query).
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.base import FilterExpression
from django.template.base import NodeList
from django.template.base import Parser
from django.template.base import Token

from .._gates import gates

register = template.Library()


def _request(context: template.Context, tag: str) -> Any:
    request = context.get("request")
    if request is None:
        raise template.TemplateSyntaxError(
            f"{{% {tag} %}} needs the request in the context: add "
            "'django.template.context_processors.request' to the template "
            "engine's context_processors"
        )
    return request


class _GateNode(template.Node):
    def __init__(self, tag: str, argument: FilterExpression, yes: NodeList, no: NodeList):
        self.tag, self.argument, self.yes, self.no = tag, argument, yes, no

    def render(self, context: template.Context) -> str:
        request = _request(context, self.tag)
        value = self.argument.resolve(context)
        if self.tag == "has_feature":
            allowed = gates.has_feature(request, value)
        else:
            allowed = gates.has_tier(request, value)
        chosen: NodeList = self.yes if allowed else self.no
        return str(chosen.render(context))


def _gate_tag(parser: Parser, token: Token) -> _GateNode:
    bits = token.split_contents()
    tag = bits[0]
    if len(bits) != 2:
        raise template.TemplateSyntaxError(f'{{% {tag} "name" %}} takes one argument')
    yes = parser.parse(("else", f"end{tag}"))
    no = NodeList()
    if parser.next_token().contents == "else":
        no = parser.parse((f"end{tag}",))
        parser.delete_first_token()
    return _GateNode(tag, parser.compile_filter(bits[1]), yes, no)


register.tag("has_feature", _gate_tag)
register.tag("has_tier", _gate_tag)


@register.simple_tag(takes_context=True)
def feature_remaining(context: template.Context, feature: str) -> int | str:
    """Uses of a metered feature left to the request's subject: a number, or
    ``"unlimited"``."""
    remaining = gates.feature_remaining(_request(context, "feature_remaining"), feature)
    return "unlimited" if remaining is None else remaining
