"""Signed tokens, one salt per purpose, keys rotating through GATEWAY_SECRET_KEYS (the last one signs).

- link: in ``/r/<token>``; names one recipient of one request and carries its own expiry.
- csrf: the confirmation form's hidden field; bound to the recipient, valid for a day.
- inbox: in ``/r/inbox/<token>``; names one address (an approver's inbox page) and expires with link_max_age.
- reply: the plus-address tag in Reply-To. Mail systems may lowercase local parts, so it is lowercase
  base32 only, and short enough for a 64-character local part.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

from itsdangerous import SignatureExpired, URLSafeTimedSerializer

LINK_SALT = "gateway.link.v1"
CSRF_SALT = "gateway.csrf.v1"
INBOX_SALT = "gateway.inbox.v1"
REPLY_SALT = b"gateway.reply.v1"
CSRF_MAX_AGE = 24 * 3600


class TokenError(Exception):
    """The token is not one of ours, or was altered."""

    def __init__(self, purpose: str, reason: str) -> None:
        self.purpose = purpose
        self.reason = reason
        super().__init__(f"{purpose} token {reason}")


class TokenExpiredError(TokenError):
    def __init__(self, purpose: str, recipient_id: str | None) -> None:
        self.recipient_id = recipient_id
        super().__init__(purpose, "has expired")


@dataclass(frozen=True)
class LinkClaim:
    recipient_id: str
    expires_at: float


def _claim(serializer: URLSafeTimedSerializer, token: str, purpose: str, expiry: tuple[type, ...]) -> tuple[str, float]:
    """A signed [subject, expiry] pair (a link's recipient, an inbox's address); TokenError for anything else."""
    try:
        payload = serializer.loads(token)
    except Exception as exc:  # BadSignature, and whatever a mangled token makes the decoder raise
        raise TokenError(purpose, "is not valid (it may have been cut or altered)") from exc
    if not (
        isinstance(payload, list)
        and len(payload) == 2
        and isinstance(payload[0], str)
        and isinstance(payload[1], expiry)
        and not isinstance(payload[1], bool)
    ):
        raise TokenError(purpose, "has an unexpected payload")
    return payload[0], float(payload[1])  # type: ignore[arg-type]  # an int or float: checked just above


class Signer:
    def __init__(self, secret_keys: list[str], link_max_age: int) -> None:
        if not secret_keys:
            raise ValueError("at least one secret key is needed")
        self._keys = secret_keys
        self._link = URLSafeTimedSerializer(secret_keys, salt=LINK_SALT)
        self._csrf = URLSafeTimedSerializer(secret_keys, salt=CSRF_SALT)
        self._inbox = URLSafeTimedSerializer(secret_keys, salt=INBOX_SALT)
        self._inbox_tokens: dict[tuple[str, int], str] = {}
        self.link_max_age = link_max_age
        # What /healthz shows so that `gateway doctor` can tell this deployment from anything else at the public
        # URL (a proxy's error page, another gateway); derived from the signing key, revealing nothing of it.
        self.fingerprint = hmac.new(secret_keys[-1].encode(), b"gateway.doctor.v1", hashlib.sha256).hexdigest()[:16]

    # links -------------------------------------------------------------------------------------

    def sign_link(self, recipient_id: str, expires_at: float | None) -> str:
        exp = expires_at if expires_at is not None else time.time() + self.link_max_age
        return self._link.dumps([recipient_id, int(exp)])

    def verify_link(self, token: str, now: float | None = None) -> LinkClaim:
        """The claim of one of our links; TokenError (never anything else) for any other input."""
        recipient_id, exp = _claim(self._link, token, "link", (int, float))
        if (now or time.time()) > exp:
            raise TokenExpiredError("link", recipient_id)
        return LinkClaim(recipient_id=recipient_id, expires_at=exp)

    # an approver's inbox -----------------------------------------------------------------------

    def sign_inbox(self, address: str, now: float | None = None) -> str:
        """Every request mail carries one: signed once an hour per address (its expiry then falls within the hour
        before ``now + link_max_age``), since signing was a sixth of composing a mail."""
        if now is not None:
            return self._inbox.dumps([address, int(now + self.link_max_age)])
        hour = int(time.time()) // 3600 * 3600
        token = self._inbox_tokens.get((address, hour))
        if token is None:
            if len(self._inbox_tokens) >= 10_000:
                self._inbox_tokens.clear()
            token = self._inbox_tokens[(address, hour)] = self._inbox.dumps([address, hour + self.link_max_age])
        return token

    def verify_inbox(self, token: str, now: float | None = None) -> str:
        """The address an inbox link was signed for; TokenError (never anything else) for any other input."""
        address, exp = _claim(self._inbox, token, "inbox", (int,))
        if (time.time() if now is None else now) > exp:
            raise TokenExpiredError("inbox", None)
        return address

    # csrf --------------------------------------------------------------------------------------

    def sign_csrf(self, recipient_id: str) -> str:
        return self._csrf.dumps(recipient_id)

    def verify_csrf(self, token: str, recipient_id: str) -> None:
        try:
            value = self._csrf.loads(token, max_age=CSRF_MAX_AGE)
        except SignatureExpired as exc:
            raise TokenExpiredError("csrf", recipient_id) from exc
        except Exception as exc:
            raise TokenError("csrf", "is not valid") from exc
        if value != recipient_id:
            raise TokenError("csrf", "belongs to another link")

    # reply address tag -------------------------------------------------------------------------

    def _reply_mac(self, key: str, body: str) -> str:
        digest = hmac.new(key.encode(), REPLY_SALT + body.encode(), hashlib.sha256).digest()
        return base64.b32encode(digest[:10]).decode().lower()  # 80 bits, 16 characters

    def sign_reply(self, recipient_id: str) -> str:
        body = recipient_id.removeprefix("rcp_")
        return f"{body}-{self._reply_mac(self._keys[-1], body)}"

    def verify_reply(self, tag: str) -> str:
        """The recipient id the tag names; TokenError (never anything else) when it is not ours."""
        if not isinstance(tag, str) or not tag.isascii():  # ours are base32 and ids: ASCII
            raise TokenError("reply", "is not valid")
        tag = tag.strip().lower()
        body, sep, mac = tag.rpartition("-")
        if not sep or not body or len(tag) > 200:
            raise TokenError("reply", "is not valid")
        for key in reversed(self._keys):
            if hmac.compare_digest(mac.encode(), self._reply_mac(key, body).encode()):
                return f"rcp_{body}"
        raise TokenError("reply", "is not valid")
