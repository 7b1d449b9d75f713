"""Signed webhooks: the ``Feature-Gates-Signature`` header and its check.

The signature is an HMAC-SHA256, keyed with FEATURE_GATES_WEBHOOK_SECRET, of
``"{t}.{raw body}"`` where ``t`` is the time of signing in unix seconds; the
header reads ``t=<unix seconds>,v1=<hex>``. A receiver checks it over the raw
body it received, before parsing it, and refuses an old timestamp (a replayed
request).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

__all__ = ["HEADER", "SignatureError", "sign", "verify"]

#: The name of the header that carries the signature.
HEADER = "Feature-Gates-Signature"


class SignatureError(ValueError):
    """A webhook's signature is missing, malformed or wrong, or its timestamp is
    outside the tolerance: do not trust its body."""


def _digest(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, b"%d." % timestamp + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str | bytes, timestamp: int | None = None) -> str:
    """The ``Feature-Gates-Signature`` header of ``body``, signed now (or at ``timestamp``)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_digest(secret, t, body)}"


def verify(
    payload: bytes | str, header: str | None, secret: str | bytes, tolerance: int = 300
) -> dict[str, Any]:
    """The event of a webhook request, once its signature is checked.

    :param payload: the raw body, exactly as received.
    :param header: the value of the ``Feature-Gates-Signature`` header.
    :param secret: FEATURE_GATES_WEBHOOK_SECRET of the sender.
    :param tolerance: seconds the signing time may differ from now.
    :raises SignatureError: when the header is missing or malformed, no ``v1``
        signature matches (compared in constant time), or the timestamp is more
        than ``tolerance`` seconds away.
    """
    body = payload.encode() if isinstance(payload, str) else payload
    if not header:
        raise SignatureError(f"no {HEADER} header: the request is not signed")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError(f"malformed {HEADER} header: expected t=<unix seconds>,v1=<hex>")
    expected = _digest(secret, timestamp, body)
    # Every candidate is compared, in constant time each.
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise SignatureError("the signature does not match the body: check the secret")
    if abs(time.time() - timestamp) > tolerance:
        raise SignatureError(
            f"the signature's timestamp is {abs(int(time.time()) - timestamp)} s away from "
            f"now, more than the tolerance of {tolerance} s (a replayed request?)"
        )
    event: dict[str, Any] = json.loads(body)
    return event
