"""PydanticAI's approval-required tools answered through a real `gateway dev`, a human acting on the link page;
the model is PydanticAI's own FunctionModel (examples/pydantic_ai_refund.py), so nothing leaves the machine."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from typing import Any

from gateway.client import AsyncGateway
from tests.examples_loader import load_example
from tests.processes import DEV_KEY, click, link, wait_for_mail

Dev = tuple[str, subprocess.Popen[str]]
example = load_example("pydantic_ai_refund")


async def human(base: str, boss: str, ending: str, **fields: str) -> None:
    (mail,) = await asyncio.to_thread(wait_for_mail, base, boss)
    assert (await asyncio.to_thread(click, link(mail, ending), **fields)).status_code == 303


async def run(base: str, act: Any = None, **options: Any) -> str:
    boss = f"boss-{uuid.uuid4().hex[:8]}@example.com"
    async with AsyncGateway(base, DEV_KEY, run_id=f"run-{uuid.uuid4().hex[:6]}") as gw:
        agent = example.build_agent(gw, boss, model=example.scripted_model(), **options)
        work = agent.run("Ann's order arrived broken: refund her.")
        if act is None:
            return (await work).output  # type: ignore[no-any-return]
        result, _ = await asyncio.gather(work, act(base, boss))
        return result.output  # type: ignore[no-any-return]


async def test_approved_edited_rejected_and_expired(dev_gateway: Dev) -> None:
    base, _ = dev_gateway
    approve = lambda b, boss: human(b, boss, "/approve", decision="approve")  # noqa: E731
    assert await run(base, approve) == "Done. Refunded 40 EUR to ann@example.com."

    edit = lambda b, boss: human(b, boss, "/approve", decision="approve", **{"kwargs.amount": "25"})  # noqa: E731
    assert await run(base, edit) == "Done. Refunded 25 EUR to ann@example.com."

    reject = lambda b, boss: human(b, boss, "/reject", decision="reject", comment="Store credit instead.")  # noqa: E731
    assert await run(base, reject) == "Done. User denied refund with message: Store credit instead."

    expired = await run(base, expires_in=1)
    assert expired == "Done. The request to run refund expired before anyone approved it; refund was not run."
