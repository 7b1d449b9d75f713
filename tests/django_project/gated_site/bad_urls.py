"""A URLconf whose gate names a feature no plan defines (for the system checks)."""

from __future__ import annotations

from django.http import HttpRequest
from django.http import JsonResponse
from django.urls import path

from feature_gates.django import feature_limit
from feature_gates.django import feature_tier


@feature_limit("chat_mesages_monthly")
def misspelt(request: HttpRequest) -> JsonResponse:
    return JsonResponse({})


@feature_tier("platinum")
def no_such_tier(request: HttpRequest) -> JsonResponse:
    return JsonResponse({})


urlpatterns = [path("messages", misspelt), path("insights", no_such_tier)]
