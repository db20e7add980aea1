"""The inbound sources' pure parts: every payload is the message or a clear refusal (SourceError), never a crash."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.inbound import sources
from gateway.inbound.sources import BadPayload, SourceError, Unauthorized


def test_sns_string_to_sign_follows_aws() -> None:
    message = {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:t",
        "Message": "hello\nworld",
        "Timestamp": "2026-12-04T21:00:00.000Z",
        "UnsubscribeURL": "https://x",
    }
    expected = (
        "Message\nhello\nworld\nMessageId\nm-1\nTimestamp\n2026-12-04T21:00:00.000Z\nTopicArn\narn:t\n"
        "Type\nNotification\n"
    )
    assert sources.sns_string_to_sign(message) == expected.encode()
    with_subject = sources.sns_string_to_sign({**message, "Subject": "s"})
    assert b"MessageId\nm-1\nSubject\ns\nTimestamp" in with_subject
    with pytest.raises(BadPayload):
        sources.sns_string_to_sign({**message, "Type": "Other"})
    with pytest.raises(BadPayload):
        sources.sns_string_to_sign({k: v for k, v in message.items() if k != "MessageId"})


def test_mailgun_signature_freshness() -> None:
    key, token, now = "k" * 20, "t" * 50, time.time()

    def signed(stamp: float) -> dict[str, str]:
        ts = str(int(stamp))
        sig = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
        return {"timestamp": ts, "token": token, "signature": sig, "body-mime": "Subject: x\r\n\r\nhi"}

    raw, got = sources.mailgun(signed(now), key, now=now)
    assert raw.startswith(b"Subject: x") and got == token
    assert sources.mailgun(signed(now - 14 * 60), key, now=now)
    with pytest.raises(Unauthorized, match="old"):
        sources.mailgun(signed(now - 16 * 60), key, now=now)
    with pytest.raises(Unauthorized, match="old"):
        sources.mailgun(signed(now + 16 * 60), key, now=now)  # from the future, too
    nan = signed(now)
    nan["timestamp"] = "nan"
    nan["signature"] = hmac.new(key.encode(), ("nan" + token).encode(), hashlib.sha256).hexdigest()
    with pytest.raises(Unauthorized, match="not a number"):
        sources.mailgun(nan, key, now=now)
    with pytest.raises(BadPayload, match="body-mime"):
        sources.mailgun({**signed(now), "body-mime": ""}, key, now=now)


def test_basic_and_bearer() -> None:
    secret = "s" * 20
    sources.check_bearer(f"Bearer {secret}", secret)
    sources.check_basic("Basic " + base64.b64encode(f"any:{secret}".encode()).decode(), secret)
    for bad in (None, "", "Bearer", f"Basic {secret}", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()):
        with pytest.raises(Unauthorized):
            sources.check_basic(bad, secret)
    with pytest.raises(Unauthorized, match="GATEWAY_INBOUND_SECRET"):
        sources.check_bearer(f"Bearer {secret}", None)


def test_ses_content_encodings() -> None:
    def sns(notification: object) -> dict[str, str]:
        return {"Message": json.dumps(notification)}

    raw = b"Subject: x\r\n\r\nhi"
    base = {"notificationType": "Received", "receipt": {"action": {"type": "SNS", "encoding": "BASE64"}}}
    assert sources.ses_message(sns({**base, "content": base64.b64encode(raw).decode()})) == raw
    utf8 = {**base, "receipt": {"action": {"encoding": "UTF8"}}, "content": raw.decode()}
    assert sources.ses_message(sns(utf8)) == raw
    odd = {"notificationType": "Received", "receipt": [1], "content": raw.decode()}  # no action: UTF-8 by default
    assert sources.ses_message(sns(odd)) == raw
    for bad in ({**base, "content": "%%%"}, {**base}, {"notificationType": "Bounce"}, [1], "x"):
        with pytest.raises(BadPayload):
            sources.ses_message(sns(bad))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500))
def test_any_body_is_a_message_or_a_clear_refusal(body: bytes) -> None:
    for parse in (sources.raw_message, sources.postmark, sources.parse_sns):
        with contextlib.suppress(SourceError):
            parse(body)
    with contextlib.suppress(SourceError):
        message = sources.parse_sns(body)
        sources.ses_message(message)
        sources.sns_string_to_sign(message)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["email", "body-mime", "timestamp", "token", "signature", "x"]),
        st.one_of(st.text(max_size=50), st.binary(max_size=50)),
    )
)
def test_any_form_is_a_message_or_a_clear_refusal(form: dict[str, object]) -> None:
    for parse in (sources.sendgrid, lambda f: sources.mailgun(f, "k" * 20)):
        with contextlib.suppress(SourceError):
            parse(form)
