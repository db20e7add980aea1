"""Inbound mail by webhook: each provider's payload, authenticated and reduced to the raw RFC 822 message.

Only the way in differs; what follows (matching, sender checks, de-duplication, audit) is the one pipeline the
IMAP poller feeds. Each source is a pair: ``authenticate`` (a refusal is :class:`Unauthorized`, a 401) and
``extract`` (a body that is not the provider's format is :class:`BadPayload`, a 4xx); both run before anything
is stored, so a refused or malformed delivery is never half-processed.

Formats, as the providers document them:
- raw: the body is the message; ``Authorization: Bearer <INBOUND_SECRET>``.
- Postmark inbound webhook: JSON whose ``RawEmail`` holds the full message ("include raw email content");
  HTTP Basic auth in the webhook URL, the secret as its password.
- SendGrid Inbound Parse, "POST the raw, full MIME message": multipart/form-data whose ``email`` field is the
  message; Basic auth as for Postmark.
- Mailgun routes, ``forward()`` to a URL ending in ``mime``: form fields with ``body-mime``, signed with
  ``timestamp``, ``token`` and ``signature`` = HMAC-SHA256(signing key, timestamp + token); a stale timestamp or a
  token seen before is refused.
- Amazon SES receipt rule with an SNS action (content inline): an SNS message, its signature checked with the
  certificate at ``SigningCertURL`` (fetched only from an allow-listed SNS host); ``SubscriptionConfirmation`` is
  confirmed by fetching its ``SubscribeURL`` (same allow-list).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.errors import GatewayError, InvalidInputError, UnauthorizedError

MAILGUN_MAX_AGE = 15 * 60  # seconds a Mailgun signature's timestamp may be off, either way


class SourceError(GatewayError):
    """A delivery the gateway will not take; ``status`` is the HTTP answer, ``message`` says why."""


class Unauthorized(SourceError, UnauthorizedError):
    pass


class BadPayload(SourceError, InvalidInputError):
    pass


class Replayed(Unauthorized):
    """A Mailgun token seen before with another message: a replay of a signed delivery."""

    code = "replayed"


# --- shared secrets -------------------------------------------------------------------------------------


def check_bearer(header: str | None, secret: str | None) -> None:
    if not secret:
        raise Unauthorized("inbound webhooks are off: set GATEWAY_INBOUND_SECRET")
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), secret.encode()):
        raise Unauthorized("send the inbound secret as `Authorization: Bearer <GATEWAY_INBOUND_SECRET>`")


def check_basic(header: str | None, secret: str | None) -> None:
    """HTTP Basic auth whose password is the secret (the user name is free: providers put it in the URL)."""
    if not secret:
        raise Unauthorized("inbound webhooks are off: set GATEWAY_INBOUND_SECRET")
    scheme, _, encoded = (header or "").partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    _, sep, password = decoded.partition(":")
    if scheme.lower() != "basic" or not sep or not hmac.compare_digest(password.encode(), secret.encode()):
        raise Unauthorized("use HTTP Basic auth with GATEWAY_INBOUND_SECRET as the password (in the webhook URL)")


# --- payloads -------------------------------------------------------------------------------------------


def raw_message(body: bytes) -> bytes:
    if not body.strip():
        raise BadPayload("the body must be one raw RFC 822 message")
    return body


def postmark(body: bytes) -> bytes:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise BadPayload("not Postmark's inbound JSON") from exc
    raw = data.get("RawEmail") if isinstance(data, dict) else None
    if not isinstance(raw, str) or not raw.strip():
        raise BadPayload('no RawEmail: turn on "Include raw email content in JSON payload" for the inbound stream')
    return raw.encode("utf-8", "surrogateescape")


def sendgrid(form: dict[str, Any]) -> bytes:
    email = form.get("email")
    if isinstance(email, bytes):
        raw = email
    elif isinstance(email, str):
        raw = email.encode("utf-8", "surrogateescape")
    else:
        raise BadPayload('no `email` field: turn on "POST the raw, full MIME message" for the Inbound Parse host')
    if not raw.strip():
        raise BadPayload("the `email` field is empty")
    return raw


def mailgun(form: dict[str, Any], signing_key: str | None, now: float | None = None) -> tuple[bytes, str]:
    """(the message, the signature's token): the caller stores the token, so a replay is refused."""
    if not signing_key:
        raise Unauthorized("Mailgun deliveries are off: set GATEWAY_MAILGUN_SIGNING_KEY")
    timestamp, token, signature = (str(form.get(k) or "") for k in ("timestamp", "token", "signature"))
    if not (timestamp and token and signature):
        raise Unauthorized("no Mailgun signature (timestamp, token, signature)")
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
        raise Unauthorized("the Mailgun signature does not match GATEWAY_MAILGUN_SIGNING_KEY")
    try:
        age = abs((now or time.time()) - float(timestamp))
    except ValueError as exc:
        raise Unauthorized("the Mailgun timestamp is not a number") from exc
    if not math.isfinite(age):
        raise Unauthorized("the Mailgun timestamp is not a number")
    if age > MAILGUN_MAX_AGE:
        raise Unauthorized(f"the Mailgun signature is {age:.0f} s old (at most {MAILGUN_MAX_AGE} s)")
    mime = form.get("body-mime")
    raw = mime.encode("utf-8", "surrogateescape") if isinstance(mime, str) else mime
    if not isinstance(raw, bytes) or not raw.strip():
        raise BadPayload("no body-mime: forward the route to a URL that ends in `mime` (…/inbound/mailgun/mime)")
    return raw, token


# --- Amazon SES through SNS -----------------------------------------------------------------------------

_SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


def sns_string_to_sign(message: dict[str, Any]) -> bytes:
    """AWS's canonical form: ``Key\\nvalue\\n`` for each signed key present, in byte order."""
    keys = _SIGNED_KEYS.get(str(message.get("Type")))
    if keys is None:
        raise BadPayload(f"unknown SNS message type {message.get('Type')!r}")
    out = ""
    for key in keys:
        if key in message and message[key] is not None:
            out += f"{key}\n{message[key]}\n"
        elif key != "Subject":
            raise BadPayload(f"the SNS message has no {key}")
    return out.encode("utf-8")


class SnsVerifier:
    """Checks SNS signatures against the certificate at SigningCertURL, fetched only from hosts the pattern
    allows (Amazon's SNS hosts over HTTPS; a test points it at its own server) and cached by URL."""

    def __init__(self, fetch: Callable[[str], Awaitable[bytes]], pattern: str) -> None:
        self._fetch = fetch
        self._allowed = re.compile(pattern)
        self._keys: dict[str, rsa.RSAPublicKey] = {}

    def allowed(self, url: str) -> bool:
        return bool(self._allowed.match(url or ""))

    async def verify(self, message: dict[str, Any]) -> None:
        url = str(message.get("SigningCertURL") or "")
        if not self.allowed(url):
            raise Unauthorized(f"SigningCertURL {url[:200]!r} is not an Amazon SNS host")
        version = str(message.get("SignatureVersion") or "")
        algorithm: hashes.HashAlgorithm
        if version == "1":
            algorithm = hashes.SHA1()
        elif version == "2":
            algorithm = hashes.SHA256()
        else:
            raise Unauthorized(f"unknown SNS SignatureVersion {version!r}")
        try:
            signature = base64.b64decode(str(message.get("Signature") or ""), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Unauthorized("the SNS signature is not base64") from exc
        key = await self._key(url)
        try:
            key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
        except InvalidSignature as exc:
            raise Unauthorized("the SNS signature does not match its certificate") from exc

    async def _key(self, url: str) -> rsa.RSAPublicKey:
        key = self._keys.get(url)
        if key is None:
            try:
                cert = x509.load_pem_x509_certificate(await self._fetch(url))
            except Exception as exc:
                raise Unauthorized(f"cannot load the SNS signing certificate: {type(exc).__name__}") from exc
            public = cert.public_key()
            if not isinstance(public, rsa.RSAPublicKey):
                raise Unauthorized("the SNS signing certificate has no RSA key")
            key = self._keys[url] = public
        return key


def ses_message(message: dict[str, Any]) -> bytes:
    """The raw mail an SES receipt rule's SNS action put inline (``content``, Base64 or UTF-8 encoded)."""
    try:
        notification = json.loads(str(message.get("Message") or ""))
    except ValueError as exc:
        raise BadPayload("the SNS Message is not SES's JSON") from exc
    if not isinstance(notification, dict) or notification.get("notificationType") != "Received":
        kind = notification.get("notificationType") if isinstance(notification, dict) else None
        raise BadPayload(f"not an SES inbound notification (notificationType {kind!r})")
    content = notification.get("content")
    if not isinstance(content, str) or not content:
        raise BadPayload("no inline content: the SNS action must publish the message (SES puts it inline under 150 KB)")
    receipt = notification.get("receipt")
    action = receipt.get("action") if isinstance(receipt, dict) else None
    encoding = str((action.get("encoding") if isinstance(action, dict) else None) or "UTF8").upper()
    if encoding == "BASE64":
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadPayload("the SES content is not base64") from exc
    return content.encode("utf-8", "surrogateescape")


def parse_sns(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise BadPayload("not an Amazon SNS message (JSON)") from exc
    if not isinstance(message, dict) or "Type" not in message:
        raise BadPayload("not an Amazon SNS message (no Type)")
    return message
