"""The asyncio client against a real `gateway dev` process."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from typing import Any

import httpx
import pytest

from gateway.client import ApprovalRejectedError, AsyncGateway, Gateway, InboxTimeoutError, WaitTimeoutError
from tests.processes import DEV_KEY, click, link, mails_to, wait_for_mail

Dev = tuple[str, subprocess.Popen[str]]


def address() -> str:
    return f"boss-{uuid.uuid4().hex[:8]}@example.com"


async def human(base: str, boss: str, ending: str, **fields: str) -> None:
    (mail,) = await asyncio.to_thread(wait_for_mail, base, boss)
    response = await asyncio.to_thread(click, link(mail, ending), **fields)
    assert response.status_code == 303, response.text


async def test_async_gated_function_approved_and_rejected(dev_gateway: Dev) -> None:
    base, _ = dev_gateway
    async with AsyncGateway(base, DEV_KEY, run_id="async-run") as gw:
        ran: list[str] = []

        @gw.require_approval(boss := address())
        async def post_update(text: str) -> str:
            ran.append(text)
            return "posted"

        outcome, _ = await asyncio.gather(post_update("Q3 is done"), human(base, boss, "/approve", decision="approve"))
        assert outcome == "posted" and ran == ["Q3 is done"]

        @gw.require_approval(other := address(), raise_on_reject=True)
        async def drop_table(name: str) -> None:
            raise AssertionError("must not run")

        task = asyncio.create_task(drop_table("users"))
        await human(base, other, "/reject", decision="reject", comment="No.")
        with pytest.raises(ApprovalRejectedError, match=r"User denied drop_table with message: No\."):
            await task


async def test_async_human_tool_and_handles(dev_gateway: Dev) -> None:
    base, _ = dev_gateway
    async with AsyncGateway(base, DEV_KEY) as gw:
        boss = address()
        ask = gw.human_as_tool(boss)
        assert ask.is_async
        answer, _ = await asyncio.gather(ask("Budget for the offsite?"), human(base, boss, "/answer", response="2k"))
        assert answer == "2k"

        handle = await gw.request_approval("rotate_keys", {"service": "billing"}, other := address())
        with pytest.raises(WaitTimeoutError):
            await handle.wait(timeout=0.3)
        waited, _ = await asyncio.gather(handle.wait(timeout=20), human(base, other, "/approve", decision="approve"))
        assert waited.status == "approved" and waited.decided_by == other
        assert len(mails_to(base, other)) == 1


def test_each_client_refuses_the_other_kind_of_function() -> None:
    sync_gw, async_gw = Gateway("http://x", "k"), AsyncGateway("http://x", "k")

    async def coroutine_fn() -> None: ...

    def plain_fn() -> None: ...

    with pytest.raises(TypeError, match="use AsyncGateway"):
        sync_gw.require_approval("a@example.com")(coroutine_fn)
    with pytest.raises(TypeError, match="use Gateway"):
        async_gw.require_approval("a@example.com")(plain_fn)


async def test_async_notify_and_inbox(dev_gateway: Dev) -> None:
    base, _ = dev_gateway
    async with AsyncGateway(base, DEV_KEY, run_id="run-async-outer") as gw:
        await gw.agent("async-outer", ["alice@example.com"])
        inbox = gw.inbox("async-outer")
        sent = await gw.notify("Halfway there.", "alice@example.com", agent="async-outer")
        mail = await asyncio.to_thread(wait_for_subject, base, "alice@example.com", "Update: Halfway there.")
        waiting = asyncio.create_task(inbox.wait(timeout=20))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await asyncio.to_thread(
            httpx.post, f"{base}/dev/messages/{mail['id']}/reply", data={"text": "Good, carry on."}, timeout=10
        )
        message = await waiting
        assert (message.text, message.notification_id) == ("Good, carry on.", sent.id)
        assert await inbox.poll() == []
        with pytest.raises(InboxTimeoutError):
            await inbox.wait(timeout=0.3)
        seen = []
        async for each in gw.inbox("async-outer"):  # from the start: the same message again, then stop
            seen.append(each.text)
            break
        assert seen == ["Good, carry on."]


def wait_for_subject(base: str, address: str, subject: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for mail in mails_to(base, address, requests_only=False):
            if subject in mail["subject"]:
                return mail
        time.sleep(0.05)
    raise AssertionError(f"no mail {subject!r} to {address}")


async def test_async_edits_and_a_typed_answer(dev_gateway: Dev) -> None:
    from pydantic import BaseModel

    class Budget(BaseModel):
        amount: int
        currency: str = "EUR"

    base, _ = dev_gateway
    async with AsyncGateway(base, DEV_KEY) as gw:

        @gw.require_approval(boss := address(), editable=True)
        async def wire(amount: int, to: str) -> str:
            return f"sent {amount} to {to}"

        told, _ = await asyncio.gather(
            wire(500, "acme"), human(base, boss, "/approve", decision="approve", **{"kwargs.amount": "450"})
        )
        assert told.startswith("sent 450 to acme\n\nThe human changed amount from 500 to 450")

        handle = await gw.ask("Budget?", other := address(), response_model=Budget)
        answer, _ = await asyncio.gather(handle.wait(timeout=20), human(base, other, "/answer", amount="1200"))
        assert answer == Budget(amount=1200)
