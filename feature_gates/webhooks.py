"""Receiving feature-gates' webhooks: check the signature, get the event.

.. code-block:: python

    from feature_gates.webhooks import SignatureError, verify

    @app.post("/hooks/feature-gates")
    def usage_alert():
        try:
            event = verify(request.get_data(), request.headers.get("Feature-Gates-Signature"),
                           app.config["FEATURE_GATES_WEBHOOK_SECRET"])
        except SignatureError:
            abort(400)
        record(event["id"], event)   # deliveries are at least once: keep by id
        return "", 204

See docs/alerts.md for the event and the delivery guarantees.
"""

from __future__ import annotations

from .core._alerts.signature import HEADER as HEADER
from .core._alerts.signature import SignatureError as SignatureError
from .core._alerts.signature import sign as sign
from .core._alerts.signature import verify as verify

__all__ = ["HEADER", "SignatureError", "sign", "verify"]
