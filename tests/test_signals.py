"""Signals: names, data, and the real application as sender."""

from __future__ import annotations

from contextlib import contextmanager

from gates_sample import headers

from feature_gates import Subject
from feature_gates import signals


@contextmanager
def recording(signal, app):
    sent = []

    def record(sender, **data):
        sent.append((sender, data))

    signal.connect(record, app)
    try:
        yield sent
    finally:
        signal.disconnect(record, app)


def test_signal_names_are_kebab_case():
    assert signals.access_denied.name == "access-denied"
    assert signals.limit_exceeded.name == "limit-exceeded"
    assert signals.usage_recorded.name == "usage-recorded"
    assert signals.tracking_failed.name == "tracking-failed"
    assert signals.storage_unavailable.name == "storage-unavailable"
    assert signals.storage_recovered.name == "storage-recovered"


def test_access_denied_carries_feature_subject_and_reason(app):
    with recording(signals.access_denied, app) as sent:
        app.test_client().get("/pdf", headers=headers(7, "free"))
        app.test_client().get("/intel")
    (first_sender, first), (_, second) = sent
    assert first_sender is app
    assert (first["feature"], first["subject"], first["reason"]) == (
        "can_export_pdf",
        Subject(7, "free"),
        "not-entitled",
    )
    assert first["denial"].code == 403
    assert (second["feature"], second["subject"], second["reason"]) == (
        "analyst_intelligence",
        None,
        "anonymous",
    )


def test_limit_exceeded_follows_access_denied(app):
    client = app.test_client()
    with (
        recording(signals.access_denied, app) as denied,
        recording(signals.limit_exceeded, app) as exceeded,
    ):
        for _ in range(4):
            client.post("/messages", headers=headers(7, "free"))
    assert [data["reason"] for _, data in denied] == ["limit"]
    ((sender, data),) = exceeded
    assert sender is app
    assert (data["feature"], data["limit"], data["used"]) == ("chat_messages_monthly", 3, 3)
    assert data["subject"] == Subject(7, "free")


def test_usage_recorded_when_tracked_usage_reaches_the_database(app):
    with recording(signals.usage_recorded, app) as sent:
        app.test_client().get("/pdf", headers=headers(7, "pro"))
    ((sender, data),) = sent
    assert sender is app
    assert (data["user_id"], data["feature"], data["amount"], data["count"]) == (
        7,
        "can_export_pdf",
        1,
        1,
    )


def test_signals_of_one_app_are_not_sent_for_another(make_app):
    first, second = make_app(), make_app()
    with recording(signals.access_denied, first) as sent:
        second.test_client().get("/pdf")
    assert sent == []
