"""The request mail, built from the same objects the service stores."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from gateway.links.tokens import Signer
from gateway.mail.compose import compose_request_mail
from gateway.models import Recipient, Request, new_id, utcnow
from gateway.services import Services
from gateway.settings import Settings
from gateway.templating import make_environment

SECRET = "compose-secret-key-0123456789"


def services(templates_dir: Path | None = None) -> Services:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        public_url="https://gw.example.com",
        secret_keys=SECRET,
        from_address="gateway@example.com",
        reply_address="replies@example.com",
        templates_dir=templates_dir,
    )
    return Services(
        settings=settings, db=None, signer=Signer([SECRET], 3600), templates=make_environment(templates_dir)
    )  # type: ignore[arg-type]


def request(**overrides: Any) -> Request:
    values: dict[str, Any] = {
        "id": new_id("apr"),
        "kind": "approval",
        "api_key_id": "key_1",
        "call_id": "c",
        "ref": "ABCD2345",
        "fn": "send_email",
        "kwargs": {"to": "ceo@example.com", "nested": {"b": [1, 2], "a": "x"}, "html": "<script>alert(1)</script>"},
        "channel": {"email": {"to": ["alice@example.com"], "context": "Weekly <b>report</b>"}},
        "policy": {"kind": "any"},
        "content_hash": "h",
        "expires_at": utcnow() + timedelta(hours=2),
    }
    values.update(overrides)
    return Request(**values)


def build(req: Request, svc: Services | None = None, role: str = "to") -> tuple[EmailMessage, Any]:
    svc = svc or services()
    rcpt = Recipient(id=new_id("rcp"), request_id=req.id, address="alice@example.com", role=role)
    row = compose_request_mail(svc, req, rcpt, 1, "research-agent")
    msg = email.message_from_string(row.raw, policy=email.policy.default)
    return msg, row  # type: ignore[return-value]


def test_headers() -> None:
    svc = services()
    msg, row = build(request(), svc)
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["From"].addresses[0].addr_spec == "gateway@example.com"
    assert msg["To"] == "alice@example.com"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Subject"] == "Approval needed: send_email [#ABCD2345]"
    assert msg["Message-ID"] == row.message_id
    assert row.message_id.startswith("<") and row.message_id.endswith("@example.com>")
    assert "\r\n Message-ID" not in row.raw and f"Message-ID: {row.message_id}" in row.raw  # never folded
    reply_to = msg["Reply-To"].addresses[0]
    assert reply_to.domain == "example.com"
    local, tag = reply_to.username.split("+", 1)
    assert local == "replies"
    assert svc.signer.verify_reply(tag) == row.recipient_id
    assert svc.signer.verify_reply(tag.upper()) == row.recipient_id
    assert "In-Reply-To" not in msg and "References" not in msg


def test_message_ids_are_unique_per_mail() -> None:
    req = request()
    ids = {build(req)[1].message_id for _ in range(50)}
    assert len(ids) == 50


def test_threading_and_custom_subject() -> None:
    req = request(
        channel={
            "email": {
                "to": ["alice@example.com"],
                "subject": "Re: Your invoice",
                "in_reply_to": "<orig@client.example>",
                "references": ["<root@client.example>"],
            }
        }
    )
    msg, _ = build(req)
    assert msg["Subject"] == "Re: Your invoice [#ABCD2345]"
    assert msg["In-Reply-To"] == "<orig@client.example>"
    assert msg["References"] == "<root@client.example> <orig@client.example>"


def test_agent_content_is_escaped_in_html_and_intact_in_text() -> None:
    msg, _ = build(request())
    html = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>report</b>" not in html and "Weekly &lt;b&gt;report&lt;/b&gt;" in html
    assert "<script>alert(1)</script>" in text  # plain text is not HTML: shown as sent
    assert '"a": "x"' in text and '"b": [' in text  # nested values as indented JSON
    assert "<script" not in html.lower().replace("&lt;script", "")


def test_links_per_recipient_in_both_parts() -> None:
    msg, _row = build(request())
    html = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    for part in (html, text):
        assert "https://gw.example.com/r/" in part
        assert "/approve" in part and "/reject" in part
    assert "expires" in text


def test_long_values_are_folded() -> None:
    msg, _ = build(request(kwargs={"body": "y" * 10_000}))
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "y" * 2000 in text and "y" * 2001 not in text
    assert "8000 more characters" in text


def test_question_mail_has_option_links() -> None:
    req = request(
        kind="question",
        fn=None,
        kwargs=None,
        message="Which one?\nSecond line",
        options=[
            {"name": "a", "title": "Option A", "description": None},
            {"name": "b", "title": None, "description": None},
        ],
    )
    msg, _ = build(req)
    assert msg["Subject"] == "Question: Which one? [#ABCD2345]"
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "/option/a" in text and "/option/b" in text and "/answer" in text
    assert "Option A" in text


def test_cc_copy_has_no_links() -> None:
    msg, _ = build(request(), role="cc")
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "/r/" not in text
    assert "copied for information" in text


def test_templates_dir_overrides_one_template(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "approval.txt").write_text("CUSTOM {{ request.fn }} {{ links.approve }}\n")
    msg, _ = build(request(), services(tmp_path))
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert text.startswith("CUSTOM send_email https://gw.example.com/r/")
    assert "Approve" in html  # the HTML template is still the built-in one
