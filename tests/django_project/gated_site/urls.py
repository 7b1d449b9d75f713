from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("api/trips", views.TripViewSet, basename="trip")

urlpatterns = [
    path("trips/pdf", views.trip_pdf),
    path("insights", views.insights),
    path("messages", views.send_message),
    path("messages/bulk/<int:n>", views.send_many),
    path("messages/reserved/<int:n>", views.send_reserved),
    path("itineraries/<int:itinerary>/destinations", views.add_destination),
    path("stacked", views.stacked),
    path("messages/form", views.message_form),
    path("cbv/export", views.ExportView.as_view()),
    path("cbv/messages", views.MessagesView.as_view()),
    path("api/messages", views.ApiMessages.as_view()),
    path("api/pdf", views.api_pdf),
    path("async/messages", views.async_message),
    path("async/export", views.AsyncExport.as_view()),
    path("pages/plan", views.plan_page),
    path("pages/pdf", views.pdf_page),
    path("projects/<int:project>/tasks", views.add_task),
    *router.urls,
]
