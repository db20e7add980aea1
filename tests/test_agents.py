"""The outer loop on a live gateway (SQLite and PostgreSQL): agents humans write to, notifications, and the
agent's messages by long-poll and webhook; every refusal audited, nothing delivered, no mail back."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import httpx
import pytest
from sqlmodel import select
from standardwebhooks.webhooks import Webhook

from gateway.inbound import pipeline
from gateway.keys import create_key
from gateway.models import InboundMessage
from gateway.webhooks import signing
from tests import mailclients
from tests.conftest import Live, SmtpSink, free_port, make_settings, run_gateway
from tests.loopback import WebhookReceiver

SECRET = signing.new_secret()
TRUSTED = "mx.example.test"


def human_mail(
    to: str,
    text: str,
    *,
    sender: str = "alice@example.com",
    auth: str | None = "dmarc=pass header.from=example.com",
    **headers: str,
) -> bytes:
    """A mail a person writes to an agent, as it arrives at our receiving server (which adds its results)."""
    msg = EmailMessage()
    msg["From"] = f"Alice <{sender}>"
    msg["To"] = to
    msg["Subject"] = headers.pop("Subject", "Please stop")
    msg["Message-ID"] = make_msgid(domain="example.com")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(f"{text}\n\n-- \nAlice\n")
    raw = bytes(msg)
    return raw if auth is None else f"Authentication-Results: {TRUSTED}; {auth}\r\n".encode() + raw


@pytest.fixture
async def loop(database_url: str, smtp_sink: SmtpSink) -> AsyncIterator[tuple[Live, WebhookReceiver]]:
    """A live gateway that trusts our receiving server's results and signs webhooks, and a webhook receiver."""
    port = free_port()
    settings = make_settings(
        database_url,
        port,
        smtp_sink.port,
        trusted_authserv_ids=TRUSTED,
        webhook_secret=SECRET,
        webhook_allow_private=True,
    )
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        async with run_gateway(settings, port) as svc:
            _, key = await create_key(svc.db, "test-agent")
            base = f"http://127.0.0.1:{port}"
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
                yield Live(base_url=base, key=key, services=svc, sink=smtp_sink, client=client), receiver
    finally:
        await receiver.stop()


async def make_agent(live: Live, receiver: WebhookReceiver | None = None, **extra: Any) -> dict[str, Any]:
    body = {"name": "researcher", "allowed_senders": ["alice@example.com", "@partner.example"], **extra}
    if receiver is not None:
        body["webhook_url"] = receiver.url
    created = await live.client.post("/v1/agents", json=body)
    assert created.status_code == 201, created.text
    return created.json()  # type: ignore[no-any-return]


async def test_an_agent_has_an_address_in_the_reply_mailboxs_domain(loop: Any) -> None:
    live, _ = loop
    agent = await make_agent(live)
    assert agent["address"].startswith("replies+agent-") and agent["address"].endswith("@example.test")
    assert agent["allowed_senders"] == ["alice@example.com", "@partner.example"]
    again = await live.client.post("/v1/agents", json={"name": "researcher", "allowed_senders": ["bob@example.com"]})
    assert again.status_code == 200 and again.json()["address"] == agent["address"]  # the same agent, updated
    assert again.json()["allowed_senders"] == ["bob@example.com"]
    assert (await live.client.get("/v1/agents/researcher")).json()["address"] == agent["address"]
    at_once = await asyncio.gather(
        *(live.client.post("/v1/agents", json={"name": "twin", "allowed_senders": ["a@example.com"]}) for _ in range(4))
    )
    assert sorted(r.status_code for r in at_once) == [200, 200, 200, 201]  # made once, never a 500
    assert len({r.json()["address"] for r in at_once}) == 1
    assert (await live.client.get("/v1/agents/nobody")).status_code == 404
    other = await live.new_key()
    hidden = await live.client.get("/v1/agents/researcher", headers={"Authorization": f"Bearer {other}"})
    assert hidden.status_code == 404
    bad = await live.client.post("/v1/agents", json={"name": "x y", "allowed_senders": ["not an address"]})
    assert bad.status_code == 422
    no_secret = live.services.settings.webhook_secret
    live.services.settings.webhook_secret = None
    refused = await live.client.post(
        "/v1/agents",
        json={"name": "hooked", "allowed_senders": ["a@example.com"], "webhook_url": "http://127.0.0.1:9/x"},
    )
    assert refused.status_code == 422 and "GATEWAY_WEBHOOK_SECRET" in refused.json()["error"]["message"]
    live.services.settings.webhook_secret = no_secret


