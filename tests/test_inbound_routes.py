"""Inbound mail by webhook, end to end: each provider's payload, shaped as its documentation shows it, posted over
HTTP to a running gateway → a decision the waiting agent sees. Wrong secrets and signatures are 401 with nothing
stored; a provider's retry decides nothing twice."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from sqlmodel import select

from gateway.inbound.sources import sns_string_to_sign
from gateway.models import InboundMessage
from tests import mailclients
from tests.conftest import Live, free_port
from tests.loopback import LoopbackServer
from tests.test_inbound_pipeline import request_mail

SECRET = "inbound-secret-0123456789"
MAILGUN_KEY = "key-mailgun-signing-0123456789"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:gateway-inbound"


@pytest.fixture
def inbound(live: Live) -> Live:
    settings = live.services.settings
    settings.inbound_secret = SECRET
    settings.mailgun_signing_key = MAILGUN_KEY
    return live


async def stored(live: Live) -> list[InboundMessage]:
    async with live.services.db.read() as session:
        return list((await session.exec(select(InboundMessage))).all())


async def decided_while_waiting(live: Live, post: Any) -> dict[str, Any]:
    """Create an approval, park an agent on ?wait, deliver Alice's "approve" with ``post(raw)``; the answer."""
    approval, mail = await request_mail(live)
    waiter = asyncio.create_task(live.client.get(f"/v1/approvals/{approval['id']}", params={"wait": 30}))
    raw = mailclients.gmail(mail, "Approved, go ahead.")
    response = await post(raw)
    assert response.status_code == 200, response.text
    assert response.json() == {"outcome": "decided", "reason": None, "request_id": approval["id"]}
    body = (await asyncio.wait_for(waiter, 10)).json()
    assert body["status"] == "approved" and body["decided_via"] == "reply"
    again = await post(raw)  # the provider's retry of the same mail
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    assert len((await live.client.get(f"/v1/approvals/{approval['id']}")).json()["responses"]) == 1
    return body


def basic(password: str, user: str = "postmark") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# --- raw ------------------------------------------------------------------------------------------------


async def test_raw(inbound: Live) -> None:
    live = inbound
    auth = {"Authorization": f"Bearer {SECRET}", "Content-Type": "message/rfc822"}
    await decided_while_waiting(live, lambda raw: live.client.post("/inbound/raw", content=raw, headers=auth))
    before = len(await stored(live))
    for headers in ({}, {"Authorization": "Bearer wrong-secret-0123456789"}, {"Authorization": f"Basic {SECRET}"}):
        refused = await live.client.post("/inbound/raw", content=b"Subject: x\r\n\r\nhi", headers=headers)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    assert len(await stored(live)) == before  # nothing stored
    empty = await live.client.post("/inbound/raw", content=b"  ", headers=auth)
    assert empty.status_code == 422
    big = await live.client.post("/inbound/raw", content=b"x" * (33 * 1024 * 1024), headers=auth)
    assert big.status_code == 413


async def test_inbound_is_off_without_a_secret(live: Live) -> None:
    refused = await live.client.post(
        "/inbound/raw", content=b"Subject: x\r\n\r\nhi", headers={"Authorization": "Bearer anything-at-all-0123"}
    )
    assert refused.status_code == 401 and "GATEWAY_INBOUND_SECRET" in refused.json()["error"]["message"]


# --- Postmark -------------------------------------------------------------------------------------------


def postmark_payload(raw: bytes) -> dict[str, Any]:
    """Postmark's inbound JSON (developer docs, "Inbound webhook"), with "Include raw email content" on."""
    import email

    msg = email.message_from_bytes(raw)
    to = str(msg["To"] or "")
    mailbox_hash = to.partition("+")[2].partition("@")[0]
    return {
        "FromName": "Alice",
        "MessageStream": "inbound",
        "From": "alice@example.com",
        "FromFull": {"Email": "alice@example.com", "Name": "Alice", "MailboxHash": ""},
        "To": str(msg["To"]),
        "ToFull": [{"Email": str(msg["To"]), "Name": "", "MailboxHash": mailbox_hash}],
        "Cc": "",
        "CcFull": [],
        "Bcc": "",
        "BccFull": [],
        "OriginalRecipient": str(msg["To"]),
        "Subject": str(msg["Subject"]),
        "MessageID": str(uuid.uuid4()),
        "ReplyTo": "",
        "MailboxHash": "",
        "Date": str(msg["Date"]),
        "TextBody": "Approved, go ahead.",
        "HtmlBody": "",
        "StrippedTextReply": "Approved, go ahead.",
        "Tag": "",
        "Headers": [{"Name": k, "Value": str(v)} for k, v in msg.items()],
        "Attachments": [],
        "RawEmail": raw.decode("utf-8"),
    }


