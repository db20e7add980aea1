"""LangGraph tools approved by email through a real `gateway dev`, a human acting on the link page: waiting in
the tool call, and interrupting the graph to resume it from the gateway's webhook. The model is LangChain's
GenericFakeChatModel (examples/langgraph_publish.py), so nothing leaves the machine."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.client import Gateway
from gateway.client.langgraph import resume
from tests.examples_loader import load_example
from tests.loopback import WebhookReceiver
from tests.processes import DEV_KEY, click, dev_process, link, wait_for_mail

example = load_example("langgraph_publish")
START = {"messages": [("user", "Publish the Q3 recap.")]}


@pytest.fixture
async def hooked(tmp_path: Path) -> AsyncIterator[tuple[str, WebhookReceiver]]:
    """`gateway dev` allowed to call a webhook on loopback, and that webhook."""
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        with dev_process(tmp_path, GATEWAY_WEBHOOK_ALLOW_PRIVATE="true") as (base, _):
            yield base, receiver
    finally:
        await receiver.stop()


async def human(base: str, boss: str, ending: str, **fields: str) -> None:
    (mail,) = await asyncio.to_thread(wait_for_mail, base, boss)
    assert (await asyncio.to_thread(click, link(mail, ending), **fields)).status_code == 303


async def run(base: str, act: Any = None, **options: Any) -> tuple[list[str], list[dict[str, str]]]:
    boss = f"boss-{uuid.uuid4().hex[:8]}@example.com"
    example.PUBLISHED.clear()
    with Gateway(base, DEV_KEY, run_id=f"run-{uuid.uuid4().hex[:6]}") as gw:
        graph = example.build_graph(gw, boss, **options)
        config = {"configurable": {"thread_id": f"t-{uuid.uuid4().hex[:6]}"}}
        work = asyncio.to_thread(graph.invoke, START, config)
        state = await work if act is None else (await asyncio.gather(work, act(base, boss)))[0]
    return example.tool_results(state), list(example.PUBLISHED)


async def test_a_tool_waits_for_approval_edits_rejection_and_expiry(hooked: tuple[str, WebhookReceiver]) -> None:
    base, _ = hooked
    approve = lambda b, boss: human(b, boss, "/approve", decision="approve")  # noqa: E731
    said, published = await run(base, approve)
    assert said == ["Published 'Q3 recap'."] and published == [{"title": "Q3 recap", "body": "We shipped."}]

    edit = lambda b, boss: human(b, boss, "/approve", decision="approve", **{"kwargs.title": "Q3 in review"})  # noqa: E731
    said, published = await run(base, edit, editable=["title"])
    assert published == [{"title": "Q3 in review", "body": "We shipped."}]
    assert said[0].startswith("Published 'Q3 in review'.\n\nThe human changed title from \"Q3 recap\"")

    reject = lambda b, boss: human(b, boss, "/reject", decision="reject", comment="Add the numbers.")  # noqa: E731
    said, published = await run(base, reject)
    assert said == ["User denied publish_post with message: Add the numbers."] and published == []

    said, published = await run(base, expires_in=1)
    assert said == ["The request to run publish_post expired before anyone approved it; publish_post was not run."]
    assert published == []


async def test_an_interrupted_graph_resumes_from_the_webhook(hooked: tuple[str, WebhookReceiver]) -> None:
    base, receiver = hooked
    boss = f"boss-{uuid.uuid4().hex[:8]}@example.com"
    example.PUBLISHED.clear()
    with Gateway(base, DEV_KEY, run_id="lg-interrupt") as gw:
        graph = example.build_graph(gw, boss, wait=False, callback_url=receiver.url)
        config = {"configurable": {"thread_id": "thread-7"}}
        paused = await asyncio.to_thread(graph.invoke, START, config)
        assert paused["__interrupt__"] and example.PUBLISHED == []  # nothing waits while the human thinks
        assert "gateway_approval" in paused["__interrupt__"][0].value

        # A forged or early event only makes the graph look again: the decision is read from the gateway.
        early = {
            "type": "approval.approved",
            "data": {"id": "apr_x", "status": "approved", "state": {"langgraph_thread_id": "thread-7"}},
        }
        again = await asyncio.to_thread(resume, graph, early)
        assert again["__interrupt__"] and example.PUBLISHED == []

        await human(base, boss, "/approve", decision="approve", **{"kwargs.title": "Q3, reviewed"})
        (_, body), *_ = await receiver.wait_for(1)
        event = json.loads(body)
        assert event["type"] == "approval.approved" and event["data"]["state"] == {"langgraph_thread_id": "thread-7"}
        done = await asyncio.to_thread(resume, graph, event)
    assert example.PUBLISHED == [{"title": "Q3, reviewed", "body": "We shipped."}]
    assert example.tool_results(done)[0].startswith("Published 'Q3, reviewed'.")
    assert done["messages"][-1].content == "That is all."
