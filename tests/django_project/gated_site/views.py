"""Every kind of gate, on function views, class-based views, DRF and async views."""

from __future__ import annotations

import asyncio
from typing import Any

from django.db import connection
from django.db import transaction
from django.http import HttpRequest
from django.http import HttpResponse
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.http import require_POST
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feature_gates.counters import reserve
from feature_gates.django import current_hold
from feature_gates.django import feature_limit
from feature_gates.django import feature_required
from feature_gates.django import feature_tier

#: Destinations per itinerary: the stock a stock limit reads.
DESTINATIONS = {1: 4, 2: 0}


def destinations(itinerary: int) -> int:
    return DESTINATIONS[itinerary]


# -- function views -------------------------------------------------------------------


@feature_required("can_export_pdf")
def trip_pdf(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"pdf": "trip"})


@feature_tier("pro")
def insights(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"insights": []})


@require_POST
@feature_limit("chat_messages_monthly")
def send_message(request: HttpRequest) -> JsonResponse:
    # ?fail=400 answers an error (the use is given back); ?fail=raise raises.
    fail = request.GET.get("fail")
    if fail == "raise":
        raise RuntimeError("the view failed")
    if fail:
        return JsonResponse({"error": "refused"}, status=int(fail))
    return JsonResponse({"sent": True}, status=201)


@feature_limit("chat_messages_monthly", cost=lambda n: n)
def send_many(request: HttpRequest, n: int) -> JsonResponse:
    return JsonResponse({"sent": n})


@feature_limit("chat_messages_monthly", reserve=lambda n: n)
def send_reserved(request: HttpRequest, n: int) -> JsonResponse:
    # Holds n uses; ?use=k commits k of them, ?fail=raise releases them all.
    if request.GET.get("fail") == "raise":
        raise RuntimeError("the view failed")
    used = int(request.GET.get("use", n))
    current_hold().commit(used)
    return JsonResponse({"sent": used})


@feature_limit("itinerary_destinations", usage_getter=destinations)
def add_destination(request: HttpRequest, itinerary: int) -> JsonResponse:
    return JsonResponse({"added": itinerary})


@feature_tier("pro", feature="reports")
@feature_limit("chat_messages_monthly")
def stacked(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


@feature_limit("chat_messages_monthly", methods=["POST"])
def message_form(request: HttpRequest) -> HttpResponse:
    # GET shows the form: neither checked nor counted.
    return HttpResponse("<form method=post>" if request.method == "GET" else "sent")


# -- class-based views ----------------------------------------------------------------


@method_decorator(feature_required("can_export_pdf"), name="dispatch")
class ExportView(View):
    def get(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"export": "pdf"})


class MessagesView(View):
    def get(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"messages": []})

    @method_decorator(feature_limit("chat_messages_monthly"))
    def post(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"sent": True}, status=201)


# -- Django REST framework ------------------------------------------------------------


class ApiMessages(APIView):
    @feature_limit("chat_messages_monthly")
    def post(self, request: Request) -> Response:
        if request.data.get("fail"):
            return Response({"error": "refused"}, status=400)
        return Response({"sent": True}, status=201)


@api_view(["GET"])
@feature_required("can_export_pdf")
def api_pdf(request: Request) -> Response:
    return Response({"pdf": "trip"})


class TripViewSet(viewsets.ViewSet):
    @feature_tier("pro", feature="trip_list")
    def list(self, request: Request) -> Response:
        return Response([])

    @action(detail=False, methods=["post"])
    @feature_limit("chat_messages_monthly")
    def share(self, request: Request) -> Response:
        return Response({"shared": True}, status=201)


# -- async views ------------------------------------------------------------------------


@feature_limit("chat_messages_monthly")
async def async_message(request: HttpRequest) -> JsonResponse:
    await asyncio.sleep(0)
    if request.GET.get("fail"):
        return JsonResponse({"error": "refused"}, status=400)
    return JsonResponse({"sent": True}, status=201)


class AsyncExport(View):
    @method_decorator(feature_required("can_export_pdf"))
    async def get(self, request: HttpRequest) -> JsonResponse:
        await asyncio.sleep(0)
        return JsonResponse({"export": "pdf"})


# -- pages --------------------------------------------------------------------------------


def plan_page(request: HttpRequest) -> HttpResponse:
    return render(request, "plan.html")


@feature_required("can_export_pdf")
def pdf_page(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    return HttpResponse("<p>your PDF</p>")


# -- a stock limit on a counter column, reserved on Django's own connection -----------------


@require_POST
def add_task(request: HttpRequest, project: int) -> JsonResponse:
    # At most 2 tasks a project: reserve() locks the project's row in the transaction
    # that writes the task (here the counter is moved by hand; a counter column's
    # triggers would move it).
    with transaction.atomic():
        if not reserve(connection.connection, "projects", "tasks_count", project, 1, 2):
            return JsonResponse({"error": "the project is full"}, status=409)
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE projects SET tasks_count = tasks_count + 1 WHERE id = %s", [project]
            )
    return JsonResponse({"added": True}, status=201)
