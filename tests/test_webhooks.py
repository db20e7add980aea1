"""Webhooks: Standard Webhooks signatures checked by an independent implementation (the `standardwebhooks`
package), private targets refused, and an endpoint that is down and comes back gets every outcome once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.keys import create_key
from gateway.models import OutboxMessage, build
from gateway.settings import Settings
from gateway.webhooks import signing, transport
from gateway.webhooks.transport import PrivateTargetError, WebhookTransport, check_target, is_public
from tests.conftest import SmtpSink, free_port, make_settings, run_gateway
from tests.loopback import WebhookReceiver as Receiver
from tests.test_approvals_service import by_link, request_mail_to

SECRET = signing.new_secret()


def test_our_signature_verifies_with_the_reference_library() -> None:
    body = json.dumps({"type": "approval.approved", "data": {"id": "apr_1"}})
    headers = signing.headers(SECRET, "msg_1", body)
    assert Webhook(SECRET).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace("apr_1", "apr_2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)


def test_we_verify_what_the_reference_library_signs() -> None:
    body = '{"a":1}'
    now = datetime.now(UTC)
    theirs = Webhook(SECRET).sign("msg_2", now, body)
    received = {"webhook-id": "msg_2", "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": theirs}
    signing.verify(SECRET, received, body)
    with pytest.raises(signing.WebhookVerificationError, match="no signature matches"):
        signing.verify(SECRET, received, '{"a":2}')
    with pytest.raises(signing.WebhookVerificationError, match="tolerance"):
        signing.verify(SECRET, received, body, now=time.time() + 3600)
    with pytest.raises(signing.WebhookVerificationError, match="malformed"):
        signing.verify(SECRET, {"webhook-id": "x"}, body)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.10", False),
        ("172.16.5.5", False),
        ("169.254.169.254", False),  # cloud metadata
        ("::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("0.0.0.0", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public(address) is public


async def test_names_are_checked_by_what_they_resolve_to() -> None:
    with pytest.raises(PrivateTargetError, match=r"127\.0\.0\.1|::1"):
        await check_target("http://localhost:9/hook")
    with pytest.raises(PrivateTargetError):
        await check_target("http://[::1]:9/hook")
    await check_target("https://8.8.8.8/hook")  # a public literal passes without any lookup


@contextlib.asynccontextmanager
async def gateway(database_url: str, sink: SmtpSink, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    values = make_settings(database_url, port, sink.port, webhook_secret=SECRET, **settings)
    async with run_gateway(values, port) as svc:
        _, key = await create_key(svc.db, "hook-agent")
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as client:
            client.services = svc  # type: ignore[attr-defined]
            yield client


BODY = {"fn": "wire_money", "kwargs": {"amount": 10}, "channel": {"email": {"to": ["alice@example.com"]}}}


async def test_endpoint_down_then_back_gets_the_outcome_once(database_url: str, smtp_sink: SmtpSink) -> None:
    receiver = Receiver()
    global_receiver = Receiver()
    await global_receiver.start()
    async with gateway(database_url, smtp_sink, webhook_allow_private=True, webhook_urls=global_receiver.url) as client:
        created = (await client.post("/v1/approvals", json={**BODY, "callback_url": receiver.url})).json()
        mail = await request_mail_to(smtp_sink, created["id"], "alice@example.com")
        assert await by_link(mail, "approve") == 303

        events_url = f"/v1/approvals/{created['id']}/events"
        for _ in range(200):  # the callback endpoint is down: the delivery is deferred, with the reason
            events = (await client.get(events_url)).json()
            if any(e["type"] == "webhook_deferred" for e in events):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("no deferred webhook")
        # The global endpoint was up all along and got it at once.
        [(headers, body)] = await global_receiver.wait_for(1)
        assert Webhook(SECRET).verify(body, headers)["type"] == "approval.approved"

        await receiver.start()
        [(headers, body)] = await receiver.wait_for(1)
        payload = Webhook(SECRET).verify(body, headers)
        assert payload["type"] == "approval.approved"
        assert payload["data"]["id"] == created["id"] and payload["data"]["status"] == "approved"
        assert payload["data"]["decided_by"] == "alice@example.com"
        deferred = [e for e in (await client.get(events_url)).json() if e["type"] == "webhook_deferred"]
        assert headers["webhook-id"] == deferred[0]["data"]["message_id"]  # the same id on every attempt
        for _ in range(200):  # both recorded as sent: neither is claimed again, so the counts below are final
            events = [e["type"] for e in (await client.get(events_url)).json()]
            if events.count("webhook_sent") == 2:
                break
            await asyncio.sleep(0.05)
        assert events.count("webhook_sent") == 2 and events.count("webhook_queued") == 2
        assert len(receiver.received) == 1 and len(global_receiver.received) == 1
    await receiver.stop()
    await global_receiver.stop()


async def test_responses_are_opt_in_and_private_targets_refused(database_url: str, smtp_sink: SmtpSink) -> None:
    async with gateway(database_url, smtp_sink, webhook_urls="http://localhost:9/hook") as client:
        refused = await client.post("/v1/approvals", json={**BODY, "callback_url": "http://10.0.0.8/hook"})
        assert refused.status_code == 422
        assert "non-public" in refused.json()["error"]["message"]

        two = {**BODY, "channel": {"email": {"to": ["alice@example.com", "bob@example.com"]}}, "policy": "all"}
        created = (await client.post("/v1/approvals", json=two)).json()
        mail = await request_mail_to(smtp_sink, created["id"], "alice@example.com")
        assert await by_link(mail, "approve") == 303
        events_url = f"/v1/approvals/{created['id']}/events"
        # A response that does not decide: the global endpoint did not ask for responses, so nothing is queued.
        assert "webhook_queued" not in [e["type"] for e in (await client.get(events_url)).json()]

        await client.post(f"/v1/approvals/{created['id']}/cancel")
        for _ in range(200):
            events = (await client.get(events_url)).json()
            failed = [e for e in events if e["type"] == "webhook_failed"]
            if failed:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the webhook to a loopback name was not refused")
        assert "non-public" in failed[0]["data"]["error"]


def hook_row(url: str) -> OutboxMessage:
    return build(OutboxMessage, id="msg_1", kind="webhook", mail_from="", rcpt_to=[url], message_id="m1", raw="{}")


async def test_the_connection_goes_to_the_address_that_was_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    # DNS rebinding: a name that answers the check with a public address and the connection's own lookup with a
    # private one. The transport connects to the checked address and never looks the name up again: here the
    # name resolves (for the check) to the receiver's address, and has no answer at all for anyone else.
    receiver = Receiver()
    await receiver.start()
    loop = asyncio.get_running_loop()
    real_getaddrinfo = loop.getaddrinfo

    async def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.rebind.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0))]
        return await real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    monkeypatch.setattr(transport, "is_public", lambda address: address == "127.0.0.1")  # stands in for public
    settings = Settings(webhook_secret=SECRET, webhook_allow_private=False)
    hooks = WebhookTransport(settings)
    try:
        url = f"http://hooks.rebind.test:{receiver.port}/hook"
        await hooks.send(
            build(OutboxMessage, id="msg_1", kind="webhook", mail_from="", rcpt_to=[url], message_id="m1", raw="{}")
        )
        ((headers, body),) = await receiver.wait_for(1)
        assert headers["host"] == f"hooks.rebind.test:{receiver.port}" and body == "{}"
        # A name that was never checked is never connected to, even through the same client.
        with pytest.raises(httpx.ConnectError):
            await hooks.client.post(f"http://localhost:{receiver.port}/hook", content="{}")
        assert len(receiver.received) == 1
    finally:
        await hooks.close()
        await receiver.stop()


async def test_a_private_address_among_the_answers_refuses_the_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def mixed(host: str, *args: Any, **kwargs: Any) -> Any:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.8", 0)),
        ]

    monkeypatch.setattr(loop, "getaddrinfo", mixed)
    hooks = WebhookTransport(Settings(webhook_secret=SECRET, webhook_allow_private=False))
    try:
        with pytest.raises(PrivateTargetError) as refused:
            await hooks.send(
                build(
                    OutboxMessage,
                    id="msg_2",
                    kind="webhook",
                    mail_from="",
                    rcpt_to=["https://mixed.test/h"],
                    message_id="m2",
                    raw="{}",
                )
            )
        assert refused.value.address == "10.0.0.8"
        assert hooks.backend.pins == {}  # nothing was pinned, nothing connected
    finally:
        await hooks.close()
