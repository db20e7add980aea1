"""`gateway mcp` as an MCP client sees it: a real stdio subprocess, tools listed and called, a human answering."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.processes import DEV_KEY, clean_env, click, link, mails_to, wait_for_mail

Dev = tuple[str, subprocess.Popen[str]]


async def human(base: str, boss: str, ending: str, count: int = 1, **fields: str) -> None:
    mail = (await asyncio.to_thread(wait_for_mail, base, boss, count))[0]  # newest first
    assert (await asyncio.to_thread(click, link(mail, ending), **fields)).status_code == 303


def text_of(result: object) -> str:
    return "".join(getattr(part, "text", "") for part in getattr(result, "content", []))


async def test_tools_listed_and_answered_by_a_human(dev_gateway: Dev) -> None:
    base, _ = dev_gateway
    boss = f"boss-{uuid.uuid4().hex[:8]}@example.com"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "gateway", "mcp", "--to", boss],
        env=clean_env(GATEWAY_URL=base, GATEWAY_API_KEY=DEV_KEY),
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(tools) == {"request_approval", "ask_human", "notify_human", "check_messages", "check_request"}
        assert tools["ask_human"].input_schema["required"] == ["message"]

        answer, _ = await asyncio.gather(
            session.call_tool("ask_human", {"message": "Which city for the offsite?"}),
            human(base, boss, "/answer", response="Lisbon"),
        )
        assert text_of(answer) == "Lisbon"

        approved, _ = await asyncio.gather(
            session.call_tool(
                "request_approval", {"fn": "book_venue", "kwargs": {"city": "Lisbon"}, "reason": "offsite"}
            ),
            human(base, boss, "/approve", count=2, decision="approve"),
        )
        assert text_of(approved) == f"Approved by {boss}: go ahead with book_venue."

        assert text_of(await session.call_tool("check_messages", {})) == "No new messages."
        sent = text_of(await session.call_tool("notify_human", {"message": "Venue booked; booking flights next."}))
        assert sent.startswith(f"Update sent to {boss}")
        update = await asyncio.to_thread(update_to, base, boss)
        waiting = asyncio.create_task(session.call_tool("check_messages", {"wait_seconds": 20}))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(
            httpx.post, f"{base}/dev/messages/{update['id']}/reply", data={"text": "Stop: no flights yet."}, timeout=10
        )
        heard = text_of(await waiting)
        assert heard.startswith(f"From {boss} (a reply to your update") and heard.endswith("Stop: no flights yet.")
        assert text_of(await session.call_tool("check_messages", {})) == "No new messages."


def update_to(base: str, address: str) -> dict[str, Any]:
    for _ in range(200):
        found = [m for m in mails_to(base, address, requests_only=False) if "Update: Venue booked" in m["subject"]]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("no update mail")


def test_mcp_needs_recipients_and_a_key() -> None:
    no_to = subprocess.run(
        [sys.executable, "-m", "gateway", "mcp"], env=clean_env(GATEWAY_API_KEY=DEV_KEY), capture_output=True, text=True
    )
    assert no_to.returncode == 2 and "--to" in no_to.stderr
    no_key = subprocess.run(
        [sys.executable, "-m", "gateway", "mcp", "--to", "a@example.com"],
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert no_key.returncode == 2 and "GATEWAY_API_KEY" in no_key.stderr


async def test_a_long_wait_outlives_the_clients_tool_timeout(dev_gateway: Dev) -> None:
    """Each call returns within --timeout; the id it gives resumes the wait until the human answers."""
    base, _ = dev_gateway
    boss = f"boss-{uuid.uuid4().hex[:8]}@example.com"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "gateway", "mcp", "--to", boss, "--timeout", "0.5"],
        env=clean_env(GATEWAY_URL=base, GATEWAY_API_KEY=DEV_KEY),
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        waiting = text_of(await session.call_tool("request_approval", {"fn": "wire", "kwargs": {"amount": 9}}))
        request_id = re.search(r'request_id "(apr_[a-z2-7]+)"', waiting).group(1)  # type: ignore[union-attr]
        assert waiting.startswith(f"No answer yet: the approval {request_id} (wire) is still waiting")
        assert "still waiting" in text_of(await session.call_tool("check_request", {"request_id": request_id}))
        await human(base, boss, "/approve", decision="approve")
        done = text_of(await session.call_tool("check_request", {"request_id": request_id}))
        assert done == f"Approved by {boss}: go ahead with wire."

        asked = text_of(await session.call_tool("ask_human", {"message": "Which bank?"}))
        question_id = re.search(r'request_id "(qst_[a-z2-7]+)"', asked).group(1)  # type: ignore[union-attr]
        await human(base, boss, "/answer", count=2, response="The usual one.")
        assert text_of(await session.call_tool("check_request", {"request_id": question_id})) == "The usual one."
        unknown = text_of(await session.call_tool("check_request", {"request_id": "apr_nope"}))
        assert unknown.startswith("No request 'apr_nope' of yours")
