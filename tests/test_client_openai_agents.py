"""The OpenAI Agents SDK's tool approvals (needs_approval, the run's interruptions) answered through a real
`gateway dev`, a human acting on the link page; the model is the SDK's own ScriptedModel
(examples/openai_agents_email.py), so nothing leaves the machine."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from typing import Any

from gateway.client import AsyncGateway
from tests.examples_loader import load_example
from tests.processes import DEV_KEY, click, link, wait_for_mail

Dev = tuple[str, subprocess.Popen[str]]
example = load_example("openai_agents_email")


async def human(base: str, boss: str, ending: str, **fields: str) -> None:
    (mail,) = await asyncio.to_thread(wait_for_mail, base, boss)
    assert (await asyncio.to_thread(click, link(mail, ending), **fields)).status_code == 303


async def run(base: str, act: Any = None, **options: Any) -> tuple[str, list[dict[str, str]]]:
    boss = f"boss-{uuid.uuid4().hex[:8]}@example.com"
    example.SENT.clear()
    async with AsyncGateway(base, DEV_KEY, run_id=f"run-{uuid.uuid4().hex[:6]}") as gw:
        work = example.run_with_approvals(
            example.build_agent(example.scripted_model()), "Email the Q3 numbers.", gw, boss, **options
        )
        result = await work if act is None else (await asyncio.gather(work, act(base, boss)))[0]
    return str(result.final_output), list(example.SENT)


async def test_approved_edited_rejected_and_expired(dev_gateway: Dev) -> None:
    base, _ = dev_gateway
    approve = lambda b, boss: human(b, boss, "/approve", decision="approve")  # noqa: E731
    said, sent = await run(base, approve)
    assert said == "Done. Sent 'Q3 numbers' to ceo@example.com." and sent == [
        {"to": "ceo@example.com", "subject": "Q3 numbers"}
    ]

    edit = lambda b, boss: human(b, boss, "/approve", decision="approve", **{"kwargs.subject": "Q3 numbers (final)"})  # noqa: E731
    said, sent = await run(base, edit)
    assert sent == [{"to": "ceo@example.com", "subject": "Q3 numbers (final)"}]
    assert said == (  # the model learns what the human changed
        "Done. Sent 'Q3 numbers (final)' to ceo@example.com.\n\nThe human changed subject from \"Q3 numbers\" to"
        ' "Q3 numbers (final)" before approving send_email; it ran with the changed values.'
    )

    reject = lambda b, boss: human(b, boss, "/reject", decision="reject", comment="Wait for the audit.")  # noqa: E731
    said, sent = await run(base, reject)
    assert said == "Done. User denied send_email with message: Wait for the audit." and sent == []

    said, sent = await run(base, expires_in=1)
    assert said == "Done. The request to run send_email expired before anyone approved it; send_email was not run."
    assert sent == []
