"""The alert sender: delivers the crossings the database recorded, from a
background thread in each application process.

Senders share the work through the database: each pass claims due alerts for a
lease (``feature_usage_alerts_claim``: ``FOR UPDATE SKIP LOCKED``, so with many
processes each alert is claimed by one), delivers them and records the outcome.
A sender that dies mid-delivery leaves its lease to run out; another process
then delivers the alert again under the same event id. Delivery is therefore at
least once, in order per subject (an alert waits while an earlier one of its
subject is pending).

Each alert is delivered as

* the ``usage-threshold-crossed`` signal, through ``emit`` inside ``context``
  (the adapter's application context), once it succeeded not again;
* with FEATURE_GATES_WEBHOOK_URL, a signed HTTP POST of its JSON event.

A failure (a receiver of the signal raising, a webhook answering other than
2xx, or not in time) is retried after FEATURE_GATES_WEBHOOK_RETRIES' next delay,
with jitter; after the last one the alert is dead (``feature-gates alerts``
lists it, ``feature-gates alerts replay`` sends it again).
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from psycopg.rows import class_row

from .._config import Settings
from .._storage import Emit
from .._storage import Storage
from .._storage import StorageError
from .._storage import one_line
from .events import Claimed
from .events import event_of
from .signature import HEADER
from .signature import sign

__all__ = ["AlertSender", "AlertStats", "SIGNAL"]

logger = logging.getLogger("feature_gates.alerts")

#: The signal each alert is sent as.
SIGNAL = "usage-threshold-crossed"

#: Alerts claimed at once when only signals go out; one at a time with a webhook,
#: so that a lease covers one request.
_SIGNAL_BATCH = 20

_USER_AGENT = "feature-gates webhook"


@dataclass(frozen=True)
class AlertStats:
    """What this process's sender did since it started."""

    #: Alerts delivered (the signal sent, and the webhook answered 2xx).
    sent: int
    #: Failed attempts that will be retried.
    retried: int
    #: Alerts given up after their last retry.
    dead: int
    #: The last delivery error, None once a delivery succeeds again.
    last_error: str | None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirected POST would arrive as a GET without its body: a failure.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# Senders of this process, reset in a forked child.
