"""Signals sent by feature-gates, for metrics, alerts and audit logs.

Each signal's sender is the real application object; its data comes as keyword
arguments. ``access-denied`` and ``limit-exceeded`` are sent from the request's
thread, inside the request (``request``, ``g`` and ``current_app`` work), before
the denial is raised. ``usage-recorded``, ``tracking-failed`` and ``usage-dropped``
are sent from the thread that wrote tracked usage: the background writer's, or the
one calling ``flush()`` (the request's thread when ``FEATURE_GATES_TRACKING =
"sync"``); ``usage-dropped`` for a full map comes from the thread calling
``track()``. Keep those receivers quick and do not rely on request globals there.
``storage-unavailable`` and ``storage-recovered`` come from whichever noticed: a
request's metered check, or the tracker's writer.

.. code-block:: python

    from feature_gates.signals import limit_exceeded

    @limit_exceeded.connect_via(app)
    def count_it(sender, feature, subject, **extra):
        metrics.increment("limit_exceeded", tags={"feature": feature})
"""

from __future__ import annotations

from blinker import Namespace

__all__ = [
    "access_denied",
    "limit_exceeded",
    "storage_recovered",
    "storage_unavailable",
    "tracking_failed",
    "usage_dropped",
    "usage_recorded",
    "usage_threshold_crossed",
]

# Only for the signals of feature-gates itself.
_signals = Namespace()

#: A gate refused a request. Data: ``feature``, ``subject`` (None when anonymous),
#: ``reason`` (``"anonymous"``, ``"not-entitled"``, ``"tier"``, ``"limit"`` or
#: ``"unavailable"``) and ``denial`` (the :class:`~feature_gates.FeatureDenied`).
access_denied = _signals.signal("access-denied")

#: A limit refused a request (sent after ``access-denied``). Data: ``feature``,
#: ``subject``, ``limit``, ``used`` and ``denial``.
limit_exceeded = _signals.signal("limit-exceeded")

#: Usage reached the database. Data: ``user_id``, ``feature``, ``amount``,
#: ``period_start``, ``count`` (the new total for that period). One per key
#: written, sent by the writer after each batch.
usage_recorded = _signals.signal("usage-recorded")

#: A write of tracked usage failed; the uses are kept and retried. Data:
#: ``error``, ``pending`` (uses waiting), ``pending_keys`` (keys waiting),
#: ``retry_in`` (seconds until the next background attempt).
tracking_failed = _signals.signal("tracking-failed")

#: Tracked usage was not recorded. Data: ``user_id``, ``feature``, ``amount``,
#: ``period_start``, ``dropped`` (the running total of uses dropped because the
#: map was full), ``reason`` and ``error``. ``reason`` is ``"full"`` (the pending
#: map held FEATURE_GATES_MAX_PENDING_KEYS keys; sent from the thread that called
#: ``track()``) or ``"rejected"`` (the database refused the use, ``error`` says why;
#: sent from the writer).
usage_dropped = _signals.signal("usage-dropped")

#: The database stopped answering (sent once per outage). Data: ``error``.
storage_unavailable = _signals.signal("storage-unavailable")

#: The database answers again after an outage (sent once). Data: ``outage_seconds``.
storage_recovered = _signals.signal("storage-recovered")

#: Usage crossed an alert threshold (docs/alerts.md). Sent by the alert sender of
#: the process that delivers the alert, from its thread, inside an application
#: context (``current_app`` works, ``request`` does not); at least once per alert,
#: with the same ``id``. Data: the event's fields ``id``, ``type``, ``feature``,
#: ``scope``, ``user_id``, ``org_id``, ``plan``, ``threshold``, ``used``,
#: ``limit``, ``period_start``, ``reset_at``, ``occurred_at``. A receiver that
#: raises has the alert retried.
usage_threshold_crossed = _signals.signal("usage-threshold-crossed")