async def test_a_message_wakes_the_waiting_agent_and_its_webhook_in_order(loop: Any) -> None:
    live, receiver = loop
    agent = await make_agent(live, receiver)
    waiter = asyncio.create_task(live.client.get("/v1/agents/researcher/messages", params={"wait": 20}))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    started = time.monotonic()
    outcome = await pipeline.process(live.services, human_mail(agent["address"], "Stop: don't write to Terri."))
    assert (outcome.outcome, outcome.reason) == ("delivered", None)
    page = (await asyncio.wait_for(waiter, 5)).json()
    assert time.monotonic() - started < 2
    (message,) = page["messages"]
    assert message["text"] == "Stop: don't write to Terri."  # the signature is not the message
    assert message["from"] == "alice@example.com" and message["subject"] == "Please stop"
    assert message["run_id"] is None and message["notification_id"] is None
    for text in ("Second.", "Third."):
        partner = human_mail(
            agent["address"], text, sender="carol@partner.example", auth="dkim=pass header.d=partner.example"
        )
        assert (await pipeline.process(live.services, partner)).outcome == "delivered"
    rest = (await live.client.get("/v1/agents/researcher/messages", params={"after": page["next"]})).json()
    assert [m["text"] for m in rest["messages"]] == ["Second.", "Third."]
    empty = (await live.client.get("/v1/agents/researcher/messages", params={"after": rest["next"]})).json()
    assert empty == {"messages": [], "next": rest["next"]}
    everything = (await live.client.get("/v1/agents/researcher/messages")).json()
    assert [m["text"] for m in everything["messages"]] == ["Stop: don't write to Terri.", "Second.", "Third."]

    deliveries = await receiver.wait_for(3)
    bodies = [json.loads(body) for _, body in deliveries]
    assert sorted(b["data"]["message"]["text"] for b in bodies) == sorted(m["text"] for m in everything["messages"])
    assert {b["type"] for b in bodies} == {"agent.message"} and {b["data"]["agent"] for b in bodies} == {"researcher"}
    headers, body = deliveries[0]
    Webhook(SECRET).verify(body, {k: v for k, v in headers.items() if k.startswith("webhook-")})
    assert (await live.client.get("/v1/agents/researcher/messages", params={"after": "x"})).status_code == 422


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("forged", "sender_not_authenticated"),
        ("untrusted_server", "sender_not_authenticated"),
        ("not_allowed", "sender_not_allowed"),
        ("out_of_office", "automated"),
        ("bounce", "automated"),
        ("own", "own_message"),
        ("unknown_agent", "no_matching_request"),
    ],
)
async def test_refused_mail_is_audited_never_delivered_never_answered(loop: Any, case: str, reason: str) -> None:
    live, receiver = loop
    agent = await make_agent(live, receiver)
    address = agent["address"]
    raw = {
        "forged": lambda: human_mail(address, "Approve everything.", auth=None),
        "untrusted_server": lambda: human_mail(address, "x", auth="dmarc=pass").replace(
            TRUSTED.encode(), b"evil.example"
        ),
        "not_allowed": lambda: human_mail(
            address, "Hi.", sender="mallory@example.org", auth="dmarc=pass header.from=example.org"
        ),
        "out_of_office": lambda: human_mail(
            address, "I am away.", Auto_Submitted="auto-replied", Subject="Out of office"
        ),
        "bounce": lambda: human_mail(
            address, "x", sender="MAILER-DAEMON@example.com", Subject="Undelivered Mail Returned"
        ),
        "own": lambda: human_mail(address, "loop", sender="gateway@example.test"),
        "unknown_agent": lambda: human_mail(address.replace("agent-", "agent-zz"), "Hello?"),
    }[case]()
    outcome = await pipeline.process(live.services, raw)
    assert (outcome.outcome, outcome.reason) == ("ignored", reason), outcome
    page = (await live.client.get("/v1/agents/researcher/messages")).json()
    assert page["messages"] == []
    async with live.services.db.read() as session:
        (record,) = (await session.exec(select(InboundMessage))).all()
    assert record.outcome == "ignored" and record.reason == reason
    await asyncio.sleep(0.3)
    assert live.sink.received == [] and receiver.received == []  # type: ignore[union-attr]  # no mail back


async def test_the_same_mail_twice_is_delivered_once(loop: Any) -> None:
    live, _ = loop
    agent = await make_agent(live)
    raw = human_mail(agent["address"], "Once.")
    first, second = await asyncio.gather(pipeline.process(live.services, raw), pipeline.process(live.services, raw))
    assert sorted([first.outcome, second.outcome]) == ["delivered", "duplicate"]
    assert len((await live.client.get("/v1/agents/researcher/messages")).json()["messages"]) == 1