_senders: weakref.WeakSet[AlertSender] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for sender in list(_senders):
        sender._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class AlertSender:
    """Delivers recorded alerts as signals and signed webhooks.

    :param storage: the database (its health is the gates' too).
    :param settings: the webhook's URL, secret, timeout and retries, the interval.
    :param emit: sends a signal: ``emit(name, **data)``.
    :param context: returns the context the signal is sent in (an application
        context); none by default.
    :param user_id: turns a user id read as text into the application's type.
    """

    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        *,
        emit: Emit,
        context: Callable[[], AbstractContextManager[Any]] | None = None,
        user_id: Callable[[str], Any] = str,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self._emit = emit
        self._context = context or nullcontext
        self._user_id = user_id
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._closed = False
        self._reset()
        storage.health.on_recovery(lambda: self._wake.set())
        _senders.add(self)

    def _reset(self) -> None:
        """No thread and no counters (new, or in a forked child, which starts its own)."""
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._start_lock = threading.Lock()
        self._pass_lock = threading.Lock()
        self._sent = self._retried = self._dead = 0
        self._last_error: str | None = None

    # -- running ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread (once per process; a no-op after close)."""
        if self._started:  # every gated request asks: no lock once running
            return
        with self._start_lock:
            if self._started or self._closed:
                return
            self._started = True
            self._thread = threading.Thread(
                target=self._run, name="feature-gates-alerts", daemon=True
            )
        self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            try:
                self.deliver()
            except StorageError:
                pass  # reported by the storage; the next look comes after the interval
            except Exception:  # a bug must not stop the sender for good
                logger.exception("the alert sender failed; it goes on")
            self._wake.wait(self.settings.alerts_interval)
            self._wake.clear()

    def deliver(self) -> int:
        """Deliver the alerts due now, in this thread; return how many were settled.

        :raises StorageError: when the database cannot be reached or fails.
        """
        settled = 0
        with self._pass_lock:
            while not self._closed:
                claimed = self._claim()
                if not claimed:
                    break
                for alert in claimed:
                    self._deliver_one(alert)
                    settled += 1
        return settled

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the thread; an alert being delivered is finished or left to its lease."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def stats(self) -> AlertStats:
        return AlertStats(self._sent, self._retried, self._dead, self._last_error)

    # -- one alert --------------------------------------------------------------------

    def _claim(self) -> list[Claimed]:
        webhook = self.settings.webhook_url is not None
        return self.storage.run(
            self.storage.statements.claim_alerts,
            {
                "batch": 1 if webhook else _SIGNAL_BATCH,
                # Long enough for the request and its answer to be recorded.
                "lease": 2 * self.settings.webhook_timeout + 1,
            },
            row=class_row(Claimed),
            what="claiming alerts to deliver",
            idempotent=False,
        )

    def _deliver_one(self, alert: Claimed) -> None:
        event = event_of(alert, self._user_id)
        signalled = alert.signalled_at is not None
        error = None
        if not signalled:
            try:
                with self._context():
                    self._emit(SIGNAL, **event)
                signalled = True
            except Exception as exc:
                logger.exception("a receiver of the %r signal failed", SIGNAL)
                error = f"a receiver of {SIGNAL} failed: {one_line(exc)}"
        if error is None and self.settings.webhook_url is not None:
            error = self._post(event)
        self._settle(alert, signalled, error)

    def _post(self, event: dict[str, Any]) -> str | None:
        """POST the signed event; None when answered 2xx, else what went wrong."""
        url = self.settings.webhook_url
        secret = self.settings.webhook_secret
        assert url is not None and secret is not None  # checked with the settings
        body = json.dumps(event, separators=(",", ":")).encode()
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": _USER_AGENT,
                HEADER: sign(body, secret),
            },
        )
        try:
            with self._opener.open(request, timeout=self.settings.webhook_timeout) as answer:
                status = answer.status
        except urllib.error.HTTPError as exc:
            exc.close()
            return f"the webhook answered {exc.code}"
        except (OSError, ValueError) as exc:  # URLError, timeouts, refused, reset
            return f"the webhook could not be reached: {one_line(exc)}"
        return None if 200 <= status < 300 else f"the webhook answered {status}"

    def _settle(self, alert: Claimed, signalled: bool, error: str | None) -> None:
        retries = self.settings.webhook_retries
        retry_in = None
        if error is None:
            state = "sent"
        elif alert.attempts > len(retries):
            state = "dead"
        else:
            state = "pending"
            # Equal jitter: half the delay, plus up to the other half at random, so
            # that alerts failing together do not all come back together.
            delay = retries[alert.attempts - 1]
            retry_in = delay / 2 + random.uniform(0, delay / 2)
        self.storage.run(
            self.storage.statements.settle_alert,
            {
                "id": alert.id,
                "state": state,
                "signalled": signalled,
                "retry_in": retry_in,
                "error": error,
            },
            row=class_row(_Settled),
            what=f"recording the delivery of alert {alert.event_id}",
            idempotent=True,
        )
        if state == "sent":
            self._sent += 1
            self._last_error = None
            return
        self._last_error = error
        if state == "dead":
            self._dead += 1
            logger.error(
                "alert %s (%s of %r) is dead after %d attempts: %s",
                alert.event_id,
                alert.threshold,
                alert.feature,
                alert.attempts,
                error,
            )
        else:
            self._retried += 1
            logger.warning("alert %s: %s; retried in %.0f s", alert.event_id, error, retry_in or 0)


@dataclass(frozen=True)
class _Settled:
    settled: bool | None