async def test_postmark(inbound: Live) -> None:
    live = inbound

    async def post(raw: bytes) -> Any:
        return await live.client.post("/inbound/postmark", json=postmark_payload(raw), headers=basic(SECRET))

    await decided_while_waiting(live, post)
    before = len(await stored(live))
    wrong = await live.client.post(
        "/inbound/postmark", json={"RawEmail": "Subject: x\r\n\r\nhi"}, headers=basic("nope")
    )
    assert wrong.status_code == 401
    without_raw = {k: v for k, v in postmark_payload(b"Subject: x\r\n\r\nhi").items() if k != "RawEmail"}
    missing = await live.client.post("/inbound/postmark", json=without_raw, headers=basic(SECRET))
    assert missing.status_code == 422 and "RawEmail" in missing.json()["error"]["message"]
    not_json = await live.client.post("/inbound/postmark", content=b"{nope", headers=basic(SECRET))
    assert not_json.status_code == 422
    assert len(await stored(live)) == before


# --- SendGrid -------------------------------------------------------------------------------------------


def sendgrid_fields(raw: bytes) -> dict[str, str]:
    """Inbound Parse with "POST the raw, full MIME message": multipart/form-data, the message in `email`."""
    return {
        "to": "replies@example.test",
        "from": "Alice <alice@example.com>",
        "subject": "Re: approval",
        "sender_ip": "203.0.113.7",
        "envelope": json.dumps({"to": ["replies@example.test"], "from": "alice@example.com"}),
        "charsets": json.dumps({"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8"}),
        "SPF": "pass",
        "dkim": "{@example.com : pass}",
        "spam_score": "0.1",
        "email": raw.decode("utf-8"),
    }


async def test_sendgrid(inbound: Live) -> None:
    live = inbound

    async def post(raw: bytes) -> Any:
        fields = sendgrid_fields(raw)
        files = {"attachment-info": (None, "{}")}  # multipart/form-data, as SendGrid posts it
        return await live.client.post("/inbound/sendgrid", data=fields, files=files, headers=basic(SECRET, "sg"))

    await decided_while_waiting(live, post)
    wrong = await live.client.post(
        "/inbound/sendgrid", data=sendgrid_fields(b"Subject: x\r\n\r\nhi"), headers=basic("x")
    )
    assert wrong.status_code == 401
    parsed_mode = {k: v for k, v in sendgrid_fields(b"x").items() if k != "email"}
    missing = await live.client.post("/inbound/sendgrid", data=parsed_mode, headers=basic(SECRET))
    assert missing.status_code == 422 and "raw, full MIME" in missing.json()["error"]["message"]


# --- Mailgun --------------------------------------------------------------------------------------------


def mailgun_fields(
    raw: bytes, *, timestamp: float | None = None, token: str | None = None, key: str = MAILGUN_KEY
) -> dict[str, str]:
    """A route's forward() to a URL ending in `mime`: the message in body-mime, signed (timestamp, token)."""
    stamp = str(int(timestamp if timestamp is not None else time.time()))
    token = token or uuid.uuid4().hex + uuid.uuid4().hex[:18]
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "recipient": "replies@example.test",
        "sender": "alice@example.com",
        "from": "Alice <alice@example.com>",
        "subject": "Re: approval",
        "body-mime": raw.decode("utf-8"),
        "timestamp": stamp,
        "token": token,
        "signature": signature,
    }


async def test_mailgun(inbound: Live) -> None:
    live = inbound
    delivery: dict[bytes, dict[str, str]] = {}

    async def post(raw: bytes) -> Any:  # a retry of the same mail is the same signed delivery
        fields = delivery.setdefault(raw, mailgun_fields(raw))
        return await live.client.post("/inbound/mailgun/mime", data=fields)

    await decided_while_waiting(live, post)
    before = len(await stored(live))
    other = b"From: alice@example.com\r\nSubject: x\r\n\r\napprove\r\n"
    for fields in (
        mailgun_fields(other, key="wrong-key-0123456789"),
        mailgun_fields(other, timestamp=time.time() - 3600),  # stale
        {**mailgun_fields(other), "signature": ""},
        {**next(iter(delivery.values())), "body-mime": other.decode()},  # a seen token with another message
    ):
        refused = await live.client.post("/inbound/mailgun", data=fields)
        assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "replayed"
    assert len(await stored(live)) == before
    # Tokens are forgotten once their signatures are stale anyway: the kv table does not grow for ever.
    from gateway.inbound import routes as inbound_routes
    from gateway.models import KeyValue

    long_ago = f"{int(time.time() - inbound_routes.TOKEN_KEEP - 60):012d} {'0' * 64}"
    async with live.services.db.write() as session:
        session.add(KeyValue(key="mailgun-token:stale", value=long_ago))
        session.add(KeyValue(key="mailgun-tokenless", value="000000000000 unrelated"))  # just after the range
    inbound_routes._pruned_at[0] = 0.0
    fresh = b"From: alice@example.com\r\nSubject: y\r\nMessage-ID: <fresh@example.com>\r\n\r\napprove\r\n"
    assert (await live.client.post("/inbound/mailgun", data=mailgun_fields(fresh))).status_code == 200
    async with live.services.db.read() as session:
        assert await session.get(KeyValue, "mailgun-token:stale") is None
        assert await session.get(KeyValue, "mailgun-tokenless") is not None
        seen = next(iter(delivery.values()))["token"]
        assert await session.get(KeyValue, f"mailgun-token:{seen}") is not None  # recent: still refused again
    live.services.settings.mailgun_signing_key = None
    off = await live.client.post("/inbound/mailgun", data=mailgun_fields(other))
    assert off.status_code == 401 and "GATEWAY_MAILGUN_SIGNING_KEY" in off.json()["error"]["message"]