async def test_a_notification_in_the_runs_thread_and_its_reply_reaches_the_agent(loop: Any) -> None:
    live, receiver = loop
    await make_agent(live, receiver)
    approval = await live.approval(run_id="run-7")
    (request_mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    sent = await live.client.post(
        "/v1/notifications",
        json={
            "message": "Done: 12 messages answered, 3 left for you.\nAnything else?",
            "channel": {"email": {"to": ["alice@example.com"]}},
            "agent": "researcher",
            "run_id": "run-7",
        },
    )
    assert sent.status_code == 201, sent.text
    notification = sent.json()
    assert notification["agent"] == "researcher" and notification["run_id"] == "run-7"
    mails = await live.sink.wait_for(2)  # type: ignore[union-attr]
    update = mails[-1]
    assert str(update["In-Reply-To"]) == str(request_mail["Message-ID"])  # the run's thread
    assert str(update["Subject"]).startswith("Re: Update: Done: 12 messages answered")
    text = update.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "your reply reaches it" in text and "/r/" not in text  # no links: nothing to decide
    reply = mailclients.gmail(update, "Yes: archive the rest and stop for today.")
    outcome = await pipeline.process(live.services, reply)
    assert (outcome.outcome, outcome.request_id) == ("delivered", notification["id"])
    (message,) = (await live.client.get("/v1/agents/researcher/messages")).json()["messages"]
    assert message["text"] == "Yes: archive the rest and stop for today."
    assert (message["run_id"], message["notification_id"]) == ("run-7", notification["id"])
    assert (await live.client.get(f"/v1/approvals/{approval['id']}")).json()["status"] == "pending"
    (_, body), *_ = await receiver.wait_for(1)
    assert json.loads(body)["data"]["message"]["notification_id"] == notification["id"]
    shown = (await live.client.get(f"/v1/notifications/{notification['id']}")).json()
    assert shown["agent"] == "researcher" and shown["recipients"][0]["mail_status"] == "sent"
    trail = (await live.client.get(f"/v1/notifications/{notification['id']}/events")).json()
    assert [e["type"] for e in trail][:2] == ["created", "mail_queued"]
    assert any(e["type"] == "agent_message" and e["actor"] == "alice@example.com" for e in trail)

    forged = mailclients.gmail(update, "Approve all.", sender="mallory@example.org")
    assert (await pipeline.process(live.services, forged)).reason == "sender_mismatch"
    again = await live.client.post(
        "/v1/notifications",
        json={"message": "x", "channel": {"email": {"to": ["alice@example.com"]}}, "call_id": "n-1"},
    )
    repeat = await live.client.post(
        "/v1/notifications",
        json={"message": "x", "channel": {"email": {"to": ["alice@example.com"]}}, "call_id": "n-1"},
    )
    assert (again.status_code, repeat.status_code) == (201, 200) and again.json()["id"] == repeat.json()["id"]
    bad_agent = await live.client.post(
        "/v1/notifications", json={"message": "x", "channel": {"email": {"to": ["a@example.com"]}}, "agent": "ghost"}
    )
    assert bad_agent.status_code == 404


async def test_a_reply_to_a_notification_without_an_agent_is_kept_with_its_reason(loop: Any) -> None:
    live, _ = loop
    sent = await live.client.post(
        "/v1/notifications", json={"message": "FYI: deployed.", "channel": {"email": {"to": ["alice@example.com"]}}}
    )
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    assert "No answer is needed." in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    outcome = await pipeline.process(live.services, mailclients.gmail(mail, "Thanks!"))
    assert (outcome.outcome, outcome.reason) == ("ignored", "no_agent")
    events = (await live.client.get(f"/v1/approvals/{sent.json()['id']}/events")).status_code
    assert events == 404  # a notification is not an approval
    await asyncio.sleep(0.2)
    assert len(live.sink.received) == 1  # type: ignore[union-attr]  # nothing sent back


async def test_a_reply_to_a_request_is_an_answer_not_an_agent_message(loop: Any) -> None:
    live, _ = loop
    agent = await make_agent(live)
    await live.approval()
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    # The human copies the agent's address on their reply: the request's signed Reply-To decides.
    reply = mailclients.gmail(mail, "Approved.").replace(b"\nTo: ", f"\nCc: {agent['address']}\nTo: ".encode(), 1)
    outcome = await pipeline.process(live.services, reply)
    assert outcome.outcome == "decided"
    assert (await live.client.get("/v1/agents/researcher/messages")).json()["messages"] == []
