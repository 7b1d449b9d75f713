"""Signals sent by feature-gates, for metrics, alerts and audit logs.

Each signal's sender is the real application object; its data comes as keyword
arguments. Receivers of ``usage-recorded``, ``tracking-failed``, ``usage-dropped``
(and of the storage signals when the tracker notices an outage) run in the
thread that wrote: the background writer's, or the one calling ``flush()`` (or
``track()`` in sync mode); ``usage-dropped`` for a full map runs in the thread
calling ``track()``. Keep them quick and do not rely on request globals there.

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
]

# Only for the signals of feature-gates itself.
_signals = Namespace()

#: A gate refused a request. Data: ``feature``, ``subject``, ``reason``
#: (``"anonymous"``, ``"not-entitled"``, ``"tier"`` or ``"limit"``).
access_denied = _signals.signal("access-denied")

#: A limit refused a request (sent after ``access-denied``). Data: ``feature``,
#: ``subject``, ``limit``, ``used``.
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

#: The database stopped answering. Data: ``error``.
storage_unavailable = _signals.signal("storage-unavailable")

#: The database answers again after an outage. Data: ``outage_seconds``.
storage_recovered = _signals.signal("storage-recovered")