# --- Amazon SES through SNS ---------------------------------------------------------------------------


class SnsHost(LoopbackServer):
    """Plays Amazon SNS on loopback: serves its signing certificate and records subscription confirmations."""

    def __init__(self) -> None:
        self.port = free_port()
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.eu-west-1.amazonaws.com")])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )
        self.confirmed: list[str] = []

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/cert.pem":
            body = self.cert.public_bytes(serialization.Encoding.PEM)
        else:
            self.confirmed.append(scope["path"] + "?" + scope["query_string"].decode())
            body = b"<ConfirmSubscriptionResponse/>"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    def sign(self, message: dict[str, Any], version: str = "2") -> dict[str, Any]:
        message = {**message, "SignatureVersion": version, "SigningCertURL": f"{self.base}/cert.pem"}
        algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
        signature = self.key.sign(sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
        return {**message, "Signature": base64.b64encode(signature).decode()}

    def notification(self, raw: bytes, version: str = "2", topic: str = TOPIC) -> dict[str, Any]:
        """An SES receipt rule's SNS action (encoding BASE64), as the SES developer guide shows it."""
        ses = {
            "notificationType": "Received",
            "mail": {
                "timestamp": datetime.now(UTC).isoformat(),
                "source": "alice@example.com",
                "messageId": uuid.uuid4().hex,
                "destination": ["replies@example.test"],
                "headersTruncated": False,
                "commonHeaders": {"from": ["alice@example.com"], "to": ["replies@example.test"]},
            },
            "receipt": {
                "recipients": ["replies@example.test"],
                "spamVerdict": {"status": "PASS"},
                "virusVerdict": {"status": "PASS"},
                "spfVerdict": {"status": "PASS"},
                "dkimVerdict": {"status": "PASS"},
                "dmarcVerdict": {"status": "PASS"},
                "action": {"type": "SNS", "topicArn": topic, "encoding": "BASE64"},
            },
            "content": base64.b64encode(raw).decode(),
        }
        return self.sign(
            {
                "Type": "Notification",
                "MessageId": str(uuid.uuid4()),
                "TopicArn": topic,
                "Subject": "Amazon SES Email Receipt Notification",
                "Message": json.dumps(ses),
                "Timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "UnsubscribeURL": f"{self.base}/?Action=Unsubscribe",
            },
            version,
        )


@pytest.fixture
async def sns(inbound: Live) -> AsyncIterator[SnsHost]:
    host = SnsHost()
    await host.start()
    inbound.services.settings.sns_cert_url_pattern = rf"^http://127\.0\.0\.1:{host.port}/"  # tests only
    yield host
    await host.stop()


async def test_ses_through_sns(inbound: Live, sns: SnsHost) -> None:
    live = inbound
    token = uuid.uuid4().hex
    confirm = sns.sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": str(uuid.uuid4()),
            "Token": token,
            "TopicArn": TOPIC,
            "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
            "SubscribeURL": f"{sns.base}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}",
            "Timestamp": "2026-12-04T21:00:00.000Z",
        },
        version="1",
    )
    confirmed = await live.client.post("/inbound/ses", json=confirm)
    assert confirmed.status_code == 200 and confirmed.json() == {"confirmed": TOPIC}
    assert sns.confirmed == [f"/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}"]

    notifications: dict[bytes, dict[str, Any]] = {}

    async def post(raw: bytes) -> Any:
        return await live.client.post("/inbound/ses", json=notifications.setdefault(raw, sns.notification(raw)))

    await decided_while_waiting(live, post)
    before = len(await stored(live))
    other = b"From: alice@example.com\r\nSubject: x\r\n\r\napprove\r\n"
    tampered = {**sns.notification(other), "Message": json.dumps({"notificationType": "Received", "content": "eA=="})}
    foreign_cert = {**sns.notification(other), "SigningCertURL": "https://evil.example/cert.pem"}
    for message in (tampered, foreign_cert, {**sns.notification(other), "SignatureVersion": "3"}):
        refused = await live.client.post("/inbound/ses", json=message)
        assert refused.status_code == 401, refused.text
    live.services.settings.ses_topic_arns = "arn:aws:sns:eu-west-1:123456789012:another"
    assert (await live.client.post("/inbound/ses", json=sns.notification(other))).status_code == 401
    assert len(await stored(live)) == before
    not_sns = await live.client.post("/inbound/ses", json={"hello": "world"})
    assert not_sns.status_code == 422
