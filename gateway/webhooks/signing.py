"""Standard Webhooks signatures (https://www.standardwebhooks.com): HMAC-SHA256 over ``id.timestamp.body``.

``sign`` and ``verify`` are a pair, so a receiver written in Python can use this module; any other Standard
Webhooks library verifies the same headers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

PREFIX = "whsec_"
TOLERANCE = 5 * 60


class WebhookVerificationError(Exception):
    """A delivery that must not be trusted; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` value for one delivery attempt."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def headers(secret: str, msg_id: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """The three headers of one attempt (the id stays the same across retries; the timestamp does not)."""
    when = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(when),
        "webhook-signature": sign(secret, msg_id, when, body),
        "content-type": "application/json",
    }


def verify(secret: str, received: dict[str, str], body: str, now: float | None = None) -> None:
    """Raise WebhookVerificationError unless ``received`` headers sign ``body`` with ``secret``, recently."""
    lower = {k.lower(): v for k, v in received.items()}
    try:
        msg_id, stamp, signatures = lower["webhook-id"], lower["webhook-timestamp"], lower["webhook-signature"]
        when = int(stamp)
    except (KeyError, ValueError) as exc:
        raise WebhookVerificationError("missing or malformed webhook headers") from exc
    if abs((time.time() if now is None else now) - when) > TOLERANCE:
        raise WebhookVerificationError("timestamp outside the tolerance window")
    expected = sign(secret, msg_id, when, body)
    for candidate in signatures.split():
        if hmac.compare_digest(candidate, expected):
            return
    raise WebhookVerificationError("no signature matches")
